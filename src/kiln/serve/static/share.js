// A shareable link to the Generate tab as it is set up: /?model=NAME&mode=completion&prompt=...&temperature=...
// with every sampling control (by its request field name), so whoever opens it gets the same request
// whatever their own browser remembers. The page reads the same parameters at start-up.

import { DEFAULTS } from "./controls.js";

// control element id <-> query parameter (the request field it sets)
const PARAM = (id) => (id === "stop-seqs" ? "stop" : id.replaceAll("-", "_"));

/** The link for `model`, `mode`, a text `prompt` and control values (element id -> value). */
export function shareURL({ model, mode, prompt, values }) {
  const q = new URLSearchParams();
  if (model) q.set("model", model);
  q.set("mode", mode);
  if (typeof prompt === "string") q.set("prompt", prompt);
  for (const id of Object.keys(DEFAULTS)) q.set(PARAM(id), values[id] ?? "");
  return `${location.origin}${location.pathname}?${q.toString()}`;
}

/** What a link asks for: control values (element id -> value, only those it names) and the prompt (or null). */
export function sharedSettings(params) {
  const values = {};
  for (const id of Object.keys(DEFAULTS)) if (params.has(PARAM(id))) values[id] = params.get(PARAM(id));
  return { values, prompt: params.has("prompt") ? params.get("prompt") : null };
}
