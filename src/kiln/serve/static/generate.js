// The Generate tab: the model, the sampling controls, Completion/Chat mode, and the status bar with its
// Stop button. Completion (with history and branches) and chat are in their own modules; both run their
// streams through this panel, so busy, stop, status and stats behave the same in either mode.

import { createChat } from "./chat.js";
import { snippets } from "./codeview.js";
import { createCompletion } from "./completion.js";
import { DEFAULTS, loadSampling, readControls, samplingFields, saveSampling, writeControls } from "./controls.js";
import { Meter } from "./meter.js";
import { initPresets } from "./presets.js";
import { createPromptCounter } from "./prompt_tokens.js";
import { shareURL, sharedSettings } from "./share.js";
import { fillModelSelect, prefs, store } from "./state.js";
import { $, $$, copyText, el, setStatus, showBanner, syncSliderOutputs } from "./util.js";

/** What completion and chat share: the model, the sampling, and one stream at a time under Stop. */
function createPanel() {
  const status = $("#gen-status");
  const panel = {
    mode: "completion",
    busy: false,
    controller: null,
    meter: new Meter({ ttft: $("#stat-ttft"), tps: $("#stat-tps"), tokens: $("#stat-tokens") }),
    model: () => $("#gen-model").value,
    samplingFields: () => samplingFields(),
    isBaseModel: () => {
      const m = store.byId.get(panel.model());
      return !!m && !m.chat;
    },
    alternatives: () => Number($("#alternatives").value),
    setBusy(busy) {
      panel.busy = busy;
      $("#generate").disabled = busy;
      $("#chat-send").disabled = busy || panel.isBaseModel();
      $("#stop").disabled = !busy;
      $("#gen-statusbar").classList.toggle("running", busy);
    },
    setStatus: (state, text) => setStatus(status, state, text),
    showError: (message) => showBanner($("#gen-error"), message),
    stop() {
      if (panel.controller) panel.controller.abort();
    },
    /**
     * Run one stream, `work(signal)`, with Stop enabled and the stats live. It ends "done", "stopped" or
     * "error"; `onError(e)` and `finish(outcome)` (the finish reason to show) run before the panel says idle,
     * so whoever waits for idle sees the final page.
     */
    async run(work, { finish, onError = () => {} }) {
      panel.controller = new AbortController();
      panel.setBusy(true);
      panel.setStatus("running", "generating…");
      $("#stat-finish").textContent = "–";
      panel.meter.reset();
      let outcome = "done";
      try {
        await work(panel.controller.signal);
        panel.setStatus("idle", "done");
      } catch (e) {
        outcome = e.name === "AbortError" ? "stopped" : "error";
        panel.setStatus("idle", outcome);
        if (outcome === "error") {
          panel.showError(e.message);
          onError(e);
        }
      } finally {
        panel.controller = null;
        panel.meter.render();
        $("#stat-finish").textContent = finish(outcome) || "–";
        panel.setBusy(false);
      }
      return outcome;
    },
  };
  return panel;
}

/** Wire the Generate tab; returns what start-up and the other tabs call. */
export function initGenerate() {
  const panel = createPanel();
  const completion = createCompletion(panel);
  const chat = createChat(panel);

  // A base model cannot chat: Chat mode says so and how to make one, instead of sending and showing an error.
  const updateBaseModelNote = () => {
    const note = $("#base-model-note");
    const m = store.byId.get(panel.model());
    const base = panel.isBaseModel();
    $("#chat-input").disabled = base;
    $("#chat-send").disabled = base || panel.busy;
    $("#chat-show-template").disabled = base;
    if (panel.mode === "chat" && base) {
      note.hidden = false;
      note.replaceChildren(
        el("strong", { text: `${m.id} is a base model:` }),
        " it continues text but was not trained to chat. Use Completion mode, or make a chat model from it with ",
        el("code", { text: "kiln sft" }),
        " (see docs/posttrain.md).",
      );
    } else {
      note.hidden = true;
    }
  };

  const setMode = (mode) => {
    panel.mode = mode;
    for (const b of $$("#panel-generate .seg button[data-mode]")) b.classList.toggle("on", b.dataset.mode === mode);
    $("#completion-view").hidden = mode !== "completion";
    $("#chat-view").hidden = mode !== "chat";
    $("#output-card").hidden = mode !== "completion";
    $(".history-card").hidden = mode !== "completion";
    $("#panel-generate").classList.toggle("chat-mode", mode === "chat");
    updateBaseModelNote();
    prefs.set("mode", mode);
    renderCode();
  };

  const generate = () => (panel.mode === "chat" ? chat.send() : completion.generate());

  loadSampling();
  for (const id of Object.keys(DEFAULTS)) {
    $("#" + id).addEventListener("input", () => {
      syncSliderOutputs($("#panel-generate"));
      saveSampling();
    });
  }
  initPresets();
  const counter = createPromptCounter({ model: panel.model, prompt: () => completion.currentPrompt() });
  $("#prompt").addEventListener("input", counter.update);

  // ---- the prompt a model offers: its checkpoint's default_prompt, put in an empty (or untouched) prompt box
  const defaultPrompt = (id) => (store.byId.get(id) || {}).default_prompt || "";
  const offerDefaultPrompt = (previous) => {
    const box = $("#prompt");
    const offered = defaultPrompt(panel.model());
    box.placeholder = offered ? `e.g. ${offered}` : "Type the beginning of a text; the model continues it.";
    if (offered && (box.value === "" || (previous && box.value === defaultPrompt(previous)))) completion.setPrompt(offered);
  };

  // ---- "View code" for the request Generate would send now
  let lang = prefs.get("codeLang", "curl");
  const requestNow = () => {
    const sampling = samplingFields();
    if (panel.mode === "chat") return { kind: "chat", body: { model: panel.model(), messages: chat.requestMessages(), ...sampling } };
    return { kind: "completion", body: { model: panel.model(), prompt: completion.currentPrompt(), ...sampling } };
  };
  const renderCode = () => {
    if ($("#code-card").hidden) return;
    const base = location.origin + location.pathname.replace(/\/$/, "");
    const code = snippets({ base, ...requestNow(), hasKey: !!prefs.get("apiKey") })[lang];
    $("#code-text").textContent = code;
    for (const b of $$("#code-langs button")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  };
  $("#view-code").addEventListener("click", () => {
    const card = $("#code-card");
    card.hidden = !card.hidden;
    $("#view-code").setAttribute("aria-expanded", String(!card.hidden));
    renderCode();
  });
  for (const b of $$("#code-langs button")) {
    b.addEventListener("click", () => {
      lang = b.dataset.lang;
      prefs.set("codeLang", lang);
      renderCode();
    });
  }
  $("#code-copy").addEventListener("click", async () => {
    const ok = await copyText($("#code-text").textContent);
    showBanner($("#code-copied"), ok ? "Copied." : "The browser refused: select the code and copy it.");
  });
  panel.onPrompt = () => {
    counter.update();
    renderCode();
  };
  $("#panel-generate").addEventListener("input", renderCode);
  $("#panel-generate").addEventListener("change", renderCode);

  // ---- a link to this set-up
  $("#share-link").addEventListener("click", async () => {
    const prompt = completion.currentPrompt();
    const url = shareURL({ model: panel.model(), mode: panel.mode, prompt: Array.isArray(prompt) ? $("#prompt").value : prompt, values: readControls() });
    const box = $("#share-url");
    box.value = url;
    box.hidden = false;
    box.select();
    const ok = await copyText(url);
    showBanner($("#code-copied"), ok ? "Link copied." : "");
  });
  $("#reset-sampling").addEventListener("click", () => {
    prefs.set("sampling", null);
    loadSampling();
  });
  for (const b of $$("#panel-generate .seg button[data-mode]")) b.addEventListener("click", () => setMode(b.dataset.mode));
  let shownModel = null;
  $("#gen-model").addEventListener("change", () => {
    prefs.set("model", panel.model());
    updateBaseModelNote();
    offerDefaultPrompt(shownModel);
    shownModel = panel.model();
    counter.update();
    renderCode();
  });
  $("#generate").addEventListener("click", generate);
  $("#stop").addEventListener("click", panel.stop);
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("#colour-tokens").addEventListener("change", (e) => {
    for (const node of $$(".tokens")) node.classList.toggle("coloured", e.target.checked);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && panel.busy) panel.stop();
  });
  // A link can open the page on a model and mode: /?model=NAME&mode=chat (the quickstart's does, on its chat model),
  // and a shared link (share.js) also sets the prompt and every sampling control.
  const asked = new URLSearchParams(location.search);
  const startMode = asked.get("mode") || prefs.get("mode", "completion");
  completion.restore(); // the session this browser remembers
  const shared = sharedSettings(asked);
  if (Object.keys(shared.values).length) writeControls(shared.values);
  if (shared.prompt !== null) completion.setPrompt(shared.prompt);
  setMode(startMode === "chat" ? "chat" : "completion");

  return {
    /** The server's models changed: refill the model list. */
    onModels() {
      fillModelSelect($("#gen-model"), asked.get("model") || prefs.get("model"));
      updateBaseModelNote();
      offerDefaultPrompt(null);
      shownModel = panel.model();
      counter.now();
    },
    /** Take the sampling explainer's settings, model and prompt (values as the sliders give them). */
    useSettings({ temperature, topK, topP, minP, model, prompt }) {
      $("#temperature").value = temperature;
      $("#top-k").value = topK;
      $("#top-p").value = topP;
      $("#min-p").value = minP;
      $("#gen-model").value = model;
      completion.setPrompt(prompt);
      syncSliderOutputs();
      saveSampling();
      counter.update();
    },
  };
}
