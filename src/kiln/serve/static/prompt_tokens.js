// The prompt's length in the model's tokens next to the model's context ("12 / 256 tokens"), from the
// server's /api/tokenize with the model's own tokenizer: it encodes exactly as /v1/completions does.

import { getJSON } from "./api.js";
import { store } from "./state.js";
import { $, debounce } from "./util.js";

/** The counter under the prompt box; `model()` names the model, `prompt()` gives text or token ids. */
export function createPromptCounter({ model, prompt }) {
  const node = $("#prompt-tokens");
  let asked = 0; // answers to older questions are dropped: the prompt changed since

  const show = (n, name) => {
    const ctx = (store.byId.get(name) || {}).context_length;
    node.textContent = ctx ? `${n} / ${ctx} tokens` : `${n} tokens`;
    node.dataset.count = String(n);
    node.classList.toggle("over", !!ctx && n >= ctx);
    node.title = ctx && n >= ctx ? "Longer than the model's context: the server will refuse it" : "The prompt in the model's tokens / its context";
  };

  async function count() {
    const name = model();
    const p = prompt();
    const mine = ++asked;
    if (!name) return;
    if (Array.isArray(p)) return show(p.length, name);
    if (p === "") return show(0, name);
    try {
      const j = await getJSON("api/tokenize", { text: p, tokenizers: [`model:${name}`] });
      if (mine === asked) show(j.results[0].count, name);
    } catch {
      if (mine === asked) {
        node.textContent = "";
        delete node.dataset.count;
      }
    }
  }

  return { update: debounce(count, 250), now: count };
}
