// The server's API from the page: JSON requests, server-sent event streams, and one token out of a
// completion or chat chunk. Paths are relative, so the page also works under a path prefix.

import { prefs } from "./state.js";

export class ApiError extends Error {
  constructor(message, status = 0, code = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = prefs.get("apiKey");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** GET (no body) or POST `body` as JSON; an error answer becomes an ApiError with the server's message. */
async function request(path, body, signal) {
  const opts = { method: body === undefined ? "GET" : "POST", headers: authHeaders(), signal };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(`cannot reach the server (${e.message})`);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    let code = null;
    try {
      const j = await res.json();
      if (j && j.error) {
        message = j.error.message || message;
        code = j.error.code || null;
      }
    } catch {
      /* not JSON */
    }
    if (res.status === 401) message += " — enter the key in the API key box at the top right.";
    throw new ApiError(message, res.status, code);
  }
  return res;
}

export async function getJSON(path, body, signal) {
  return (await request(path, body, signal)).json();
}

/** POST and call onChunk for each `data: {json}` event of the server-sent stream, until [DONE]. */
export async function stream(path, body, signal, onChunk) {
  const res = await request(path, body, signal);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        reader.cancel().catch(() => {});
        return;
      }
      const obj = JSON.parse(data);
      if (obj.error) throw new ApiError(obj.error.message, 0, obj.error.code);
      onChunk(obj);
    }
  }
}

/** One generated token from a /v1/completions chunk's choice. */
export function completionToken(choice) {
  const lp = choice.logprobs;
  let top = [];
  if (lp && lp.top_tokens) top = lp.top_tokens[0] || [];
  else if (lp && lp.top_logprobs && lp.top_logprobs[0]) {
    top = Object.entries(lp.top_logprobs[0]).map(([token, logprob]) => ({ id: null, token, logprob }));
  }
  return {
    id: choice.token_ids ? choice.token_ids[0] : null,
    text: choice.text || "",
    token: lp && lp.tokens ? lp.tokens[0] : choice.text || "",
    logprob: lp && lp.token_logprobs ? lp.token_logprobs[0] : null,
    top,
  };
}

/** One generated token from a /v1/chat/completions chunk's choice (null for the opening role chunk). */
export function chatToken(choice) {
  const text = (choice.delta && choice.delta.content) || "";
  const c = choice.logprobs && choice.logprobs.content && choice.logprobs.content[0];
  if (!c) {
    if (!text) return null;
    return { id: choice.token_ids ? choice.token_ids[0] : null, text, token: text, logprob: null, top: [] };
  }
  return {
    id: c.id ?? (choice.token_ids ? choice.token_ids[0] : null),
    text,
    token: c.token,
    logprob: c.logprob,
    top: (c.top_logprobs || []).map((t) => ({ id: t.id ?? null, token: t.token, logprob: t.logprob })),
  };
}
