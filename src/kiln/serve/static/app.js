// kiln playground: plain JavaScript, no build step, no network access beyond this server.
// Sections: helpers & API · models · Generate (completion, chat, token view, branches) ·
// sampling explainer · tokenizer visualiser · compare · tabs & start-up.
"use strict";

/* ================================================================== helpers */

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const STORE = {
  get(key, fallback = null) {
    try {
      const v = localStorage.getItem("kiln." + key);
      return v === null ? fallback : v;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === "") localStorage.removeItem("kiln." + key);
      else localStorage.setItem("kiln." + key, value);
    } catch {
      /* private mode: settings are simply not remembered */
    }
  },
};

/** A token's text with its invisible characters made visible. */
function visible(s) {
  if (s === "") return "∅";
  return s.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\r/g, "␍").replace(/\t/g, "⇥");
}

function pct(p) {
  if (p >= 0.995) return (p * 100).toFixed(0) + "%";
  if (p >= 0.1) return (p * 100).toFixed(1) + "%";
  if (p >= 0.001) return (p * 100).toFixed(2) + "%";
  if (p > 0) return "<0.1%";
  return "0%";
}

/** Probability -> colour: red (0.1% or less) through amber to green (100%), on a log scale. */
function probColour(p, alpha = 0.55) {
  const t = Math.max(0, Math.min(1, 1 + Math.log10(Math.max(p, 1e-9)) / 3));
  return `hsla(${Math.round(t * 130)}, 85%, 55%, ${alpha})`;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/* ================================================================== API */

class ApiError extends Error {
  constructor(message, status = 0, code = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = STORE.get("apiKey");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch a same-origin API path (relative, so the page also works under a path prefix). */
async function api(path, body, signal) {
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

async function getJSON(path, body, signal) {
  return (await api(path, body, signal)).json();
}

/** POST and call onChunk for each `data: {json}` event of the server-sent stream, until [DONE]. */
async function stream(path, body, signal, onChunk) {
  const res = await api(path, body, signal);
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
function completionToken(choice) {
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
function chatToken(choice) {
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

/** Time to first token and tokens/s of one stream, shown live in a status bar. */
class Meter {
  constructor(els) {
    this.els = els; // {ttft, tps, tokens}
    this.reset();
  }
  reset() {
    this.t0 = performance.now();
    this.first = null;
    this.last = null;
    this.n = 0;
    this.pending = false;
    this.render();
  }
  token() {
    const now = performance.now();
    if (this.first === null) this.first = now;
    this.last = now;
    this.n += 1;
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }
  rate() {
    if (!this.n) return null;
    const decode = this.last - this.first;
    // (n - 1) tokens over the time between the first and the last; when a fast server's tokens arrive
    // in one read that span is ~0, so fall back to all tokens over the time since the request.
    if (this.n > 1 && decode >= 20) return ((this.n - 1) * 1000) / decode;
    return (this.n * 1000) / Math.max(1, this.last - this.t0);
  }
  render() {
    const { ttft, tps, tokens } = this.els;
    ttft.textContent = this.first === null ? "–" : `${Math.round(this.first - this.t0)} ms`;
    const r = this.rate();
    tps.textContent = r === null ? "–" : r >= 100 ? r.toFixed(0) : r.toFixed(1);
    tokens.textContent = String(this.n);
  }
}

function setStatus(node, state, text) {
  node.dataset.state = state;
  node.textContent = text || state;
}

function showBanner(node, message) {
  if (!message) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = message;
}

/* ================================================================== models */

const models = { list: [], byId: new Map() };

function modelLabel(m) {
  const kind = m.chat ? "chat" : "base";
  const ctx = m.context_length ? ` · ctx ${m.context_length}` : "";
  return `${m.id} (${kind}${ctx})`;
}

function fillModelSelect(select, preferred) {
  const keep = select.value || preferred;
  select.replaceChildren(
    ...models.list.map((m) => el("option", { value: m.id, text: modelLabel(m), "data-chat": String(!!m.chat) })),
  );
  if (keep && models.byId.has(keep)) select.value = keep;
}

async function loadModels() {
  const status = $("#server-status");
  try {
    const j = await getJSON("v1/models");
    models.list = j.data || [];
    models.byId = new Map(models.list.map((m) => [m.id, m]));
    setStatus(status, "ok", `${models.list.length} model${models.list.length === 1 ? "" : "s"}`);
    showBanner($("#global-error"), models.list.length ? "" : "The server offers no models (see kiln serve --models).");
    fillModelSelect($("#gen-model"), STORE.get("model"));
    fillModelSelect($("#ex-model"), STORE.get("model"));
    for (const side of compare.sides) fillModelSelect(side.model, null);
    if (models.list.length > 1 && !compare.touched) compare.sides[1].model.value = models.list[1].id;
    updateBaseModelNote();
    explainer.fetch();
    return true;
  } catch (e) {
    setStatus(status, "error", e.status === 401 ? "API key needed" : "offline");
    showBanner($("#global-error"), e.message);
    return false;
  }
}

/* ================================================================== token view */

/** A span for one generated token, coloured by its probability; its data drives the tooltip. */
function tokenSpan(tok, index, owner) {
  const span = el("span", { class: "tok", "data-testid": "token", "data-index": String(index) });
  span.textContent = tok.text;
  if (!tok.text) span.classList.add("empty");
  if (tok.forced) span.classList.add("forced");
  if (tok.logprob !== null && tok.logprob !== undefined) {
    const p = Math.exp(tok.logprob);
    span.dataset.prob = p.toFixed(6);
    span.style.setProperty("--tok-bg", probColour(p));
  }
  span._tok = tok;
  span._owner = owner;
  return span;
}

const tip = {
  node: null,
  hideTimer: null,
  anchor: null,
  init() {
    this.node = $("#tok-tip");
    this.node.addEventListener("mouseenter", () => clearTimeout(this.hideTimer));
    this.node.addEventListener("mouseleave", () => this.hideSoon());
    document.addEventListener("mouseover", (e) => {
      const span = e.target.closest && e.target.closest(".tok");
      if (span && span._tok) this.show(span);
    });
    document.addEventListener("mouseout", (e) => {
      const span = e.target.closest && e.target.closest(".tok");
      if (span && span._tok) this.hideSoon();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.hide();
    });
  },
  hideSoon() {
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => this.hide(), 300);
  },
  hide() {
    clearTimeout(this.hideTimer);
    this.node.hidden = true;
    if (this.anchor) this.anchor.classList.remove("hover");
    this.anchor = null;
  },
  show(span) {
    clearTimeout(this.hideTimer);
    if (this.anchor === span && !this.node.hidden) return;
    if (this.anchor) this.anchor.classList.remove("hover");
    this.anchor = span;
    span.classList.add("hover");
    const tok = span._tok;
    const owner = span._owner || {};
    const index = Number(span.dataset.index);
    const head = el(
      "div",
      { class: "tip-head" },
      el("code", { class: "tip-token", text: visible(tok.token) }),
      el("span", { class: "tip-prob", text: tok.logprob === null ? "" : pct(Math.exp(tok.logprob)) }),
    );
    if (tok.id !== null && tok.id !== undefined) head.append(el("span", { class: "tip-id", text: `id ${tok.id}` }));
    const parts = [head];
    if (tok.forced) parts.push(el("div", { class: "tip-note", text: "Chosen by you: the branch starts here." }));
    const alts = tok.top || [];
    if (alts.length) {
      const canBranch = typeof owner.branch === "function";
      const list = el("div", { class: "alts", "data-testid": "alternatives" });
      const best = Math.max(...alts.map((a) => Math.exp(a.logprob)), 1e-9);
      for (const alt of alts) {
        const p = Math.exp(alt.logprob);
        const isChosen = alt.id !== null && alt.id === tok.id;
        const row = el(
          "button",
          {
            class: "alt" + (isChosen ? " chosen" : ""),
            "data-testid": "alternative",
            "data-token": alt.token,
            "data-id": alt.id === null ? "" : String(alt.id),
            "data-prob": p.toFixed(6),
            disabled: !canBranch || alt.id === null,
            title: canBranch ? "Continue from here with this token instead" : owner.noBranch || "",
          },
          el("code", { text: visible(alt.token) }),
          el("span", { class: "alt-bar" }, el("span", { style: `width:${Math.max(2, (p / best) * 100).toFixed(1)}%` })),
          el("span", { class: "alt-p", text: pct(p) }),
        );
        row.addEventListener("click", () => {
          this.hide();
          owner.branch(index, alt);
        });
        list.append(row);
      }
      parts.push(list);
      parts.push(
        el("div", {
          class: "tip-note",
          text: canBranch ? "Click an alternative to branch from this point." : owner.noBranch || "",
        }),
      );
    } else if (!tok.forced) {
      parts.push(el("div", { class: "tip-note", text: "No alternatives were requested (alternatives per token = 0)." }));
    }
    this.node.replaceChildren(...parts);
    this.node.hidden = false;
    const r = span.getBoundingClientRect();
    const w = this.node.offsetWidth;
    const h = this.node.offsetHeight;
    let left = Math.min(window.innerWidth - w - 8, Math.max(8, r.left));
    let top = r.bottom + 6;
    if (top + h > window.innerHeight - 8) top = Math.max(8, r.top - h - 6);
    this.node.style.left = `${left}px`;
    this.node.style.top = `${top}px`;
  },
};

/* ================================================================== Generate */

const gen = {
  mode: "completion",
  busy: false,
  controller: null,
  history: [], // entries: {id, kind, model, prompt, contextText, tokens, finish, parent, at, usage, promptIds}
  current: null,
  nextId: 1,
  promptOverride: null, // {text, ids}: the prompt box shows a branch's context, sent as ids while unedited
  chat: [], // [{role, content}]
  meter: null,
};

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

function syncSliderOutputs(root = document) {
  for (const input of $$('input[type="range"]', root)) {
    const out = $(`output[for="${input.id}"]`, root);
    if (!out) continue;
    const v = Number(input.value);
    let text = input.step && Number(input.step) < 1 ? v.toFixed(2) : String(v);
    if ((input.id.endsWith("top-k") && v === 0) || (input.id.endsWith("min-p") && v === 0)) text = "off";
    if (input.id.endsWith("top-p") && v === 1) text = "off";
    if (input.id === "repetition-penalty" && v === 1) text = "off";
    if (input.id.endsWith("temperature") && v === 0) text = "0 · greedy";
    out.textContent = text;
  }
}

function saveSampling() {
  const values = {};
  for (const id of Object.keys(DEFAULTS)) values[id] = $("#" + id).value;
  STORE.set("sampling", JSON.stringify(values));
}

function loadSampling() {
  let values = {};
  try {
    values = JSON.parse(STORE.get("sampling", "{}")) || {};
  } catch {
    values = {};
  }
  for (const [id, v] of Object.entries({ ...DEFAULTS, ...values })) {
    const node = $("#" + id);
    if (node && v !== undefined) node.value = v;
  }
  syncSliderOutputs();
}

function setMode(mode) {
  gen.mode = mode;
  for (const b of $$("#panel-generate .seg button")) b.classList.toggle("on", b.dataset.mode === mode);
  $("#completion-view").hidden = mode !== "completion";
  $("#chat-view").hidden = mode !== "chat";
  $("#output-card").hidden = mode !== "completion";
  $(".history-card").hidden = mode !== "completion";
  $("#panel-generate").classList.toggle("chat-mode", mode === "chat");
  updateBaseModelNote();
  STORE.set("mode", mode);
}

function updateBaseModelNote() {
  const note = $("#base-model-note");
  const m = models.byId.get($("#gen-model").value);
  if (gen.mode === "chat" && m && !m.chat) {
    note.hidden = false;
    note.replaceChildren(
      el("strong", { text: `${m.id} is a base model` }),
      ` — it has no chat template (its tokenizer lacks the <|im_start|> and <|im_end|> tokens), so it cannot chat. ` +
        "Use Completion mode, or pick a chat model.",
    );
  } else {
    note.hidden = true;
  }
}

function setBusy(busy) {
  gen.busy = busy;
  $("#generate").disabled = busy;
  $("#chat-send").disabled = busy;
  $("#stop").disabled = !busy;
  $("#gen-statusbar").classList.toggle("running", busy);
}

function stopGeneration() {
  if (gen.controller) gen.controller.abort();
}

/** The prompt token ids of a history entry (asked of the server once for a text prompt). */
async function promptIdsOf(entry) {
  if (entry.promptIds) return entry.promptIds;
  // /api/next_token encodes the prompt exactly as /v1/completions does (an empty prompt -> <|endoftext|>).
  const j = await getJSON("api/next_token", { model: entry.model, prompt: entry.prompt, top_n: 1 });
  entry.promptIds = j.prompt_ids;
  return entry.promptIds;
}

function showEntry(entry) {
  gen.current = entry;
  $("#output-context").textContent = entry ? entry.contextText : "";
  const out = $("#output-generated");
  out.replaceChildren();
  if (entry) {
    const owner = entryOwner(entry);
    entry.tokens.forEach((t, i) => out.append(tokenSpan(t, i, owner)));
  }
  renderHistory();
}

function entryOwner(entry) {
  return {
    branch: (index, alt) => branchFrom(entry, index, alt),
    noBranch: "",
  };
}

function renderHistory() {
  const list = $("#history");
  $("#history-empty").hidden = gen.history.length > 0;
  list.replaceChildren(
    ...gen.history
      .slice()
      .reverse()
      .map((h) => {
        const text = h.tokens.map((t) => t.text).join("");
        const title =
          h.kind === "branch"
            ? `↳ branch of #${h.parent} at token ${h.at + 1}: “${visible(h.tokens[0] ? h.tokens[0].token : "")}”`
            : `“${visible(h.promptLabel).slice(0, 40)}”`;
        const meta = `${h.model} · ${h.tokens.length} tok${h.finish ? " · " + h.finish : ""}`;
        return el(
          "li",
          {
            class: (h === gen.current ? "active " : "") + h.kind,
            "data-testid": "history-item",
            "data-entry": String(h.id),
            "data-kind": h.kind,
            onclick: () => selectEntry(h),
          },
          el("div", { class: "h-title" }, el("span", { class: "h-id", text: `#${h.id}` }), " ", title),
          el("div", { class: "h-text", text: visible(text).slice(0, 80) || "…" }),
          el("div", { class: "h-meta", text: meta }),
        );
      }),
  );
}

function setPromptBox(text, ids) {
  $("#prompt").value = text;
  gen.promptOverride = ids ? { text, ids } : null;
  updatePromptBadge();
}

function updatePromptBadge() {
  const badge = $("#prompt-badge");
  const o = gen.promptOverride;
  if (o && $("#prompt").value === o.text) {
    badge.hidden = false;
    badge.textContent = `sent as ${o.ids.length} token ids (a branch) — edit the text to send it as text`;
  } else {
    badge.hidden = true;
  }
}

function selectEntry(entry) {
  if (gen.busy) return;
  const promptText = entry.kind === "branch" ? entry.contextText + entry.tokens[0].token : entry.contextText;
  setPromptBox(promptText, Array.isArray(entry.prompt) ? entry.prompt : null);
  if (models.byId.has(entry.model)) $("#gen-model").value = entry.model;
  showEntry(entry);
}

/** Stream one completion into a new history entry. */
async function runCompletion({ prompt, contextText, promptLabel, kind = "completion", forced = null, parent = null, at = null }) {
  if (gen.busy) return;
  const model = $("#gen-model").value;
  if (!model) return;
  showBanner($("#gen-error"), "");
  const entry = {
    id: gen.nextId++,
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
  };
  // A branch's prompt ids end with the chosen token, which is shown as the entry's first token.
  if (kind === "branch") entry.basePromptIds = prompt.slice(0, prompt.length - 1);
  gen.history.push(entry);
  showEntry(entry);
  const out = $("#output-generated");
  const owner = entryOwner(entry);
  const body = {
    model,
    prompt,
    ...samplingFields(),
    stream: true,
    stream_options: { include_usage: true },
    logprobs: Number($("#alternatives").value),
    return_token_ids: true,
  };
  gen.controller = new AbortController();
  setBusy(true);
  setStatus($("#gen-status"), "running", "generating…");
  $("#stat-finish").textContent = "–";
  gen.meter.reset();
  try {
    await stream("v1/completions", body, gen.controller.signal, (chunk) => {
      if (chunk.usage) entry.usage = chunk.usage;
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      const tok = completionToken(c);
      entry.tokens.push(tok);
      if (gen.current === entry) out.append(tokenSpan(tok, entry.tokens.length - 1, owner));
      gen.meter.token();
      if (c.finish_reason) entry.finish = c.finish_reason;
    });
    setStatus($("#gen-status"), "idle", "done");
  } catch (e) {
    if (e.name === "AbortError") {
      entry.finish = "stopped";
      setStatus($("#gen-status"), "idle", "stopped");
    } else {
      entry.finish = "error";
      setStatus($("#gen-status"), "idle", "error");
      showBanner($("#gen-error"), e.message);
      if (entry.tokens.length === (forced ? 1 : 0)) {
        gen.history.splice(gen.history.indexOf(entry), 1);
        showEntry(gen.history[gen.history.length - 1] || null);
      }
    }
  } finally {
    gen.controller = null;
    gen.meter.render();
    $("#stat-finish").textContent = entry.finish || "–";
    setBusy(false);
    renderHistory();
  }
}

function generate() {
  if (gen.mode === "chat") return sendChat();
  const text = $("#prompt").value;
  const o = gen.promptOverride;
  if (o && o.text === text) {
    return runCompletion({ prompt: o.ids, contextText: text });
  }
  gen.promptOverride = null;
  updatePromptBadge();
  return runCompletion({ prompt: text, contextText: text });
}

/** Continue from token `index` of `entry` with `alt` in its place: prompt ids + generated ids before it + alt. */
async function branchFrom(entry, index, alt) {
  if (gen.busy) return;
  showBanner($("#gen-error"), "");
  setBusy(true); // while the prompt ids are fetched
  setStatus($("#gen-status"), "running", "branching…");
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
    setPromptBox(contextText + alt.token, prompt);
    setBusy(false);
    await runCompletion({
      prompt,
      contextText,
      promptLabel: entry.promptLabel,
      kind: "branch",
      forced,
      parent: entry.id,
      at: index,
    });
  } catch (e) {
    setBusy(false);
    setStatus($("#gen-status"), "idle", "error");
    showBanner($("#gen-error"), e.message);
  }
}

/* ------------------------------------------------------------------ chat */

function renderChatEmpty() {
  const log = $("#chat-log");
  if (!log.querySelector(".msg")) log.replaceChildren(el("p", { class: "empty", text: "No messages yet. Say something below." }));
}

function chatBubble(role, text) {
  const body = el("div", { class: "msg-body tokens coloured" });
  if (text) body.textContent = text;
  const bubble = el(
    "div",
    { class: `msg ${role}`, "data-testid": `chat-msg-${role}` },
    el("div", { class: "msg-role", text: role }),
    body,
  );
  const log = $("#chat-log");
  const empty = log.querySelector(".empty");
  if (empty) empty.remove();
  log.append(bubble);
  log.scrollTop = log.scrollHeight;
  return bubble;
}

async function sendChat() {
  if (gen.busy) return;
  const input = $("#chat-input");
  const text = input.value.trim();
  const model = $("#gen-model").value;
  if (!text || !model) return;
  showBanner($("#gen-error"), "");
  input.value = "";
  const userBubble = chatBubble("user", text);
  gen.chat.push({ role: "user", content: text });
  const bubble = chatBubble("assistant", "");
  const body$ = $(".msg-body", bubble);
  const reply = { role: "assistant", content: "", tokens: [] };
  const system = $("#system-prompt").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...gen.chat.map(({ role, content }) => ({ role, content }))];
  const top = Number($("#alternatives").value);
  const body = {
    model,
    messages,
    ...samplingFields(),
    stream: true,
    stream_options: { include_usage: true },
    logprobs: true,
    top_logprobs: top,
    return_token_ids: true,
  };
  const owner = { noBranch: "Branching works in Completion mode (chat replies are shown, not continued)." };
  gen.controller = new AbortController();
  setBusy(true);
  setStatus($("#gen-status"), "running", "generating…");
  $("#stat-finish").textContent = "–";
  gen.meter.reset();
  let finish = null;
  try {
    await stream("v1/chat/completions", body, gen.controller.signal, (chunk) => {
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      if (c.finish_reason) finish = c.finish_reason;
      const tok = chatToken(c);
      if (!tok) return;
      reply.tokens.push(tok);
      reply.content += tok.text;
      body$.append(tokenSpan(tok, reply.tokens.length - 1, owner));
      gen.meter.token();
      $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
    });
    setStatus($("#gen-status"), "idle", "done");
  } catch (e) {
    if (e.name === "AbortError") {
      finish = "stopped";
      setStatus($("#gen-status"), "idle", "stopped");
    } else {
      finish = "error";
      setStatus($("#gen-status"), "idle", "error");
      showBanner($("#gen-error"), e.message);
      if (!reply.tokens.length) {
        // nothing came back: undo the turn and give the message back for another try
        bubble.remove();
        userBubble.remove();
        gen.chat.pop();
        input.value = text;
        renderChatEmpty();
      }
    }
  } finally {
    if (reply.tokens.length) gen.chat.push({ role: "assistant", content: reply.content });
    gen.controller = null;
    gen.meter.render();
    $("#stat-finish").textContent = finish || "–";
    setBusy(false);
  }
}

function initGenerate() {
  gen.meter = new Meter({ ttft: $("#stat-ttft"), tps: $("#stat-tps"), tokens: $("#stat-tokens") });
  loadSampling();
  for (const id of Object.keys(DEFAULTS)) {
    $("#" + id).addEventListener("input", () => {
      syncSliderOutputs($("#panel-generate"));
      saveSampling();
    });
  }
  $("#reset-sampling").addEventListener("click", () => {
    STORE.set("sampling", null);
    loadSampling();
  });
  for (const b of $$("#panel-generate .seg button")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("#gen-model").addEventListener("change", () => {
    STORE.set("model", $("#gen-model").value);
    updateBaseModelNote();
  });
  $("#generate").addEventListener("click", generate);
  $("#stop").addEventListener("click", stopGeneration);
  $("#prompt").addEventListener("input", updatePromptBadge);
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("#chat-send").addEventListener("click", sendChat);
  $("#chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      sendChat();
    }
  });
  $("#chat-clear").addEventListener("click", () => {
    if (gen.busy) return;
    gen.chat = [];
    $("#chat-log").replaceChildren();
    renderChatEmpty();
  });
  $("#colour-tokens").addEventListener("change", (e) => {
    for (const node of $$(".tokens")) node.classList.toggle("coloured", e.target.checked);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && gen.busy) stopGeneration();
  });
  setMode(STORE.get("mode", "completion") === "chat" ? "chat" : "completion");
  renderHistory();
}

/* ================================================================== sampling explainer */

/**
 * Apply temperature -> top-k -> top-p -> min-p to the next-token distribution, as the server's sampler
 * does (kiln.generate.sampling.process_logits). `groups` are [{logit, count}] sorted by logit, highest
 * first; a group of count > 1 stands for the tokens outside the top_n returned, modelled as equally likely.
 * Returns, per group, how many of its tokens are kept and each kept token's final probability.
 */
function applySampling(groups, vocab, { temperature, topK, topP, minP }) {
  const kept = groups.map((g) => g.count);
  const counts = { vocab, topK: vocab, topP: vocab, minP: vocab };
  const total = () => kept.reduce((a, b) => a + b, 0);
  if (temperature === 0) {
    // greedy: the argmax takes all the mass (the filters cannot change it)
    const each = groups.map((_, i) => (i === 0 ? 1 : 0));
    return { each, kept: groups.map((_, i) => (i === 0 ? 1 : 0)), counts: { vocab, topK: 1, topP: 1, minP: 1 }, greedy: true };
  }
  const x = groups.map((g) => g.logit / temperature);
  // top-k: keep the k highest (ties with the k-th kept, like the server)
  if (topK > 0 && topK < vocab) {
    let seen = 0;
    let kth = -Infinity;
    for (let i = 0; i < groups.length; i++) {
      if (seen + groups[i].count >= topK) {
        kth = x[i];
        break;
      }
      seen += groups[i].count;
    }
    let before = 0;
    for (let i = 0; i < groups.length; i++) {
      if (x[i] < kth) kept[i] = 0;
      else if (groups[i].count > 1) kept[i] = Math.min(groups[i].count, Math.max(0, topK - before));
      before += kept[i];
    }
  }
  counts.topK = total();
  const softmax = () => {
    const m = Math.max(...x.filter((_, i) => kept[i] > 0));
    const w = x.map((v, i) => (kept[i] > 0 ? Math.exp(v - m) : 0));
    const z = w.reduce((a, v, i) => a + v * kept[i], 0);
    return w.map((v) => v / z); // probability of each single token of the group
  };
  // top-p: the smallest set of most probable tokens whose mass reaches p; the first is always kept
  if (topP < 1) {
    const each = softmax();
    let mass = 0;
    let first = true;
    for (let i = 0; i < groups.length; i++) {
      if (!kept[i]) continue;
      if (groups[i].count === 1) {
        if (!(mass < topP) && !first) kept[i] = 0;
        mass += each[i] * kept[i];
      } else {
        const need = mass < topP ? Math.ceil((topP - mass) / each[i] - 1e-9) : 0;
        kept[i] = Math.min(kept[i], Math.max(first ? 1 : 0, need));
        mass += each[i] * kept[i];
      }
      first = false;
    }
  }
  counts.topP = total();
  // min-p: keep tokens with p >= min_p * p_max, i.e. x - x_max >= log(min_p)
  if (minP > 0) {
    const m = Math.max(...x.filter((_, i) => kept[i] > 0));
    const cut = Math.log(minP);
    for (let i = 0; i < groups.length; i++) if (kept[i] && x[i] - m < cut) kept[i] = 0;
  }
  counts.minP = total();
  return { each: softmax().map((p, i) => (kept[i] ? p : 0)), kept, counts, greedy: false };
}

const explainer = {
  data: null,
  controller: null,
  lastKey: "",
  settings() {
    return {
      temperature: Number($("#ex-temperature").value),
      topK: Math.floor(Number($("#ex-top-k").value)),
      topP: Number($("#ex-top-p").value),
      minP: Number($("#ex-min-p").value),
    };
  },
  async fetch() {
    const model = $("#ex-model").value;
    const prompt = $("#ex-prompt").value;
    if (!model) return;
    const key = model + "\u0000" + prompt;
    if (key === this.lastKey && this.data) return this.render();
    this.lastKey = key;
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    const card = models.byId.get(model);
    // the whole vocabulary when it is small enough (exact), else the top 1000 and a modelled tail
    const topN = Math.min(1000, (card && card.vocab_size) || 1000);
    $("#ex-summary").textContent = "Asking the model…";
    try {
      const j = await getJSON("api/next_token", { model, prompt, top_n: topN }, this.controller.signal);
      this.data = j;
      showBanner($("#ex-error"), "");
      this.render();
    } catch (e) {
      if (e.name === "AbortError") return;
      this.data = null;
      this.lastKey = "";
      showBanner($("#ex-error"), e.message);
      $("#ex-summary").textContent = "";
      $("#ex-bars").replaceChildren();
      $("#ex-pipeline").replaceChildren();
    }
  },
  render() {
    const d = this.data;
    if (!d) return;
    const s = this.settings();
    const toks = d.tokens;
    const vocab = d.vocab_size;
    const before = toks.map((t) => Math.exp(t.logit - d.logsumexp));
    const tailCount = Math.max(0, vocab - toks.length);
    const tailBefore = tailCount ? Math.max(0, 1 - before.reduce((a, b) => a + b, 0)) : 0;
    const groups = toks.map((t) => ({ logit: t.logit, count: 1 }));
    if (tailCount && tailBefore > 0) {
      const minLogit = toks.length ? toks[toks.length - 1].logit : 0;
      groups.push({ logit: Math.min(minLogit, d.logsumexp + Math.log(tailBefore / tailCount)), count: tailCount });
    }
    const res = applySampling(groups, vocab, s);
    const after = res.each.map((p, i) => p * res.kept[i]); // mass of each group
    const shown = Math.min(Number($("#ex-shown").value), toks.length);
    let otherBefore = tailBefore;
    let otherAfter = tailCount && tailBefore > 0 ? after[groups.length - 1] : 0;
    for (let i = shown; i < toks.length; i++) {
      otherBefore += before[i];
      otherAfter += after[i];
    }
    // token bars share one scale (the largest of them); the "other" bar is drawn on the full 0-100% scale
    const scale = Math.max(...before.slice(0, shown), ...after.slice(0, shown), 1e-9);
    const rows = [];
    for (let i = 0; i < shown; i++) {
      rows.push(this.row(toks[i], before[i], after[i], scale, i));
    }
    const otherN = vocab - shown;
    if (otherN > 0) {
      rows.push(
        this.row({ token: `other (${otherN} token${otherN === 1 ? "" : "s"})`, id: null }, otherBefore, otherAfter, 1, -1),
      );
    }
    $("#ex-bars").replaceChildren(...rows);
    const keptN = res.counts.minP;
    const entropy = -before.reduce((a, p) => (p > 0 ? a + p * Math.log2(p) : a), 0) +
      (tailBefore > 0 ? -tailBefore * Math.log2(tailBefore / tailCount) : 0);
    const promptTail = $("#ex-prompt").value.slice(-32);
    $("#ex-summary").replaceChildren(
      el("span", {}, "After ", el("code", { text: visible(promptTail) }), ` (${d.prompt_ids.length} tokens)`),
      el("span", { class: "sep", text: "·" }),
      el("span", { "data-testid": "ex-kept", text: `${keptN} of ${vocab} tokens can be sampled` }),
      el("span", { class: "sep", text: "·" }),
      el("span", { text: `entropy ${entropy.toFixed(2)} bits` }),
      el("span", { class: "sep", text: "·" }),
      el("span", { text: `top token ${pct(before[0] || 0)} → ${pct(Math.max(...after))}` }),
      ...(tailCount
        ? [el("span", { class: "muted", text: `(the ${tailCount} tokens outside the top ${toks.length} are modelled as equally likely)` })]
        : []),
    );
    const step = (name, n, on) =>
      el("span", { class: "step" + (on ? " on" : "") }, el("span", { class: "step-name", text: name }), el("b", { text: String(n) }));
    $("#ex-pipeline").replaceChildren(
      step("vocabulary", vocab, true),
      el("span", { class: "arrow", text: "→" }),
      step(res.greedy ? "greedy (T = 0)" : `÷ T ${s.temperature.toFixed(2)}`, res.greedy ? 1 : vocab, s.temperature !== 1),
      el("span", { class: "arrow", text: "→" }),
      step(`top-k ${s.topK || "off"}`, res.counts.topK, s.topK > 0),
      el("span", { class: "arrow", text: "→" }),
      step(`top-p ${s.topP < 1 ? s.topP.toFixed(2) : "off"}`, res.counts.topP, s.topP < 1),
      el("span", { class: "arrow", text: "→" }),
      step(`min-p ${s.minP > 0 ? s.minP.toFixed(2) : "off"}`, res.counts.minP, s.minP > 0),
    );
  },
  row(tok, before, after, scale, index) {
    const isOther = index < 0;
    const row = el(
      "div",
      {
        class: "bar-row" + (after > 0 ? " kept" : " cut") + (isOther ? " other" : ""),
        "data-testid": isOther ? "ex-other" : "ex-bar",
        "data-token": tok.token,
        "data-id": tok.id === null ? "" : String(tok.id),
        "data-before": before.toFixed(8),
        "data-after": after.toFixed(8),
        title: isOther ? "the rest of the vocabulary (bar on a 0–100% scale)" : `id ${tok.id} · logit ${tok.logit.toFixed(3)} — click to append to the prompt`,
      },
      el("code", { class: "bar-token", text: isOther ? tok.token : visible(tok.token) }),
      el(
        "div",
        { class: "bar" },
        el("span", { class: "before", style: `width:${((before / scale) * 100).toFixed(2)}%` }),
        el("span", { class: "after", style: `width:${((after / scale) * 100).toFixed(2)}%` }),
      ),
      el("span", { class: "bar-nums" }, el("span", { class: "nb", text: pct(before) }), " → ", el("b", { text: pct(after) })),
    );
    if (!isOther) {
      row.addEventListener("click", () => {
        $("#ex-prompt").value += tok.token;
        this.fetch();
      });
    }
    return row;
  },
};

function initExplainer() {
  syncSliderOutputs($("#panel-explain"));
  for (const id of ["ex-temperature", "ex-top-k", "ex-top-p", "ex-min-p", "ex-shown"]) {
    $("#" + id).addEventListener("input", () => {
      syncSliderOutputs($("#panel-explain"));
      explainer.render();
    });
  }
  const refetch = debounce(() => explainer.fetch(), 250);
  $("#ex-prompt").addEventListener("input", refetch);
  $("#ex-model").addEventListener("change", () => explainer.fetch());
  $("#ex-to-generate").addEventListener("click", () => {
    $("#temperature").value = $("#ex-temperature").value;
    $("#top-k").value = $("#ex-top-k").value;
    $("#top-p").value = $("#ex-top-p").value;
    $("#min-p").value = $("#ex-min-p").value;
    $("#gen-model").value = $("#ex-model").value;
    $("#prompt").value = $("#ex-prompt").value;
    gen.promptOverride = null;
    updatePromptBadge();
    syncSliderOutputs();
    saveSampling();
    location.hash = "#generate";
  });
}

/* ================================================================== tokenizer visualiser */

const tokviz = { available: [], selected: [], controller: null };
const MAX_TOKENIZERS = 8;

async function initTokenizers() {
  try {
    const j = await getJSON("api/tokenizers");
    tokviz.available = j.tokenizers || [];
  } catch (e) {
    showBanner($("#tok-error"), e.message);
    return;
  }
  let saved = null;
  try {
    saved = JSON.parse(STORE.get("tokenizers", "null"));
  } catch {
    saved = null;
  }
  const firstModel = tokviz.available.find((n) => n.startsWith("model:"));
  const defaults = ["char", firstModel, "cl100k_base"].filter((n) => n && tokviz.available.includes(n));
  tokviz.selected = (Array.isArray(saved) ? saved : defaults).filter((n) => tokviz.available.includes(n));
  if (!tokviz.selected.length) tokviz.selected = defaults;
  renderTokenizerChips();
  runTokenize();
}

function renderTokenizerChips() {
  $("#tok-choices").replaceChildren(
    ...tokviz.available.map((name) =>
      el("button", {
        class: "chip" + (tokviz.selected.includes(name) ? " on" : ""),
        "data-testid": "tok-choice",
        "data-tokenizer": name,
        "aria-pressed": String(tokviz.selected.includes(name)),
        text: name,
        onclick: () => toggleTokenizer(name),
      }),
    ),
  );
}

function toggleTokenizer(name) {
  const i = tokviz.selected.indexOf(name);
  if (i >= 0) tokviz.selected.splice(i, 1);
  else if (tokviz.selected.length < MAX_TOKENIZERS) tokviz.selected.push(name);
  else return showBanner($("#tok-error"), `At most ${MAX_TOKENIZERS} tokenizers side by side.`);
  STORE.set("tokenizers", JSON.stringify(tokviz.selected));
  renderTokenizerChips();
  runTokenize();
}

async function runTokenize() {
  const names = tokviz.available.filter((n) => tokviz.selected.includes(n));
  const results = $("#tok-results");
  if (!names.length) {
    results.replaceChildren(el("p", { class: "hint", text: "Pick one or more tokenizers above." }));
    return;
  }
  if (tokviz.controller) tokviz.controller.abort();
  tokviz.controller = new AbortController();
  results.classList.add("loading");
  try {
    const text = $("#tok-text").value;
    const j = await getJSON("api/tokenize", { text, tokenizers: names }, tokviz.controller.signal);
    tokenizerColumn.text = text;
    showBanner($("#tok-error"), "");
    results.replaceChildren(...j.results.map(tokenizerColumn));
    results.style.setProperty("--cols", String(Math.min(j.results.length, 4)));
  } catch (e) {
    if (e.name !== "AbortError") showBanner($("#tok-error"), e.message);
  } finally {
    results.classList.remove("loading");
  }
}

/** Group tokens so that a character split over several byte-level tokens is shown once, over all of them. */
function visualGroups(tokens, bytes) {
  const strict = new TextDecoder("utf-8", { fatal: true });
  const clean = (a, b) => {
    try {
      strict.decode(bytes.subarray(a, b));
      return true;
    } catch {
      return false;
    }
  };
  const groups = [];
  let i = 0;
  while (i < tokens.length) {
    let j = i;
    if (tokens[i].text.includes("\ufffd")) {
      while (j + 1 < tokens.length && !clean(tokens[i].start, tokens[j].end)) j++;
    }
    const part = tokens.slice(i, j + 1);
    const whole = clean(part[0].start, part[part.length - 1].end);
    const text = part.length > 1 && whole ? new TextDecoder().decode(bytes.subarray(part[0].start, part[part.length - 1].end)) : part.map((t) => t.text).join("");
    groups.push({ tokens: part, text });
    i = j + 1;
  }
  return groups;
}

function tokenizerColumn(r) {
  const perTok = r.count ? r.bytes / r.count : 0;
  const charsPerTok = r.count ? r.characters / r.count : 0;
  const body = el("div", { class: "tok-body" });
  const bytes = new TextEncoder().encode(tokenizerColumn.text || "");
  let n = 0;
  for (const g of visualGroups(r.tokens, bytes)) {
    const ids = g.tokens.map((t) => t.id);
    const first = g.tokens[0];
    const last = g.tokens[g.tokens.length - 1];
    const split = g.tokens.length > 1;
    const span = el("span", {
      class: `vt c${n++ % 6}` + (split ? " split" : ""),
      "data-testid": "viz-token",
      "data-id": ids.join(" "),
      "data-tokens": String(g.tokens.length),
      title: split
        ? `${g.tokens.length} tokens (ids ${ids.join(", ")}) for one character · bytes ${first.start}–${last.end}`
        : `id ${first.id} · bytes ${first.start}–${first.end} · ${JSON.stringify(first.text)}`,
    });
    g.text.split("\n").forEach((part, j) => {
      if (j > 0) span.append(el("span", { class: "nl", text: "↵" }), "\n");
      if (part) span.append(part);
    });
    span.append(el("sub", { class: "vid", text: ids.join("·") }));
    body.append(span);
  }
  return el(
    "div",
    { class: "card tok-col", "data-testid": "tok-col", "data-tokenizer": r.tokenizer },
    el(
      "div",
      { class: "tok-head" },
      el("span", { class: "tok-name", text: r.tokenizer }),
      el(
        "span",
        { class: "tok-stats" },
        el("b", { "data-testid": "tok-count", text: String(r.count) }),
        " tokens · ",
        el("b", { text: perTok.toFixed(2) }),
        " bytes/token · ",
        el("b", { text: charsPerTok.toFixed(2) }),
        " chars/token",
      ),
    ),
    body,
  );
}

function initTokenizerTab() {
  const rerun = debounce(runTokenize, 200);
  $("#tok-text").addEventListener("input", rerun);
  $("#tok-show-ids").addEventListener("change", (e) => $("#tok-results").classList.toggle("show-ids", e.target.checked));
}

/* ================================================================== compare */

const compare = { sides: [], mode: "completion", controller: null, touched: false };

function initCompare() {
  const tpl = $("#cmp-side-template");
  for (const col of $$(".cmp-col")) {
    const side = col.dataset.side;
    col.append(tpl.content.cloneNode(true));
    $(".side-tag", col).textContent = side.toUpperCase();
    const q = (role) => $(`[data-role="${role}"]`, col);
    for (const node of $$("[data-role]", col)) node.setAttribute("data-testid", `cmp-${node.dataset.role.replace("_", "-")}-${side}`);
    const s = {
      name: side,
      col,
      model: q("model"),
      output: q("output"),
      status: q("status"),
      error: q("error"),
      fields: () => {
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
    s.meter = new Meter({ ttft: q("ttft"), tps: q("tps"), tokens: q("tokens") });
    s.model.addEventListener("change", () => (compare.touched = true));
    compare.sides.push(s);
  }
  for (const b of $$("#panel-compare .seg button")) {
    b.addEventListener("click", () => {
      compare.mode = b.dataset.mode;
      for (const o of $$("#panel-compare .seg button")) o.classList.toggle("on", o === b);
    });
  }
  $("#cmp-run").addEventListener("click", runCompare);
  $("#cmp-stop").addEventListener("click", () => compare.controller && compare.controller.abort());
  $("#cmp-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      runCompare();
    }
  });
}

async function runSide(side, prompt, maxTokens, signal) {
  const chat = compare.mode === "chat";
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
  const owner = { noBranch: "Branching is in the Generate tab." };
  let n = 0;
  try {
    await stream(chat ? "v1/chat/completions" : "v1/completions", body, signal, (chunk) => {
      const c = chunk.choices && chunk.choices[0];
      if (!c) return;
      const tok = chat ? chatToken(c) : completionToken(c);
      if (!tok) return;
      side.output.append(tokenSpan(tok, n++, owner));
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

async function runCompare() {
  if (compare.controller) return;
  compare.controller = new AbortController();
  $("#cmp-run").disabled = true;
  $("#cmp-stop").disabled = false;
  const prompt = $("#cmp-prompt").value;
  const maxTokens = Math.max(1, Math.floor(Number($("#cmp-max-tokens").value) || 1));
  try {
    await Promise.all(compare.sides.map((s) => runSide(s, prompt, maxTokens, compare.controller.signal)));
  } finally {
    compare.controller = null;
    $("#cmp-run").disabled = false;
    $("#cmp-stop").disabled = true;
  }
}

/* ================================================================== tabs & start-up */

const TABS = ["generate", "explain", "tokenize", "compare"];

function showTab() {
  const name = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "generate";
  for (const t of TABS) {
    $(`#panel-${t}`).hidden = t !== name;
    const tab = $(`#tab-${t}`);
    tab.classList.toggle("on", t === name);
    tab.setAttribute("aria-selected", String(t === name));
  }
  tip.hide();
  if (name === "explain") explainer.fetch();
}

function initApiKey() {
  const input = $("#api-key");
  input.value = STORE.get("apiKey", "");
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") input.blur(); // commits it (a change event)
  });
  input.addEventListener("change", async () => {
    STORE.set("apiKey", input.value.trim());
    if (await loadModels()) initTokenizers();
  });
}

async function main() {
  tip.init();
  initGenerate();
  initExplainer();
  initTokenizerTab();
  initCompare();
  initApiKey();
  for (const b of $$(".tab")) b.addEventListener("click", () => (location.hash = "#" + b.dataset.tab));
  window.addEventListener("hashchange", showTab);
  showTab();
  if (await loadModels()) await initTokenizers();
  document.body.dataset.ready = "true";
}

main();
