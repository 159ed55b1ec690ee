// Chat mode of the Generate tab: a conversation sent as messages to /v1/chat/completions, each reply
// streamed as coloured tokens. A base model's refusal is shown and the message given back to retry.

import { chatToken, stream } from "./api.js";
import { tokenSpan } from "./tokens.js";
import { $, el } from "./util.js";

const NO_BRANCH = { noBranch: "Branching works in Completion mode (chat replies are shown, not continued)." };

/** The chat view over `panel` (generate.js); its state is the conversation so far. */
export function createChat(panel) {
  let messages = []; // [{role, content}], without the system prompt
  const log = $("#chat-log");
  const input = $("#chat-input");

  function renderEmpty() {
    if (!log.querySelector(".msg")) log.replaceChildren(el("p", { class: "empty", text: "No messages yet. Say something below." }));
  }

  function bubble(role, text) {
    const body = el("div", { class: "msg-body tokens coloured" });
    if (text) body.textContent = text;
    const node = el(
      "div",
      { class: `msg ${role}`, "data-testid": `chat-msg-${role}` },
      el("div", { class: "msg-role", text: role }),
      body,
    );
    const empty = log.querySelector(".empty");
    if (empty) empty.remove();
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  async function send() {
    if (panel.busy) return;
    const text = input.value.trim();
    const model = panel.model();
    if (!text || !model) return;
    panel.showError("");
    input.value = "";
    const userBubble = bubble("user", text);
    messages.push({ role: "user", content: text });
    const replyBubble = bubble("assistant", "");
    const replyBody = $(".msg-body", replyBubble);
    const reply = { role: "assistant", content: "", tokens: [] };
    const system = $("#system-prompt").value.trim();
    const body = {
      model,
      messages: [...(system ? [{ role: "system", content: system }] : []), ...messages],
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
      reply.tokens.push(tok);
      reply.content += tok.text;
      replyBody.append(tokenSpan(tok, reply.tokens.length - 1, NO_BRANCH));
      panel.meter.token();
      log.scrollTop = log.scrollHeight;
    };
    await panel.run((signal) => stream("v1/chat/completions", body, signal, onChunk), {
      onError() {
        if (reply.tokens.length) return;
        // nothing came back: undo the turn and give the message back for another try
        replyBubble.remove();
        userBubble.remove();
        messages.pop();
        input.value = text;
        renderEmpty();
      },
      finish: (outcome) => (outcome === "done" ? finish : outcome),
    });
    if (reply.tokens.length) messages.push({ role: "assistant", content: reply.content });
  }

  function clear() {
    if (panel.busy) return;
    messages = [];
    log.replaceChildren();
    renderEmpty();
  }

  $("#chat-send").addEventListener("click", send);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  $("#chat-clear").addEventListener("click", clear);
  return { send };
}
