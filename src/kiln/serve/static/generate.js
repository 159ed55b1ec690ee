// The Generate tab: the model, the sampling controls, Completion/Chat mode, and the status bar with its
// Stop button. Completion (with history and branches) and chat are in their own modules; both run their
// streams through this panel, so busy, stop, status and stats behave the same in either mode.

import { createChat } from "./chat.js";
import { createCompletion } from "./completion.js";
import { Meter } from "./meter.js";
import { fillModelSelect, prefs, store } from "./state.js";
import { $, $$, el, setStatus, showBanner, syncSliderOutputs } from "./util.js";

// element id -> default value of each remembered sampling control
const DEFAULTS = {
  temperature: "0.8",
  "top-k": "0",
  "top-p": "1",
  "min-p": "0",
  "repetition-penalty": "1",
  "max-tokens": "64",
  seed: "",
  "stop-seqs": "",
  alternatives: "5",
};

function unescapeStop(s) {
  return s.replace(/\\(n|t|\\)/g, (_, c) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

/** The sampling fields of a request, from the Generate controls. */
function samplingFields() {
  const num = (id) => Number($("#" + id).value);
  const fields = {
    max_tokens: Math.max(1, Math.floor(num("max-tokens") || 1)),
    temperature: num("temperature"),
    top_p: num("top-p"),
    top_k: Math.floor(num("top-k")),
    min_p: num("min-p"),
    repetition_penalty: num("repetition-penalty"),
  };
  const seed = $("#seed").value.trim();
  if (seed !== "") fields.seed = Math.trunc(Number(seed));
  const stops = $("#stop-seqs")
    .value.split("\n")
    .filter((s) => s !== "")
    .map(unescapeStop)
    .slice(0, 16);
  if (stops.length) fields.stop = stops;
  return fields;
}

function saveSampling() {
  const values = {};
  for (const id of Object.keys(DEFAULTS)) values[id] = $("#" + id).value;
  prefs.set("sampling", JSON.stringify(values));
}

function loadSampling() {
  let values = {};
  try {
    values = JSON.parse(prefs.get("sampling", "{}")) || {};
  } catch {
    values = {};
  }
  for (const [id, v] of Object.entries({ ...DEFAULTS, ...values })) {
    const node = $("#" + id);
    if (node && v !== undefined) node.value = v;
  }
  syncSliderOutputs();
}

/** What completion and chat share: the model, the sampling, and one stream at a time under Stop. */
function createPanel() {
  const status = $("#gen-status");
  const panel = {
    mode: "completion",
    busy: false,
    controller: null,
    meter: new Meter({ ttft: $("#stat-ttft"), tps: $("#stat-tps"), tokens: $("#stat-tokens") }),
    model: () => $("#gen-model").value,
    samplingFields,
    alternatives: () => Number($("#alternatives").value),
    setBusy(busy) {
      panel.busy = busy;
      $("#generate").disabled = busy;
      $("#chat-send").disabled = busy;
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

  const updateBaseModelNote = () => {
    const note = $("#base-model-note");
    const m = store.byId.get(panel.model());
    if (panel.mode === "chat" && m && !m.chat) {
      note.hidden = false;
      note.replaceChildren(
        el("strong", { text: `${m.id} is a base model` }),
        ` — it has no chat template (its tokenizer lacks the <|im_start|> and <|im_end|> tokens), so it cannot chat. ` +
          "Use Completion mode, or pick a chat model.",
      );
    } else {
      note.hidden = true;
    }
  };

  const setMode = (mode) => {
    panel.mode = mode;
    for (const b of $$("#panel-generate .seg button")) b.classList.toggle("on", b.dataset.mode === mode);
    $("#completion-view").hidden = mode !== "completion";
    $("#chat-view").hidden = mode !== "chat";
    $("#output-card").hidden = mode !== "completion";
    $(".history-card").hidden = mode !== "completion";
    $("#panel-generate").classList.toggle("chat-mode", mode === "chat");
    updateBaseModelNote();
    prefs.set("mode", mode);
  };

  const generate = () => (panel.mode === "chat" ? chat.send() : completion.generate());

  loadSampling();
  for (const id of Object.keys(DEFAULTS)) {
    $("#" + id).addEventListener("input", () => {
      syncSliderOutputs($("#panel-generate"));
      saveSampling();
    });
  }
  $("#reset-sampling").addEventListener("click", () => {
    prefs.set("sampling", null);
    loadSampling();
  });
  for (const b of $$("#panel-generate .seg button")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("#gen-model").addEventListener("change", () => {
    prefs.set("model", panel.model());
    updateBaseModelNote();
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
  // A link can open the page on a model and mode: /?model=NAME&mode=chat (the quickstart's does, on its chat model).
  const asked = new URLSearchParams(location.search);
  const startMode = asked.get("mode") || prefs.get("mode", "completion");
  setMode(startMode === "chat" ? "chat" : "completion");
  completion.renderHistory();

  return {
    /** The server's models changed: refill the model list. */
    onModels() {
      fillModelSelect($("#gen-model"), asked.get("model") || prefs.get("model"));
      updateBaseModelNote();
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
    },
  };
}
