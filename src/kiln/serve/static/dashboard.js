// The Dashboard tab: training runs found under the models directory, their metrics.jsonl as curves (several runs
// overlaid, updated live while a run trains), each run's config, eval results as a leaderboard, and scaling sweeps.
// Polling reads each run's metrics from the byte offset already read, so only new lines travel.

import { ApiError, getJSON } from "./api.js";
import { fmt, lineChart } from "./chart.js";
import { prefs } from "./state.js";
import { $, el, showBanner } from "./util.js";

const POLL_MS = 2000;
const RUNS_EVERY = 5; // polls between two refreshes of the run list (new runs appear)
// The curves the issue asks for, first and in this order; any other numeric key a run logs gets a chart after them.
const MAIN = [
  ["train_loss", "train loss"],
  ["val_loss", "val loss"],
  ["val_bpb", "val bits per byte"],
  ["lr", "learning rate"],
  ["tokens_per_s", "tokens per second"],
  ["mfu", "MFU"],
];
const NOT_CURVES = new Set(["step", "tokens", "elapsed_s"]);
const X_LABELS = { step: "step", tokens: "tokens", elapsed_s: "seconds" };
const COLOURS = ["#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#c92a2a", "#0c8599", "#b7791f", "#5c7cfa"];
const q = encodeURIComponent;

export function initDashboard() {
  const runs = new Map(); // name -> {info, records, offset, checked, colour, skipped}
  let timer = null;
  let ticks = 0;
  let busy = false;
  let listed = "";

  const error = (e) => showBanner($("#dash-error"), e ? e.message : "");

  function colourOf(name) {
    const names = [...runs.keys()].sort();
    return COLOURS[names.indexOf(name) % COLOURS.length];
  }

  async function loadRuns() {
    const j = await getJSON("api/dashboard/runs");
    const fresh = !runs.size;
    for (const info of j.runs) {
      if (!runs.has(info.name)) runs.set(info.name, { info, records: [], offset: 0, skipped: 0, checked: false });
      else runs.get(info.name).info = info;
    }
    if (fresh) j.runs.slice(0, 3).forEach((r) => (runs.get(r.name).checked = true)); // the most recent ones
    const shape = [...runs.entries()].map(([n, r]) => `${n}:${r.info.stage}`).join("|");
    if (shape !== listed) renderRunList(); // rebuilt only when runs come or go, so focus and clicks are kept
    listed = shape;
  }

  function renderRunList() {
    const box = $("#dash-runs");
    box.replaceChildren();
    $("#dash-runs-empty").hidden = runs.size > 0;
    const configSelect = $("#dash-config-run");
    const chosen = configSelect.value;
    configSelect.replaceChildren();
    for (const [name, run] of [...runs.entries()].sort()) {
      const input = el("input", { type: "checkbox", "data-run": name, checked: run.checked || undefined });
      input.addEventListener("change", async () => {
        run.checked = input.checked;
        await poll();
        renderCharts();
      });
      const stage = run.info.stage ? ` (${run.info.stage})` : "";
      box.append(
        el(
          "label",
          { class: "check run-choice" },
          input,
          el("span", { class: "dash-swatch", style: `background:${colourOf(name)}` }),
          name + stage,
        ),
      );
      configSelect.append(el("option", { value: name, text: name }));
    }
    if (chosen && runs.has(chosen)) configSelect.value = chosen;
    if (configSelect.value && configSelect.value !== $("#dash-config").dataset.run) showConfig();
  }

  async function showConfig() {
    const name = $("#dash-config-run").value;
    const pre = $("#dash-config");
    pre.dataset.run = name;
    if (!name) return;
    try {
      const j = await getJSON(`api/dashboard/config?run=${q(name)}`);
      pre.textContent = j.text || j.note || "";
      $("#dash-config-file").textContent = j.file ? `${j.file}${j.note ? " — " + j.note : ""}` : "";
    } catch (e) {
      pre.textContent = e.message;
    }
  }

  /** Read what each checked run has added since the last poll; true if anything changed. */
  async function poll() {
    let changed = false;
    for (const [name, run] of runs) {
      if (!run.checked) continue;
      for (let more = true; more;) {
        const j = await getJSON(`api/dashboard/metrics?run=${q(name)}&offset=${run.offset}`);
        if (j.reset) {
          run.records = [];
          changed = true;
        }
        if (j.records.length) changed = true;
        run.records.push(...j.records);
        run.skipped += j.skipped;
        more = j.next_offset > run.offset && j.next_offset < j.size; // a long history comes in several reads
        run.offset = j.next_offset;
      }
    }
    return changed;
  }

  function renderCharts() {
    const checked = [...runs.entries()].filter(([, r]) => r.checked);
    const x = $("#dash-x").value; // runs of different batch sizes compare by tokens, of different speeds by time
    const keys = new Set();
    for (const [, r] of checked)
      for (const rec of r.records)
        for (const [k, v] of Object.entries(rec)) if (typeof v === "number" && !NOT_CURVES.has(k)) keys.add(k);
    const charts = MAIN.filter(([k]) => keys.has(k) || MAIN.slice(0, 2).some(([m]) => m === k));
    for (const k of [...keys].sort()) if (!MAIN.some(([m]) => m === k)) charts.push([k, k]);
    const box = $("#dash-charts");
    const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.closest("figure").dataset.metric));
    box.replaceChildren();
    for (const [key, title] of charts) {
      const series = checked.map(([name, r]) => ({
        name,
        color: colourOf(name),
        points: r.records
          .filter((rec) => typeof rec[key] === "number" && typeof rec[x] === "number")
          .map((rec) => [rec[x], rec[key]]),
      }));
      const fig = lineChart({ id: key, title, series, xLabel: X_LABELS[x] });
      box.append(fig);
      if (open.has(key)) fig.querySelector("details")?.setAttribute("open", "");
    }
    const skipped = checked.reduce((n, [, r]) => n + r.skipped, 0);
    const lines = checked.reduce((n, [, r]) => n + r.records.length, 0);
    $("#dash-status").textContent = checked.length
      ? `${checked.length} run${checked.length === 1 ? "" : "s"}, ${lines} logged steps` +
        (skipped ? `; ${skipped} malformed line${skipped === 1 ? "" : "s"} skipped` : "")
      : "no run selected";
    $("#dash-status").dataset.lines = String(lines);
  }

  async function loadLeaderboard() {
    const j = await getJSON("api/dashboard/leaderboard");
    const box = $("#dash-leaderboard");
    box.replaceChildren();
    const rows = j.rows.filter((r) => !r.problem);
    if (!rows.length) {
      box.append(
        el("p", {
          class: "hint",
          text: "No eval results under the models directory yet: kiln eval CHECKPOINT arc_easy out_dir=CHECKPOINT/eval writes one (results.json).",
        }),
      );
    } else {
      const head = el(
        "tr",
        {},
        el("th", { scope: "col", text: "results" }),
        el("th", { scope: "col", text: "checkpoint" }),
      );
      for (const t of j.tasks) head.append(el("th", { scope: "col", text: t }));
      head.append(el("th", { scope: "col", text: "centred mean" }));
      const body = el("tbody");
      for (const r of rows) {
        const tr = el(
          "tr",
          { "data-name": r.name },
          el("th", { scope: "row", text: r.name }),
          el("td", { class: "mono", text: r.checkpoint }),
        );
        for (const t of j.tasks) {
          const s = r.tasks[t];
          const acc = s && s.acc !== undefined && s.acc !== null ? s.acc : null;
          const err = s && typeof s.acc_stderr === "number" ? ` ±${s.acc_stderr.toFixed(3)}` : "";
          tr.append(
            el("td", {
              class: "num",
              "data-task": t,
              "data-acc": acc ?? "",
              "data-stderr": s?.acc_stderr ?? "",
              text: acc === null ? "–" : acc.toFixed(4) + err,
            }),
          );
        }
        tr.append(
          el("td", {
            class: "num",
            "data-task": "centred",
            "data-acc": r.centred ?? "",
            text: r.centred === null ? "–" : r.centred.toFixed(4),
          }),
        );
        body.append(tr);
      }
      box.append(
        el(
          "table",
          { class: "table", "data-testid": "dash-leaderboard-table" },
          el("caption", { text: "Accuracy (± standard error) per task; best centred mean first" }),
          el("thead", {}, head),
          body,
        ),
      );
    }
    for (const r of j.rows.filter((x) => x.problem))
      box.append(el("p", { class: "hint", text: `${r.name}/results.json: ${r.problem}` }));
  }

  async function plotImage(sweep, file) {
    // fetched rather than linked, so the API key (an Authorization header) goes with it
    const key = prefs.get("apiKey");
    const res = await fetch(`api/dashboard/sweep_plot?sweep=${q(sweep)}&file=${q(file)}`, {
      headers: key ? { Authorization: `Bearer ${key}` } : {},
    });
    if (!res.ok) throw new ApiError(`${file}: ${res.status}`, res.status);
    return URL.createObjectURL(await res.blob());
  }

  async function loadSweeps() {
    const j = await getJSON("api/dashboard/sweeps");
    const box = $("#dash-sweeps");
    box.replaceChildren();
    if (!j.sweeps.length) {
      box.append(
        el("p", {
          class: "hint",
          text: "No scaling sweep under the models directory: kiln sweep --out DIR writes fit.json and sweep.svg.",
        }),
      );
      return;
    }
    for (const s of j.sweeps) {
      const part = el("section", { class: "sweep", "data-sweep": s.name }, el("h3", { text: s.name }));
      if (s.problem) part.append(el("p", { class: "hint", text: s.problem }));
      const file = s.plots.includes("sweep.svg") ? "sweep.svg" : s.plots[0];
      if (file) {
        const img = el("img", { class: "sweep-plot", alt: `IsoFLOP curves and fitted scaling laws of ${s.name}` });
        plotImage(s.name, file).then(
          (url) => (img.src = url),
          (e) => part.append(el("p", { class: "hint", text: e.message })),
        );
        part.append(img);
      }
      if (s.approach3)
        part.append(
          el("p", {
            text: `Fit (approach 3): L = ${fmt(s.approach3.E)} + ${fmt(s.approach3.A)}/N^${fmt(s.approach3.alpha)} + ${fmt(s.approach3.B)}/D^${fmt(s.approach3.beta)}`,
          }),
        );
      if (s.approach2) part.append(el("p", { text: `Approach 2: N_opt ∝ C^${fmt(s.approach2.a)}` }));
      if (s.runs && s.runs.length) {
        const body = el("tbody");
        for (const r of s.runs)
          body.append(
            el(
              "tr",
              {},
              ...["name", "budget", "params", "tokens", "val_loss"].map((k, i) =>
                el(i ? "td" : "th", {
                  scope: i ? undefined : "row",
                  class: i ? "num" : undefined,
                  text: r[k] === null || r[k] === undefined ? "–" : typeof r[k] === "number" ? fmt(r[k]) : String(r[k]),
                }),
              ),
            ),
          );
        part.append(
          el(
            "table",
            { class: "table" },
            el("caption", { text: `Runs of ${s.name}` }),
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                ...["run", "budget (FLOPs)", "params", "tokens", "val loss"].map((t) =>
                  el("th", { scope: "col", text: t }),
                ),
              ),
            ),
            body,
          ),
        );
      }
      box.append(part);
    }
  }

  async function tick() {
    if (busy) return;
    busy = true;
    try {
      if (++ticks % RUNS_EVERY === 0) await loadRuns();
      if (await poll()) renderCharts();
      error(null);
    } catch (e) {
      error(e);
    } finally {
      busy = false;
    }
  }

  async function show() {
    try {
      await loadRuns();
      await poll();
      renderCharts();
      error(null);
    } catch (e) {
      error(e);
    }
    loadLeaderboard().catch(error);
    loadSweeps().catch(error);
    if (!timer && $("#dash-live").checked) timer = setInterval(tick, POLL_MS);
  }

  function hide() {
    clearInterval(timer);
    timer = null;
  }

  $("#dash-config-run").addEventListener("change", showConfig);
  $("#dash-x").addEventListener("change", renderCharts);
  $("#dash-live").addEventListener("change", () => ($("#dash-live").checked ? show() : hide()));
  $("#dash-refresh").addEventListener("click", show);
  return { show, hide };
}
