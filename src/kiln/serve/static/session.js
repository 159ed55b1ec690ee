// The Generate tab's completion session as data: every history entry (generations and branches, each with
// its tokens, alternatives, exact settings and status line), the entry shown and the prompt box. It is kept
// in localStorage so a reload loses nothing, and exported/imported as a JSON file. Import checks the file
// field by field, so a wrong or damaged file is refused with a message that says what is wrong.

import { prefs } from "./state.js";

export const FORMAT = "kiln-playground-session";
export const VERSION = 1;
const KINDS = ["completion", "branch"];

/** The session as a plain object (what the JSON file holds). */
export function sessionData(state, promptText, promptOverride) {
  return {
    format: FORMAT,
    version: VERSION,
    saved_at: new Date().toISOString(),
    next_id: state.nextId,
    current: state.current ? state.current.id : null,
    prompt: { text: promptText, ids: promptOverride && promptOverride.text === promptText ? promptOverride.ids : null },
    history: state.history,
  };
}

const isInt = (v) => Number.isInteger(v);
const isIds = (v) => Array.isArray(v) && v.every((i) => isInt(i) && i >= 0);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);

function checkToken(t, where) {
  if (!t || typeof t !== "object") throw new Error(`${where} is not an object`);
  if (typeof t.text !== "string" || typeof t.token !== "string") throw new Error(`${where} needs "text" and "token" strings`);
  if (!(t.id === null || t.id === undefined || isInt(t.id))) throw new Error(`${where}: "id" must be an integer or null`);
  if (!(t.logprob === null || t.logprob === undefined || isNum(t.logprob))) throw new Error(`${where}: "logprob" must be a number or null`);
  if (t.top !== undefined && !Array.isArray(t.top)) throw new Error(`${where}: "top" must be a list of alternatives`);
  for (const [j, a] of (t.top || []).entries()) {
    if (!a || typeof a.token !== "string" || !isNum(a.logprob)) {
      throw new Error(`${where}, alternative ${j + 1}: needs a "token" string and a "logprob" number`);
    }
  }
}

function checkEntry(h, i, ids) {
  const where = `history entry ${i + 1}`;
  if (!h || typeof h !== "object") throw new Error(`${where} is not an object`);
  if (!isInt(h.id) || h.id < 1) throw new Error(`${where}: "id" must be a positive integer`);
  if (ids.has(h.id)) throw new Error(`${where}: id ${h.id} appears twice`);
  ids.add(h.id);
  if (!KINDS.includes(h.kind)) throw new Error(`${where}: "kind" must be one of ${KINDS.join(", ")}`);
  if (typeof h.model !== "string" || !h.model) throw new Error(`${where}: "model" must be a model name`);
  if (!(typeof h.prompt === "string" || isIds(h.prompt))) throw new Error(`${where}: "prompt" must be text or token ids`);
  if (typeof h.contextText !== "string") throw new Error(`${where}: "contextText" must be a string`);
  if (!Array.isArray(h.tokens)) throw new Error(`${where}: "tokens" must be a list`);
  h.tokens.forEach((t, j) => checkToken(t, `${where}, token ${j + 1}`));
  if (h.kind === "branch") {
    if (!isInt(h.parent) || !isInt(h.at) || !h.tokens.length) throw new Error(`${where}: a branch needs "parent", "at" and its first token`);
    if (!isIds(h.prompt)) throw new Error(`${where}: a branch's prompt must be token ids`);
  }
  if (h.settings !== undefined && (typeof h.settings !== "object" || h.settings === null)) {
    throw new Error(`${where}: "settings" must be an object`);
  }
}

/**
 * The session in `text` (a file's contents), checked; throws an Error whose message says what is wrong.
 * Returns {history, nextId, current (an id or null), prompt: {text, ids}}.
 */
export function parseSession(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`it is not JSON (${e.message})`);
  }
  if (!data || typeof data !== "object" || data.format !== FORMAT) {
    throw new Error(`it is not a kiln playground session (expected "format": "${FORMAT}")`);
  }
  if (data.version !== VERSION) throw new Error(`its version is ${data.version}; this page reads version ${VERSION}`);
  if (!Array.isArray(data.history)) throw new Error(`"history" must be a list of entries`);
  const ids = new Set();
  data.history.forEach((h, i) => checkEntry(h, i, ids));
  for (const h of data.history) {
    if (h.kind === "branch" && !ids.has(h.parent)) throw new Error(`entry #${h.id} branches from #${h.parent}, which is not in the file`);
  }
  const current = data.current === null || data.current === undefined ? null : data.current;
  if (current !== null && !ids.has(current)) throw new Error(`"current" names entry #${current}, which is not in the file`);
  const maxId = Math.max(0, ...ids);
  const nextId = isInt(data.next_id) && data.next_id > maxId ? data.next_id : maxId + 1;
  const p = data.prompt && typeof data.prompt === "object" ? data.prompt : {};
  const prompt = { text: typeof p.text === "string" ? p.text : "", ids: isIds(p.ids) ? p.ids : null };
  return { history: data.history, nextId, current, prompt };
}

/**
 * Remember the session in this browser. Where storage is full (a few MB: each token keeps its alternatives),
 * the entries not shown are kept without their alternatives rather than nothing kept at all.
 */
export function storeSession(data) {
  const put = (d) => {
    try {
      localStorage.setItem("kiln.session", JSON.stringify(d));
      return true;
    } catch {
      return false; // full, or storage unavailable (private mode)
    }
  };
  if (put(data)) return;
  const lean = (h) => (h.id === data.current ? h : { ...h, tokens: h.tokens.map((t) => ({ ...t, top: [] })) });
  if (!put({ ...data, history: data.history.map(lean) })) prefs.set("session", null);
}

/** The remembered session, or null when there is none (or it cannot be read). */
export function restoreSession() {
  const text = prefs.get("session");
  if (!text) return null;
  try {
    return parseSession(text);
  } catch {
    return null;
  }
}

/** Offer `data` as a JSON file download called `name`. */
export function downloadJSON(data, name) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 1)], { type: "application/json" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
