// The sampling explainer tab: the model's next-token distribution after a prompt, as bars before and after
// temperature, top-k, top-p and min-p; click a token to append it to the prompt.

import { getJSON } from "./api.js";
import { applySampling } from "./sampling.js";
import { fillModelSelect, prefs, store } from "./state.js";
import { $, debounce, el, pct, showBanner, syncSliderOutputs, visible } from "./util.js";

/** Wire the explainer; `onUseSettings(settings)` takes its settings to Generate. Returns what start-up calls. */
export function initExplainer({ onUseSettings }) {
  // data: the last /api/next_token answer; lastKey: the model and prompt it answers
  const state = { data: null, controller: null, lastKey: "" };

  const settings = () => ({
    temperature: Number($("#ex-temperature").value),
    topK: Math.floor(Number($("#ex-top-k").value)),
    topP: Number($("#ex-top-p").value),
    minP: Number($("#ex-min-p").value),
  });

  /** Ask the server for the distribution after the prompt (once per model and prompt), then draw it. */
  async function fetchDistribution() {
    const model = $("#ex-model").value;
    const prompt = $("#ex-prompt").value;
    if (!model) return;
    const key = model + "\u0000" + prompt;
    if (key === state.lastKey && state.data) return render();
    state.lastKey = key;
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    const card = store.byId.get(model);
    // the whole vocabulary when it is small enough (exact), else the top 1000 and a modelled tail
    const topN = Math.min(1000, (card && card.vocab_size) || 1000);
    $("#ex-summary").textContent = "Asking the model…";
    try {
      state.data = await getJSON("api/next_token", { model, prompt, top_n: topN }, state.controller.signal);
      showBanner($("#ex-error"), "");
      render();
    } catch (e) {
      if (e.name === "AbortError") return;
      state.data = null;
      state.lastKey = "";
      showBanner($("#ex-error"), e.message);
      $("#ex-summary").textContent = "";
      $("#ex-bars").replaceChildren();
      $("#ex-pipeline").replaceChildren();
    }
  }

  function render() {
    const d = state.data;
    if (!d) return;
    const s = settings();
    const toks = d.tokens;
    const vocab = d.vocab_size;
    const before = toks.map((t) => Math.exp(t.logit - d.logsumexp));
    const tailCount = Math.max(0, vocab - toks.length);
    const tailBefore = tailCount ? Math.max(0, 1 - before.reduce((a, b) => a + b, 0)) : 0;
    const groups = toks.map((t) => ({ logit: t.logit, count: 1 }));
    if (tailCount && tailBefore > 0) {
      const minLogit = toks.length ? toks[toks.length - 1].logit : 0;
      groups.push({ logit: Math.min(minLogit, d.logsumexp + Math.log(tailBefore / tailCount)), count: tailCount });
    }
    const res = applySampling(groups, vocab, s);
    const after = res.each.map((p, i) => p * res.kept[i]); // mass of each group
    const shown = Math.min(Number($("#ex-shown").value), toks.length);
    let otherBefore = tailBefore;
    let otherAfter = tailCount && tailBefore > 0 ? after[groups.length - 1] : 0;
    for (let i = shown; i < toks.length; i++) {
      otherBefore += before[i];
      otherAfter += after[i];
    }
    // token bars share one scale (the largest of them); the "other" bar is drawn on the full 0-100% scale
    const scale = Math.max(...before.slice(0, shown), ...after.slice(0, shown), 1e-9);
    const rows = [];
    for (let i = 0; i < shown; i++) {
      rows.push(barRow(toks[i], before[i], after[i], scale, i));
    }
    const otherN = vocab - shown;
    if (otherN > 0) {
      rows.push(
        barRow({ token: `other (${otherN} token${otherN === 1 ? "" : "s"})`, id: null }, otherBefore, otherAfter, 1, -1),
      );
    }
    $("#ex-bars").replaceChildren(...rows);
    const keptN = res.counts.minP;
    const entropy = -before.reduce((a, p) => (p > 0 ? a + p * Math.log2(p) : a), 0) +
      (tailBefore > 0 ? -tailBefore * Math.log2(tailBefore / tailCount) : 0);
    const promptTail = $("#ex-prompt").value.slice(-32);
    $("#ex-summary").replaceChildren(
      el("span", {}, "After ", el("code", { text: visible(promptTail) }), ` (${d.prompt_ids.length} tokens)`),
      el("span", { class: "sep", text: "·" }),
      el("span", { "data-testid": "ex-kept", text: `${keptN} of ${vocab} tokens can be sampled` }),
      el("span", { class: "sep", text: "·" }),
      el("span", { text: `entropy ${entropy.toFixed(2)} bits` }),
      el("span", { class: "sep", text: "·" }),
      el("span", { text: `top token ${pct(before[0] || 0)} → ${pct(Math.max(...after))}` }),
      ...(tailCount
        ? [el("span", { class: "muted", text: `(the ${tailCount} tokens outside the top ${toks.length} are modelled as equally likely)` })]
        : []),
    );
    const step = (name, n, on) =>
      el("span", { class: "step" + (on ? " on" : "") }, el("span", { class: "step-name", text: name }), el("b", { text: String(n) }));
    $("#ex-pipeline").replaceChildren(
      step("vocabulary", vocab, true),
      el("span", { class: "arrow", text: "→" }),
      step(res.greedy ? "greedy (T = 0)" : `÷ T ${s.temperature.toFixed(2)}`, res.greedy ? 1 : vocab, s.temperature !== 1),
      el("span", { class: "arrow", text: "→" }),
      step(`top-k ${s.topK || "off"}`, res.counts.topK, s.topK > 0),
      el("span", { class: "arrow", text: "→" }),
      step(`top-p ${s.topP < 1 ? s.topP.toFixed(2) : "off"}`, res.counts.topP, s.topP < 1),
      el("span", { class: "arrow", text: "→" }),
      step(`min-p ${s.minP > 0 ? s.minP.toFixed(2) : "off"}`, res.counts.minP, s.minP > 0),
    );
  }

  /** One bar: a token's probability before and after the settings (index -1: the rest of the vocabulary). */
  function barRow(tok, before, after, scale, index) {
    const isOther = index < 0;
    const bar = el(
      "div",
      {
        class: "bar-row" + (after > 0 ? " kept" : " cut") + (isOther ? " other" : ""),
        "data-testid": isOther ? "ex-other" : "ex-bar",
        "data-token": tok.token,
        "data-id": tok.id === null ? "" : String(tok.id),
        "data-before": before.toFixed(8),
        "data-after": after.toFixed(8),
        title: isOther ? "the rest of the vocabulary (bar on a 0–100% scale)" : `id ${tok.id} · logit ${tok.logit.toFixed(3)} — click to append to the prompt`,
      },
      el("code", { class: "bar-token", text: isOther ? tok.token : visible(tok.token) }),
      el(
        "div",
        { class: "bar" },
        el("span", { class: "before", style: `width:${((before / scale) * 100).toFixed(2)}%` }),
        el("span", { class: "after", style: `width:${((after / scale) * 100).toFixed(2)}%` }),
      ),
      el("span", { class: "bar-nums" }, el("span", { class: "nb", text: pct(before) }), " → ", el("b", { text: pct(after) })),
    );
    if (!isOther) {
      bar.addEventListener("click", () => {
        $("#ex-prompt").value += tok.token;
        fetchDistribution();
      });
    }
    return bar;
  }

  syncSliderOutputs($("#panel-explain"));
  for (const id of ["ex-temperature", "ex-top-k", "ex-top-p", "ex-min-p", "ex-shown"]) {
    $("#" + id).addEventListener("input", () => {
      syncSliderOutputs($("#panel-explain"));
      render();
    });
  }
  $("#ex-prompt").addEventListener("input", debounce(fetchDistribution, 250));
  // An empty (or untouched) prompt takes the chosen model's own default prompt (its checkpoint's default_prompt).
  let offered = "";
  function offerDefaultPrompt() {
    const box = $("#ex-prompt");
    const next = (store.byId.get($("#ex-model").value) || {}).default_prompt || "";
    if (box.value === "" || box.value === offered) box.value = next;
    offered = next;
  }
  $("#ex-model").addEventListener("change", () => {
    offerDefaultPrompt();
    fetchDistribution();
  });
  $("#ex-to-generate").addEventListener("click", () => {
    onUseSettings({
      temperature: $("#ex-temperature").value,
      topK: $("#ex-top-k").value,
      topP: $("#ex-top-p").value,
      minP: $("#ex-min-p").value,
      model: $("#ex-model").value,
      prompt: $("#ex-prompt").value,
    });
    location.hash = "#generate";
  });

  return {
    fetch: fetchDistribution,
    /** The server's models changed: refill the model list and redraw. */
    onModels() {
      fillModelSelect($("#ex-model"), prefs.get("model"));
      offerDefaultPrompt();
      fetchDistribution();
    },
  };
}
