// The arena tab: two models answer one prompt blind, side by side; the person votes A, B, tie or both bad,
// and only then learns which model was which. The server draws the sides (and a random pair), so nothing in
// this page can leak them; the leaderboard and the DPO export are computed by the server from the votes.

import { ApiError, getJSON, stream } from "./api.js";
import { prefs, store } from "./state.js";
import { $, $$, el, setStatus, showBanner } from "./util.js";

const RANDOM = ""; // the value of the "random" choice in a model <select>

/** Wire the tab; returns what start-up calls. */
export function initArena() {
  const state = { mode: "completion", battle: null, busy: false };
  const picks = [$("#arena-model-1"), $("#arena-model-2")];
  const modeButtons = $$("#panel-arena .seg button");
  const voteButtons = $$("#panel-arena .arena-votes button");
  const status = $("#arena-status");
  const error = $("#arena-error");

  const canChat = (id) => !!(store.byId.get(id) || {}).chat;
  const chatModels = () => store.models.filter((m) => m.chat).map((m) => m.id);

  /** Chat mode needs both models able to chat: the two chosen, or enough chat models for the random ones. */
  function chatPossible() {
    const chosen = picks.map((p) => p.value).filter((v) => v !== RANDOM);
    if (!chosen.every(canChat)) return false;
    const others = chatModels().filter((id) => !chosen.includes(id));
    return others.length >= 2 - chosen.length;
  }

  function setMode(mode) {
    state.mode = mode === "chat" && chatPossible() ? "chat" : "completion";
    for (const b of modeButtons) {
      const on = b.dataset.mode === state.mode;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));
    }
    const chat = $("#arena-mode-chat");
    chat.disabled = !chatPossible();
    chat.title = chat.disabled ? "Chat needs two models that can chat (fine-tuned with the chat tokens)" : "";
    $("#arena-system-field").hidden = state.mode !== "chat";
  }

  /** The `models` of the request: both chosen, none (the server draws a pair), or one chosen and one drawn here. */
  function pickModels() {
    const chosen = picks.map((p) => p.value);
    if (chosen.every((v) => v === RANDOM)) return undefined;
    const fixed = chosen.find((v) => v !== RANDOM);
    if (chosen.every((v) => v !== RANDOM)) return chosen;
    const pool = (state.mode === "chat" ? chatModels() : store.models.map((m) => m.id)).filter((id) => id !== fixed);
    if (!pool.length) return [fixed, fixed]; // the server explains why that cannot be
    return [fixed, pool[Math.floor(Math.random() * pool.length)]];
  }

  function clearSides() {
    for (const side of ["a", "b"]) {
      $(`#arena-answer-${side}`).textContent = "";
      $(`#arena-name-${side}`).textContent = "";
      $(`[data-testid="arena-side-${side}"]`).classList.remove("won");
    }
    for (const b of voteButtons) {
      b.disabled = true;
      b.classList.remove("chosen");
    }
  }

  async function battle() {
    if (state.busy) return;
    state.busy = true;
    state.battle = null;
    $("#arena-run").disabled = true;
    clearSides();
    showBanner(error, "");
    setStatus(status, "running", "both models are answering…");
    const body = {
      prompt: $("#arena-prompt").value,
      mode: state.mode,
      max_tokens: Math.max(1, Math.floor(Number($("#arena-max-tokens").value) || 1)),
      temperature: Number($("#arena-temperature").value),
    };
    const models = pickModels();
    if (models) body.models = models;
    const seed = $("#arena-seed").value.trim();
    if (seed !== "") body.seed = Math.trunc(Number(seed));
    const system = $("#arena-system").value.trim();
    if (state.mode === "chat" && system) body.system = system;
    try {
      // Streamed: each side's tokens as they come; the last event carries the battle id and the full answers.
      let b = null;
      await stream("api/arena/battle", { ...body, stream: true }, undefined, (event) => {
        if (event.side) $(`#arena-answer-${event.side}`).append(event.text);
        else if (event.battle_id) b = event;
      });
      if (!b) throw new ApiError("the battle ended before both answers were complete; run it again");
      state.battle = b;
      $("#arena-answer-a").textContent = b.answers.a;
      $("#arena-answer-b").textContent = b.answers.b;
      for (const v of voteButtons) v.disabled = false;
      setStatus(status, "idle", "vote: which is better?");
    } catch (e) {
      setStatus(status, "idle", "error");
      showBanner(error, e.message);
    } finally {
      state.busy = false;
      $("#arena-run").disabled = false;
    }
  }

  async function vote(button) {
    const b = state.battle;
    if (!b) return;
    for (const v of voteButtons) v.disabled = true;
    try {
      const r = await getJSON("api/arena/vote", { battle_id: b.battle_id, winner: button.dataset.winner });
      state.battle = null;
      button.classList.add("chosen");
      for (const side of ["a", "b"]) {
        $(`#arena-name-${side}`).textContent = r.models[side];
        if (r.winner === side) $(`[data-testid="arena-side-${side}"]`).classList.add("won");
      }
      setStatus(status, "idle", "vote recorded");
      await loadBoard();
    } catch (e) {
      showBanner(error, e.message);
      for (const v of voteButtons) v.disabled = !state.battle;
    }
  }

  function fmt(x) {
    return Math.round(x).toString();
  }

  async function loadBoard() {
    try {
      const j = await getJSON("api/arena/leaderboard");
      const rows = j.models.map((m, i) =>
        el(
          "tr",
          {},
          el("td", { class: "num", text: String(i + 1) }),
          el("td", { class: "model", text: m.model }),
          el("td", { class: "num", text: fmt(m.rating) }),
          el("td", { class: "num", text: `${fmt(m.ci_low)} – ${fmt(m.ci_high)}` }),
          el("td", { class: "num", text: String(m.votes) }),
          el("td", { class: "num", text: `${m.wins} / ${m.losses} / ${m.ties}` }),
          el("td", { class: "num", text: `${(m.win_rate * 100).toFixed(0)}%` }),
        ),
      );
      if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "No votes yet." })));
      $("#arena-board-rows").replaceChildren(...rows);
      $("#arena-summary").textContent = `${j.votes} vote${j.votes === 1 ? "" : "s"} · ${j.pairs} DPO pair${j.pairs === 1 ? "" : "s"}`;
      $("#arena-export").disabled = !j.pairs;
    } catch (e) {
      showBanner(error, e.message);
    }
  }

  /** Download the DPO JSONL. Through fetch, not a plain link, so the API key (if any) goes with it. */
  async function exportPairs() {
    const key = prefs.get("apiKey");
    try {
      const res = await fetch("api/arena/export", { headers: key ? { Authorization: `Bearer ${key}` } : {} });
      if (!res.ok) throw new ApiError(`export failed: ${res.status} ${res.statusText}`, res.status);
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: "arena-dpo.jsonl", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      showBanner(error, e.message);
    }
  }

  for (const b of modeButtons) b.addEventListener("click", () => setMode(b.dataset.mode));
  for (const p of picks) p.addEventListener("change", () => setMode(state.mode));
  for (const b of voteButtons) b.addEventListener("click", () => vote(b));
  $("#arena-run").addEventListener("click", battle);
  $("#arena-export").addEventListener("click", exportPairs);
  $("#arena-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      battle();
    }
  });

  return {
    /** The server's models changed: refill both pickers ("random" first, keeping a choice still offered). */
    onModels() {
      for (const p of picks) {
        const keep = p.value;
        const options = store.models.map((m) => el("option", { value: m.id, text: `${m.id} (${m.chat ? "chat" : "base"})` }));
        p.replaceChildren(el("option", { value: RANDOM, text: "Random" }), ...options);
        if (store.byId.has(keep)) p.value = keep;
      }
      setMode(state.mode);
      loadBoard();
    },
  };
}
