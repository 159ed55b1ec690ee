// Completion mode of the Generate tab: the prompt, the streamed output as tokens, the history of
// generations, and branches (continue from any token with an alternative the model considered). The whole
// session is kept in localStorage after every change (session.js), so a reload shows it again.

import { ApiError, completionToken, getJSON, stream } from "./api.js";
import { readControls, writeControls } from "./controls.js";
import { downloadJSON, parseSession, restoreSession, sessionData, storeSession } from "./session.js";
import { prefs, store } from "./state.js";
import { tokenSpan } from "./tokens.js";
import { $, debounce, el, showBanner, visible } from "./util.js";

// the status line's fields, by element id, saved with each entry and shown again when it is selected
const STAT_IDS = ["stat-ttft", "stat-tps", "stat-tokens", "stat-finish"];

/**
 * The completion view over `panel` (generate.js). Its state: the history of entries
 * ({id, kind, model, prompt, promptIds, contextText, promptLabel, tokens, finish, parent, at, usage, settings,
 * stats}), the one shown, and the prompt override (a branch's context, sent as ids while the prompt box is
 * left unedited). `settings` are the sampling controls' values the entry was generated with; `stats` its
 * status line.
 */
export function createCompletion(panel) {
  const state = { history: [], current: null, nextId: 1, promptOverride: null };
  const out = $("#output-generated");

  const persist = () => storeSession(sessionData(state, $("#prompt").value, state.promptOverride));
  const persistSoon = debounce(persist, 300);

  const ownerOf = (entry) => ({ branch: (index, alt) => branchFrom(entry, index, alt), noBranch: "" });

  /** The prompt token ids of a history entry (asked of the server once for a text prompt). */
  async function promptIdsOf(entry) {
    if (entry.promptIds) return entry.promptIds;
    // /api/next_token encodes the prompt exactly as /v1/completions does (an empty prompt -> <|endoftext|>).
    const j = await getJSON("api/next_token", { model: entry.model, prompt: entry.prompt, top_n: 1 });
    entry.promptIds = j.prompt_ids;
    return entry.promptIds;
  }

  function historyItem(h) {
    const text = h.tokens.map((t) => t.text).join("");
    const title =
      h.kind === "branch"
        ? `↳ branch of #${h.parent} at token ${h.at + 1}: “${visible(h.tokens[0] ? h.tokens[0].token : "")}”`
        : `“${visible(h.promptLabel).slice(0, 40)}”`;
    const meta = `${h.model} · ${h.tokens.length} tok${h.finish ? " · " + h.finish : ""}`;
    return el(
      "li",
      {
        class: (h === state.current ? "active " : "") + h.kind,
        "data-testid": "history-item",
        "data-entry": String(h.id),
        "data-kind": h.kind,
        // reachable with Tab and opened with Enter or Space, like a button (a list item keeps the list's semantics)
        tabindex: "0",
        "aria-current": h === state.current ? "true" : null,
        "aria-label": `#${h.id}: ${h.kind} ${title}, ${meta}`,
        onclick: () => selectEntry(h),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            selectEntry(h);
            const again = $(`#history [data-entry="${h.id}"]`);
            if (again) again.focus(); // the list was redrawn: keep the keyboard where it was
          }
        },
      },
      el("div", { class: "h-title" }, el("span", { class: "h-id", text: `#${h.id}` }), " ", title),
      el("div", { class: "h-text", text: visible(text).slice(0, 80) || "…" }),
      el("div", { class: "h-meta", text: meta }),
    );
  }

  function renderHistory() {
    $("#history-empty").hidden = state.history.length > 0;
    $("#history").replaceChildren(...state.history.slice().reverse().map(historyItem));
  }

  function showEntry(entry) {
    state.current = entry;
    $("#output-context").textContent = entry ? entry.contextText : "";
    out.replaceChildren();
    if (entry) {
      const owner = ownerOf(entry);
      entry.tokens.forEach((t, i) => out.append(tokenSpan(t, i, owner)));
    }
    renderHistory();
  }

  function updatePromptBadge() {
    const badge = $("#prompt-badge");
    const o = state.promptOverride;
    if (o && $("#prompt").value === o.text) {
      badge.hidden = false;
      badge.textContent = `sent as ${o.ids.length} token ids (a branch) — edit the text to send it as text`;
    } else {
      badge.hidden = true;
    }
  }

  function setPrompt(text, ids = null) {
    $("#prompt").value = text;
    state.promptOverride = ids ? { text, ids } : null;
    updatePromptBadge();
    if (panel.onPrompt) panel.onPrompt(); // the token counter and "View code" follow the prompt box
  }

  /** Show an entry's status line (what it said when the entry finished). */
  function showStats(entry) {
    const stats = (entry && entry.stats) || {};
    panel.setStatus("idle", stats.status || "idle");
    STAT_IDS.forEach((id) => ($("#" + id).textContent = stats[id] ?? (id === "stat-tokens" ? "0" : "–")));
  }

  /** Go back to a history entry: its prompt, model, exact settings, status line and output. */
  function selectEntry(entry) {
    if (panel.busy) return;
    const promptText = entry.kind === "branch" ? entry.contextText + entry.tokens[0].token : entry.contextText;
    setPrompt(promptText, Array.isArray(entry.prompt) ? entry.prompt : null);
    if (store.byId.has(entry.model)) {
      $("#gen-model").value = entry.model;
      prefs.set("model", entry.model); // a reload opens on the model of the entry it shows
    }
    if (entry.settings) writeControls(entry.settings);
    panel.showError("");
    showStats(entry);
    showEntry(entry);
    persist();
  }

  /** Stream one completion into a new history entry. */
  async function run({ prompt, contextText, promptLabel, kind = "completion", forced = null, parent = null, at = null }) {
    if (panel.busy) return;
    const model = panel.model();
    if (!model) return;
    panel.showError("");
    const entry = {
      id: state.nextId++,
      kind,
      model,
      prompt,
      promptIds: Array.isArray(prompt) ? prompt.slice(0, forced ? prompt.length - 1 : prompt.length) : null,
      contextText,
      promptLabel: promptLabel ?? contextText,
      tokens: forced ? [forced] : [],
      finish: null,
      parent,
      at,
      settings: readControls(),
      stats: null,
    };
    // A branch's prompt ids end with the chosen token, which is shown as the entry's first token.
    if (kind === "branch") entry.basePromptIds = prompt.slice(0, prompt.length - 1);
    state.history.push(entry);
    showEntry(entry);
    const owner = ownerOf(entry);
    const body = {
      model,
      prompt,
      ...panel.samplingFields(),
      stream: true,
      stream_options: { include_usage: true },
      logprobs: panel.alternatives(),
      return_token_ids: true,
    };
    const onChunk = (chunk) => {
      if (chunk.usage) entry.usage = chunk.usage;
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      const tok = completionToken(c);
      entry.tokens.push(tok);
      if (state.current === entry) out.append(tokenSpan(tok, entry.tokens.length - 1, owner));
      panel.meter.token();
      if (c.finish_reason) entry.finish = c.finish_reason;
    };
    await panel.run((signal) => stream("v1/completions", body, signal, onChunk), {
      onError() {
        if (entry.tokens.length === (forced ? 1 : 0)) {
          // nothing came back: the entry never happened
          state.history.splice(state.history.indexOf(entry), 1);
          showEntry(state.history[state.history.length - 1] || null);
        }
      },
      finish(outcome) {
        if (outcome !== "done") entry.finish = outcome;
        return entry.finish;
      },
    });
    entry.stats = { status: $("#gen-status").textContent };
    for (const id of STAT_IDS) entry.stats[id] = $("#" + id).textContent;
    renderHistory();
    persist();
  }

  /** Continue from token `index` of `entry` with `alt` in its place: prompt ids + generated ids before it + alt. */
  async function branchFrom(entry, index, alt) {
    if (panel.busy) return;
    panel.showError("");
    panel.setBusy(true); // while the prompt ids are fetched
    panel.setStatus("running", "branching…");
    try {
      const base = entry.basePromptIds || (await promptIdsOf(entry));
      const before = entry.tokens.slice(0, index);
      if (alt.id === null || before.some((t) => t.id === null || t.id === undefined)) {
        throw new ApiError("cannot branch: the server did not return token ids");
      }
      const prompt = [...base, ...before.map((t) => t.id), alt.id];
      const contextText = entry.contextText + before.map((t) => (t.forced ? t.token : t.text)).join("");
      const parentTok = entry.tokens[index];
      const forced = {
        id: alt.id,
        text: alt.token,
        token: alt.token,
        logprob: alt.logprob,
        top: parentTok ? parentTok.top : [],
        forced: true,
      };
      setPrompt(contextText + alt.token, prompt);
      panel.setBusy(false);
      await run({ prompt, contextText, promptLabel: entry.promptLabel, kind: "branch", forced, parent: entry.id, at: index });
    } catch (e) {
      panel.setBusy(false);
      panel.setStatus("idle", "error");
      panel.showError(e.message);
    }
  }

  /** Generate from the prompt box: as the branch's ids while its text is unedited, else as text. */
  function generate() {
    const text = $("#prompt").value;
    const o = state.promptOverride;
    if (o && o.text === text) return run({ prompt: o.ids, contextText: text });
    setPrompt(text);
    return run({ prompt: text, contextText: text });
  }

  /** Replace the session with `data` (parseSession's answer): its history, the entry shown, the prompt box. */
  function load(data) {
    state.history = data.history;
    state.nextId = data.nextId;
    setPrompt(data.prompt.text, data.prompt.ids);
    const current = state.history.find((h) => h.id === data.current) || null;
    showStats(current);
    showEntry(current);
  }

  /** The session remembered in this browser, if any; true when there was one. */
  function restore() {
    const data = restoreSession();
    if (data) load(data);
    else renderHistory();
    return data !== null;
  }

  function exportSession() {
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    downloadJSON(sessionData(state, $("#prompt").value, state.promptOverride), `kiln-session-${stamp}.json`);
  }

  async function importSession(file) {
    const note = $("#session-note");
    if (panel.busy || !file) return;
    try {
      load(parseSession(await file.text()));
      persist();
      note.classList.remove("error");
      showBanner(note, `Imported ${state.history.length} entr${state.history.length === 1 ? "y" : "ies"} from ${file.name}.`);
    } catch (e) {
      note.classList.add("error");
      showBanner(note, `Cannot import ${file.name}: ${e.message}.`);
    }
  }

  function clearSession() {
    if (panel.busy) return;
    load({ history: [], nextId: 1, current: null, prompt: { text: $("#prompt").value, ids: null } });
    persist();
  }

  $("#prompt").addEventListener("input", () => {
    updatePromptBadge();
    persistSoon();
  });
  $("#session-export").addEventListener("click", exportSession);
  $("#session-import").addEventListener("change", async (e) => {
    await importSession(e.target.files[0]);
    e.target.value = ""; // the same file can be chosen again
  });
  $("#session-clear").addEventListener("click", clearSession);
  return {
    generate,
    setPrompt,
    restore,
    /** The request Generate would send now (for "View code"): the prompt as text, or a branch's ids. */
    currentPrompt() {
      const text = $("#prompt").value;
      const o = state.promptOverride;
      return o && o.text === text ? o.ids : text;
    },
  };
}
