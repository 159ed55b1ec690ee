// The tokenizer visualiser tab: one text split by several tokenizers side by side (any model's own, the
// built-in char/byte/word, and OpenAI's vocabularies the server has files for), with counts and ids.

import { getJSON } from "./api.js";
import { prefs } from "./state.js";
import { $, debounce, el, showBanner } from "./util.js";

const MAX_TOKENIZERS = 8; // the server's limit per request

/** Group tokens so that a character split over several byte-level tokens is shown once, over all of them. */
function visualGroups(tokens, bytes) {
  const strict = new TextDecoder("utf-8", { fatal: true });
  const clean = (a, b) => {
    try {
      strict.decode(bytes.subarray(a, b));
      return true;
    } catch {
      return false;
    }
  };
  const groups = [];
  let i = 0;
  while (i < tokens.length) {
    let j = i;
    if (tokens[i].text.includes("\ufffd")) {
      while (j + 1 < tokens.length && !clean(tokens[i].start, tokens[j].end)) j++;
    }
    const part = tokens.slice(i, j + 1);
    const whole = clean(part[0].start, part[part.length - 1].end);
    const text = part.length > 1 && whole ? new TextDecoder().decode(bytes.subarray(part[0].start, part[part.length - 1].end)) : part.map((t) => t.text).join("");
    groups.push({ tokens: part, text });
    i = j + 1;
  }
  return groups;
}

/** One tokenizer's column: its stats and the text as coloured tokens. `text` is what was tokenized. */
function tokenizerColumn(r, text) {
  const perTok = r.count ? r.bytes / r.count : 0;
  const charsPerTok = r.count ? r.characters / r.count : 0;
  const body = el("div", { class: "tok-body" });
  const bytes = new TextEncoder().encode(text);
  let n = 0;
  for (const g of visualGroups(r.tokens, bytes)) {
    const ids = g.tokens.map((t) => t.id);
    const first = g.tokens[0];
    const last = g.tokens[g.tokens.length - 1];
    const split = g.tokens.length > 1;
    const span = el("span", {
      class: `vt c${n++ % 6}` + (split ? " split" : ""),
      "data-testid": "viz-token",
      "data-id": ids.join(" "),
      "data-tokens": String(g.tokens.length),
      title: split
        ? `${g.tokens.length} tokens (ids ${ids.join(", ")}) for one character · bytes ${first.start}–${last.end}`
        : `id ${first.id} · bytes ${first.start}–${first.end} · ${JSON.stringify(first.text)}`,
    });
    g.text.split("\n").forEach((part, j) => {
      if (j > 0) span.append(el("span", { class: "nl", text: "↵" }), "\n");
      if (part) span.append(part);
    });
    span.append(el("sub", { class: "vid", text: ids.join("·") }));
    body.append(span);
  }
  return el(
    "div",
    { class: "card tok-col", "data-testid": "tok-col", "data-tokenizer": r.tokenizer },
    el(
      "div",
      { class: "tok-head" },
      el("span", { class: "tok-name", text: r.tokenizer }),
      el(
        "span",
        { class: "tok-stats" },
        el("b", { "data-testid": "tok-count", text: String(r.count) }),
        " tokens · ",
        el("b", { text: perTok.toFixed(2) }),
        " bytes/token · ",
        el("b", { text: charsPerTok.toFixed(2) }),
        " chars/token",
      ),
    ),
    body,
  );
}

/** Wire the tab; `load()` (at start-up and when the API key changes) asks which tokenizers there are. */
export function initTokenizerTab() {
  const state = { available: [], selected: [], controller: null };
  const results = $("#tok-results");
  const error = $("#tok-error");

  async function run() {
    const names = state.available.filter((n) => state.selected.includes(n));
    if (!names.length) {
      results.replaceChildren(el("p", { class: "hint", text: "Pick one or more tokenizers above." }));
      return;
    }
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    results.classList.add("loading");
    try {
      const text = $("#tok-text").value;
      const j = await getJSON("api/tokenize", { text, tokenizers: names }, state.controller.signal);
      showBanner(error, "");
      results.replaceChildren(...j.results.map((r) => tokenizerColumn(r, text)));
      results.style.setProperty("--cols", String(Math.min(j.results.length, 4)));
    } catch (e) {
      if (e.name !== "AbortError") showBanner(error, e.message);
    } finally {
      results.classList.remove("loading");
    }
  }

  function renderChips() {
    $("#tok-choices").replaceChildren(
      ...state.available.map((name) =>
        el("button", {
          class: "chip" + (state.selected.includes(name) ? " on" : ""),
          "data-testid": "tok-choice",
          "data-tokenizer": name,
          "aria-pressed": String(state.selected.includes(name)),
          text: name,
          onclick: () => toggle(name),
        }),
      ),
    );
  }

  function toggle(name) {
    const i = state.selected.indexOf(name);
    if (i >= 0) state.selected.splice(i, 1);
    else if (state.selected.length < MAX_TOKENIZERS) state.selected.push(name);
    else return showBanner(error, `At most ${MAX_TOKENIZERS} tokenizers side by side.`);
    prefs.set("tokenizers", JSON.stringify(state.selected));
    renderChips();
    run();
  }

  async function load() {
    try {
      const j = await getJSON("api/tokenizers");
      state.available = j.tokenizers || [];
    } catch (e) {
      showBanner(error, e.message);
      return;
    }
    let saved = null;
    try {
      saved = JSON.parse(prefs.get("tokenizers", "null"));
    } catch {
      saved = null;
    }
    const firstModel = state.available.find((n) => n.startsWith("model:"));
    const defaults = ["char", firstModel, "cl100k_base"].filter((n) => n && state.available.includes(n));
    state.selected = (Array.isArray(saved) ? saved : defaults).filter((n) => state.available.includes(n));
    if (!state.selected.length) state.selected = defaults;
    renderChips();
    run();
  }

  $("#tok-text").addEventListener("input", debounce(run, 200));
  $("#tok-show-ids").addEventListener("change", (e) => results.classList.toggle("show-ids", e.target.checked));
  return { load };
}
