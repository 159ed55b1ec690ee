// The compare tab: one prompt streamed to two models (or two settings of one) side by side, each with its
// own sampling settings, status and speed.

import { chatToken, completionToken, stream } from "./api.js";
import { Meter } from "./meter.js";
import { fillModelSelect, store } from "./state.js";
import { tokenSpan } from "./tokens.js";
import { $, $$, setStatus, showBanner } from "./util.js";

const NO_BRANCH = { noBranch: "Branching is in the Generate tab." };

/** One side (A or B): its controls, built from the template, and its meter. */
function createSide(col, template, onModelTouched) {
  const name = col.dataset.side;
  col.append(template.content.cloneNode(true));
  $(".side-tag", col).textContent = name.toUpperCase();
  const q = (role) => $(`[data-role="${role}"]`, col);
  for (const node of $$("[data-role]", col)) node.setAttribute("data-testid", `cmp-${node.dataset.role.replace("_", "-")}-${name}`);
  const side = {
    name,
    model: q("model"),
    output: q("output"),
    status: q("status"),
    error: q("error"),
    meter: new Meter({ ttft: q("ttft"), tps: q("tps"), tokens: q("tokens") }),
    fields() {
      const f = {
        temperature: Number(q("temperature").value),
        top_k: Math.floor(Number(q("top_k").value)),
        top_p: Number(q("top_p").value),
        min_p: Number(q("min_p").value),
      };
      const seed = q("seed").value.trim();
      if (seed !== "") f.seed = Math.trunc(Number(seed));
      return f;
    },
  };
  side.model.addEventListener("change", onModelTouched);
  return side;
}

/** Stream `prompt` on one side until done, stopped or failed; the side shows which. */
async function runSide(side, chat, prompt, maxTokens, signal) {
  const body = {
    model: side.model.value,
    max_tokens: maxTokens,
    ...side.fields(),
    stream: true,
    stream_options: { include_usage: true },
    return_token_ids: true,
  };
  if (chat) Object.assign(body, { messages: [{ role: "user", content: prompt }], logprobs: true, top_logprobs: 5 });
  else Object.assign(body, { prompt, logprobs: 5 });
  side.output.replaceChildren();
  showBanner(side.error, "");
  side.meter.reset();
  setStatus(side.status, "running", "generating…");
  let n = 0;
  try {
    await stream(chat ? "v1/chat/completions" : "v1/completions", body, signal, (chunk) => {
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      const tok = chat ? chatToken(c) : completionToken(c);
      if (!tok) return;
      side.output.append(tokenSpan(tok, n++, NO_BRANCH));
      side.meter.token();
    });
    setStatus(side.status, "idle", "done");
  } catch (e) {
    if (e.name === "AbortError") setStatus(side.status, "idle", "stopped");
    else {
      setStatus(side.status, "idle", "error");
      showBanner(side.error, e.message);
    }
  } finally {
    side.meter.render();
  }
}

/** Wire the tab; returns what start-up calls. */
export function initCompare() {
  // touched: the user picked a model on a side, so a reload of the models list keeps their choice
  const state = { sides: [], mode: "completion", controller: null, touched: false };
  const template = $("#cmp-side-template");
  for (const col of $$(".cmp-col")) state.sides.push(createSide(col, template, () => (state.touched = true)));

  async function run() {
    if (state.controller) return;
    state.controller = new AbortController();
    $("#cmp-run").disabled = true;
    $("#cmp-stop").disabled = false;
    const prompt = $("#cmp-prompt").value;
    const maxTokens = Math.max(1, Math.floor(Number($("#cmp-max-tokens").value) || 1));
    const chat = state.mode === "chat";
    try {
      await Promise.all(state.sides.map((s) => runSide(s, chat, prompt, maxTokens, state.controller.signal)));
    } finally {
      state.controller = null;
      $("#cmp-run").disabled = false;
      $("#cmp-stop").disabled = true;
    }
  }

  const modeButtons = $$("#panel-compare .seg button");
  for (const b of modeButtons) {
    b.addEventListener("click", () => {
      state.mode = b.dataset.mode;
      for (const o of modeButtons) o.classList.toggle("on", o === b);
    });
  }
  $("#cmp-run").addEventListener("click", run);
  $("#cmp-stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("#cmp-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });

  return {
    /** The server's models changed: refill both sides; B starts on the second model, to compare two. */
    onModels() {
      for (const side of state.sides) fillModelSelect(side.model, null);
      if (store.models.length > 1 && !state.touched) state.sides[1].model.value = store.models[1].id;
      // An empty prompt takes model A's own default prompt (its checkpoint's default_prompt).
      const box = $("#cmp-prompt");
      if (!box.value) box.value = (store.byId.get(state.sides[0].model.value) || {}).default_prompt || "";
    },
  };
}
