// The Data tab: a `kiln clean` output under the server's data_dir — the funnel of documents per step with drop
// reasons (stats.json, as written), the dropped samples clean kept per reason, the kept documents (searchable,
// paged), and one document's text beside the WARC record it was extracted from.

import { getJSON } from "./api.js";
import { $, el, showBanner } from "./util.js";

const PAGE = 20;
const q = encodeURIComponent;

/** "1–20 of 34" and Previous/Next buttons under a list; `load(offset)` fetches a page. */
function pager(box, { offset, total, load, label }) {
  const end = Math.min(offset + PAGE, total);
  box.replaceChildren(
    el("button", {
      class: "small",
      disabled: offset === 0 || undefined,
      onclick: () => load(Math.max(0, offset - PAGE)),
      text: "Previous",
      "aria-label": `Previous ${label}`,
    }),
    el("span", { class: "muted", "data-role": "range", text: total ? `${offset + 1}–${end} of ${total}` : "none" }),
    el("button", {
      class: "small",
      disabled: end >= total || undefined,
      onclick: () => load(offset + PAGE),
      text: "Next",
      "aria-label": `Next ${label}`,
    }),
  );
}

export function initData() {
  let output = null;
  let reason = "";
  let query = "";
  const error = (e) => showBanner($("#data-error"), e ? e.message : "");
  const api = (route, params) =>
    getJSON(
      `api/data/${route}?` +
        Object.entries({ output, ...params })
          .map(([k, v]) => `${k}=${q(v)}`)
          .join("&"),
    );

  async function loadOutputs() {
    const j = await getJSON("api/data/outputs");
    const select = $("#data-output");
    const chosen = select.value;
    select.replaceChildren(
      ...j.outputs.map((o) =>
        el("option", {
          value: o.name,
          text: `${o.name} (${o.documents_in ?? "?"} → ${o.documents_out ?? "?"} documents)`,
        }),
      ),
    );
    select.disabled = !j.outputs.length;
    $("#data-hint").textContent = j.hint || "";
    $("#data-hint").hidden = !j.hint;
    $("#data-body").hidden = !j.outputs.length;
    if (chosen && j.outputs.some((o) => o.name === chosen)) select.value = chosen;
    if (select.value && select.value !== output) await choose(select.value);
  }

  async function choose(name) {
    output = name;
    reason = "";
    query = "";
    $("#data-search").value = "";
    $("#data-doc").hidden = true;
    await loadFunnel();
    await Promise.all([loadDropped(0), loadDocuments(0)]);
  }

  async function loadFunnel() {
    const { stats } = await api("stats", {});
    const body = $("#data-funnel tbody");
    body.replaceChildren();
    const first = (stats.steps[0] && stats.steps[0].in) || 0;
    for (const s of stats.steps) {
      const reasons = el("div", { class: "reasons" });
      for (const [r, n] of Object.entries(s.dropped_by_reason || {})) {
        reasons.append(
          el("button", {
            class: "small reason",
            "data-reason": r,
            "data-count": n,
            title: `Show dropped samples for ${r}`,
            onclick: () => pickReason(r),
            text: `${r} ${n}`,
          }),
        );
      }
      const width = first ? (100 * s.kept) / first : 0;
      body.append(
        el(
          "tr",
          { "data-step": s.name },
          el("th", { scope: "row", text: s.name }),
          el("td", { class: "num", "data-col": "in", text: String(s.in) }),
          el("td", { class: "num", "data-col": "kept", text: String(s.kept) }),
          el("td", { class: "num", "data-col": "dropped", text: String(s.dropped) }),
          el(
            "td",
            { class: "bar-cell" },
            el("span", { class: "funnel-bar", style: `width:${width.toFixed(1)}%`, "aria-hidden": "true" }),
          ),
          el("td", {}, reasons),
        ),
      );
    }
    $("#data-funnel-total").textContent =
      `${stats.documents_out} documents kept of ${first} read, in ${(stats.seconds || 0).toFixed(1)} s`;
    const reasons = [...new Set(stats.steps.flatMap((s) => Object.keys(s.dropped_by_reason || {})))];
    $("#data-reason").replaceChildren(
      el("option", { value: "", text: "every reason" }),
      ...reasons.map((r) => el("option", { value: r, text: r })),
    );
  }

  async function pickReason(r) {
    reason = r;
    $("#data-reason").value = r;
    await loadDropped(0);
    $("#data-dropped-card").scrollIntoView({ block: "nearest" });
  }

  async function loadDropped(offset) {
    const j = await api("dropped", { offset, limit: PAGE, ...(reason ? { reason } : {}) });
    const list = $("#data-dropped");
    list.replaceChildren();
    for (const d of j.items) {
      list.append(
        el(
          "li",
          { class: "doc", "data-reason": d.reason },
          el(
            "div",
            { class: "doc-head" },
            el("span", { class: "badge", text: `${d.step}: ${d.reason}` }),
            el("span", { class: "mono url", text: d.url || d.id }),
          ),
          el(
            "details",
            {},
            el("summary", { text: (d.text || "").slice(0, 160) || "(no text)" }),
            el("pre", { class: "doc-text", text: d.text || "" }),
          ),
        ),
      );
    }
    if (!j.items.length)
      list.append(el("li", { class: "hint", text: reason ? `No sample kept for ${reason}.` : "No dropped samples." }));
    pager($("#data-dropped-pager"), {
      offset,
      total: j.total,
      load: (o) => loadDropped(o).catch(error),
      label: "dropped samples",
    });
  }

  async function loadDocuments(offset) {
    const j = await api("documents", { q: query, offset, limit: PAGE });
    const body = $("#data-docs tbody");
    body.replaceChildren();
    for (const d of j.items) {
      body.append(
        el(
          "tr",
          { "data-id": d.id },
          el("td", { class: "mono url", text: d.url || d.id }),
          el("td", { text: d.metadata.language ?? "–" }),
          el("td", { class: "num", text: String(d.chars) }),
          el("td", { class: "excerpt", text: d.text.slice(0, 200) }),
          el(
            "td",
            {},
            el("button", {
              class: "small",
              text: "Open",
              "aria-label": `Open ${d.url || d.id}`,
              onclick: () => openDocument(d.shard, d.row).catch(error),
            }),
          ),
        ),
      );
    }
    const note = j.truncated ? ` (searched the first ${j.scanned} documents only)` : "";
    $("#data-docs-count").textContent =
      (query ? `${j.total} documents contain "${query}"` : `${j.total} documents`) + note;
    pager($("#data-docs-pager"), {
      offset,
      total: j.total,
      load: (o) => loadDocuments(o).catch(error),
      label: "documents",
    });
  }

  async function openDocument(shard, row) {
    const d = await api("document", { shard, row });
    const card = $("#data-doc");
    card.hidden = false;
    $("#data-doc-title").textContent = d.url || d.id;
    $("#data-doc-text").textContent = d.text;
    const meta = $("#data-doc-meta");
    meta.replaceChildren();
    for (const [k, v] of Object.entries({ id: d.id, shard: d.shard, row: d.row, ...d.metadata }))
      meta.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    const src = $("#data-doc-source");
    src.textContent = "looking for the WARC record…";
    $("#data-doc-source-note").textContent = "";
    card.scrollIntoView({ block: "nearest" });
    const s = await api("source", { shard, row });
    // shown as text, never rendered: a crawled page is untrusted
    src.textContent = s.found ? s.html : "";
    src.hidden = !s.found;
    $("#data-doc-source-note").textContent = s.found
      ? `${s.warc}, offset ${s.offset}, ${s.content_type}, ${s.bytes} bytes${s.truncated ? " (first 1 MiB shown)" : ""}`
      : s.why;
  }

  $("#data-output").addEventListener("change", (e) => choose(e.target.value).catch(error));
  $("#data-reason").addEventListener("change", (e) => {
    reason = e.target.value;
    loadDropped(0).catch(error);
  });
  $("#data-search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    query = $("#data-search").value;
    loadDocuments(0).catch(error);
  });

  async function show() {
    try {
      await loadOutputs();
      error(null);
    } catch (e) {
      error(e);
    }
  }
  return { show };
}
