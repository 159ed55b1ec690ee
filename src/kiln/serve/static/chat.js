// Chat mode of the Generate tab: a conversation sent as messages to /v1/chat/completions, each reply
// streamed as coloured tokens. A base model's refusal is shown and the message given back to retry. A user
// message can be edited (the conversation after it is dropped and the reply regenerated), the last reply
// regenerated, and "Show template" prints the exact prompt the model reads (/api/chat_template).

import { chatToken, getJSON, stream } from "./api.js";
import { tokenSpan } from "./tokens.js";
import { $, el } from "./util.js";

const NO_BRANCH = { noBranch: "Branching works in Completion mode (chat replies are shown, not continued)." };

/** The chat view over `panel` (generate.js); its state is the conversation so far. */
export function createChat(panel) {
  let messages = []; // [{role, content, node}], without the system prompt
  const log = $("#chat-log");
  const input = $("#chat-input");
  const templateView = $("#chat-template");

  function renderEmpty() {
    if (!log.querySelector(".msg")) log.replaceChildren(el("p", { class: "empty", text: "No messages yet. Say something below." }));
  }

  function bubble(role, text) {
    const body = el("div", { class: "msg-body tokens coloured" });
    if (text) body.textContent = text;
    const actions = el("span", { class: "msg-actions" });
    if (role === "user") {
      const edit = el("button", { class: "ghost small", "data-testid": "chat-edit", text: "Edit", title: "Edit this message and regenerate from it" });
      edit.addEventListener("click", () => editFrom(node));
      actions.append(edit);
    } else {
      const again = el("button", { class: "ghost small", "data-testid": "chat-regenerate", text: "Regenerate", title: "Sample this reply again" });
      again.addEventListener("click", () => regenerate(node));
      actions.append(again);
    }
    const node = el(
      "div",
      { class: `msg ${role}`, "data-testid": `chat-msg-${role}` },
      el("div", { class: "msg-role" }, el("span", { text: role }), actions),
      body,
    );
    const empty = log.querySelector(".empty");
    if (empty) empty.remove();
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function conversation() {
    const system = $("#system-prompt").value.trim();
    return [...(system ? [{ role: "system", content: system }] : []), ...messages.map(({ role, content }) => ({ role, content }))];
  }

  /** Drop `node`'s message and everything after it from the conversation and the log. */
  function truncateAt(node) {
    const i = messages.findIndex((m) => m.node === node);
    if (i < 0) return null;
    const dropped = messages.splice(i);
    for (const m of dropped) m.node.remove();
    return dropped[0];
  }

  function editFrom(node) {
    if (panel.busy) return;
    const m = truncateAt(node);
    if (!m) return;
    input.value = m.content;
    input.focus();
    renderEmpty();
    hideTemplate();
  }

  async function regenerate(node) {
    if (panel.busy) return;
    if (!truncateAt(node)) return;
    hideTemplate();
    await reply();
  }

  async function send() {
    if (panel.busy) return;
    const text = input.value.trim();
    const model = panel.model();
    if (!text || !model) return;
    panel.showError("");
    input.value = "";
    messages.push({ role: "user", content: text, node: bubble("user", text) });
    hideTemplate();
    await reply(() => {
      // nothing came back: undo the turn and give the message back for another try
      messages.pop().node.remove();
      input.value = text;
      renderEmpty();
    });
  }

  /** Stream the assistant's reply to the conversation so far; `onNothing` runs (before the panel says idle)
   * when an error left no token. */
  async function reply(onNothing = () => {}) {
    const model = panel.model();
    if (!model) return false;
    const replyBubble = bubble("assistant", "");
    const replyBody = $(".msg-body", replyBubble);
    const answer = { role: "assistant", content: "", tokens: [], node: replyBubble };
    const body = {
      model,
      messages: conversation(),
      ...panel.samplingFields(),
      stream: true,
      stream_options: { include_usage: true },
      logprobs: true,
      top_logprobs: panel.alternatives(),
      return_token_ids: true,
    };
    let finish = null;
    const onChunk = (chunk) => {
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      if (c.finish_reason) finish = c.finish_reason;
      const tok = chatToken(c);
      if (!tok) return;
      answer.tokens.push(tok);
      answer.content += tok.text;
      replyBody.append(tokenSpan(tok, answer.tokens.length - 1, NO_BRANCH));
      panel.meter.token();
      log.scrollTop = log.scrollHeight;
    };
    await panel.run((signal) => stream("v1/chat/completions", body, signal, onChunk), {
      onError() {
        if (answer.tokens.length) return;
        replyBubble.remove();
        onNothing();
      },
      finish: (outcome) => (outcome === "done" ? finish : outcome),
    });
    if (!answer.tokens.length) return false;
    messages.push(answer);
    return true;
  }

  function hideTemplate() {
    templateView.hidden = true;
    templateView.textContent = "";
  }

  async function showTemplate() {
    const model = panel.model();
    if (!model) return;
    if (!templateView.hidden) return hideTemplate();
    const msgs = conversation();
    if (!msgs.length || msgs[msgs.length - 1].role !== "user") {
      const next = input.value.trim();
      if (next) msgs.push({ role: "user", content: next });
    }
    if (!msgs.length) msgs.push({ role: "user", content: "" });
    try {
      const r = await getJSON("api/chat_template", { model, messages: msgs });
      templateView.textContent = `${r.ids.length} tokens the model reads (the reply starts after the last line):\n\n${r.text}`;
      templateView.hidden = false;
    } catch (e) {
      panel.showError(e.message);
    }
  }

  function clear() {
    if (panel.busy) return;
    messages = [];
    log.replaceChildren();
    renderEmpty();
    hideTemplate();
  }

  /** The messages the next Send would send: the conversation and the message being typed (for "View code"). */
  function requestMessages() {
    const next = input.value.trim();
    return [...conversation(), ...(next ? [{ role: "user", content: next }] : [])];
  }

  $("#chat-send").addEventListener("click", send);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  $("#chat-clear").addEventListener("click", clear);
  $("#chat-show-template").addEventListener("click", showTemplate);
  return { send, requestMessages };
}
