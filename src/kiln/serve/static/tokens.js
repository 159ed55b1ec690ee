// The token view: generated tokens as spans coloured by probability, and the tooltip that lists the
// alternatives the model considered (click one to branch, where the span's owner can branch).
// The keyboard does the same as the mouse: Tab reaches a token view, the arrow keys (and Home/End) move between
// its tokens, Enter opens the alternatives (arrows move in them, Enter branches, Escape goes back to the token),
// and "b" branches at once with the most likely alternative that the model did not pick.

import { $, el, pct, probHue, visible } from "./util.js";

// span -> {tok, owner}; owner = {branch(index, alt)?, noBranch: "why this view cannot branch"}
const spanData = new WeakMap();

/** A span for one generated token, coloured by its probability; its data drives the tooltip. */
export function tokenSpan(tok, index, owner) {
  // roving tabindex: one token per view is a Tab stop (the first, until another gets focus)
  const span = el("span", { class: "tok", "data-testid": "token", "data-index": String(index), tabindex: index === 0 ? "0" : "-1" });
  span.textContent = tok.text;
  if (!tok.text) span.classList.add("empty");
  if (tok.forced) span.classList.add("forced");
  if (tok.logprob !== null && tok.logprob !== undefined) {
    const p = Math.exp(tok.logprob);
    span.dataset.prob = p.toFixed(6);
    span.style.setProperty("--tok-hue", String(probHue(p))); // style.css picks the strength per colour scheme
  }
  spanData.set(span, { tok, owner });
  return span;
}

function tokenSpanOf(target) {
  const span = target.closest && target.closest(".tok");
  return span && spanData.has(span) ? span : null;
}

/** The tooltip of every token span on the page (one #tok-tip node); returns {hide}. */
export function initTooltip() {
  const node = $("#tok-tip");
  let hideTimer = null;
  let anchor = null;

  const hide = () => {
    clearTimeout(hideTimer);
    node.hidden = true;
    if (anchor) anchor.classList.remove("hover");
    anchor = null;
  };
  const hideSoon = () => {
    clearTimeout(hideTimer);
    hideTimer = setTimeout(hide, 300);
  };

  const alternatives = (tok, owner, index) => {
    const alts = tok.top || [];
    if (!alts.length) {
      return tok.forced ? [] : [el("div", { class: "tip-note", text: "No alternatives were requested (alternatives per token = 0)." })];
    }
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
        hide();
        owner.branch(index, alt);
      });
      list.append(row);
    }
    const note = canBranch ? "Click an alternative to branch from this point." : owner.noBranch || "";
    return [list, el("div", { class: "tip-note", text: note })];
  };

  const place = (span) => {
    const r = span.getBoundingClientRect();
    const w = node.offsetWidth;
    const h = node.offsetHeight;
    const left = Math.min(window.innerWidth - w - 8, Math.max(8, r.left));
    let top = r.bottom + 6;
    if (top + h > window.innerHeight - 8) top = Math.max(8, r.top - h - 6);
    node.style.left = `${left}px`;
    node.style.top = `${top}px`;
  };

  const show = (span) => {
    clearTimeout(hideTimer);
    if (anchor === span && !node.hidden) return;
    if (anchor) anchor.classList.remove("hover");
    anchor = span;
    span.classList.add("hover");
    const { tok, owner = {} } = spanData.get(span);
    const head = el(
      "div",
      { class: "tip-head" },
      el("code", { class: "tip-token", text: visible(tok.token) }),
      el("span", { class: "tip-prob", text: tok.logprob === null ? "" : pct(Math.exp(tok.logprob)) }),
    );
    if (tok.id !== null && tok.id !== undefined) head.append(el("span", { class: "tip-id", text: `id ${tok.id}` }));
    const parts = [head];
    if (tok.forced) parts.push(el("div", { class: "tip-note", text: "Chosen by you: the branch starts here." }));
    parts.push(...alternatives(tok, owner || {}, Number(span.dataset.index)));
    node.replaceChildren(...parts);
    node.hidden = false;
    place(span);
  };

  node.addEventListener("mouseenter", () => clearTimeout(hideTimer));
  node.addEventListener("mouseleave", hideSoon);
  document.addEventListener("mouseover", (e) => {
    const span = tokenSpanOf(e.target);
    if (span) show(span);
  });
  document.addEventListener("mouseout", (e) => {
    if (tokenSpanOf(e.target)) hideSoon();
  });
  const altButtons = () => Array.from(node.querySelectorAll("[data-testid=alternative]:not(:disabled)"));

  /** Open the alternatives of a focused token and put the keyboard on the first one the model did not pick. */
  const openFromKeyboard = (span) => {
    show(span);
    const buttons = altButtons();
    const first = buttons.find((b) => !b.classList.contains("chosen")) || buttons[0];
    if (first) first.focus();
  };

  /** "b": branch from this token with the most likely alternative other than the one the model picked. */
  const branchFromKeyboard = (span) => {
    const { tok, owner = {} } = spanData.get(span);
    if (typeof owner.branch !== "function") return;
    const alt = (tok.top || []).filter((a) => a.id !== null && a.id !== tok.id).sort((a, b) => b.logprob - a.logprob)[0];
    if (!alt) return;
    hide();
    owner.branch(Number(span.dataset.index), alt);
  };

  const moveTo = (from, to) => {
    if (!to) return;
    from.tabIndex = -1;
    to.tabIndex = 0;
    to.focus();
    if (!node.hidden) hide();
  };

  document.addEventListener("focusin", (e) => {
    const span = tokenSpanOf(e.target);
    if (!span) return;
    for (const other of span.parentNode.querySelectorAll(".tok[tabindex='0']")) if (other !== span) other.tabIndex = -1;
    span.tabIndex = 0;
  });
  document.addEventListener("keydown", (e) => {
    const span = tokenSpanOf(e.target);
    if (span && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const siblings = Array.from(span.parentNode.querySelectorAll(":scope > .tok"));
      const i = siblings.indexOf(span);
      const go = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: siblings.length - 1 };
      if (e.key in go) {
        e.preventDefault();
        moveTo(span, siblings[go[e.key]]);
      } else if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        openFromKeyboard(span);
      } else if (e.key === "b" || e.key === "B") {
        e.preventDefault();
        branchFromKeyboard(span);
      }
    }
    if (node.contains(e.target) && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      const buttons = altButtons();
      const i = buttons.indexOf(e.target);
      const next = buttons[(i + (e.key === "ArrowDown" ? 1 : buttons.length - 1)) % buttons.length];
      if (next) next.focus();
    }
    if (e.key === "Escape") {
      const back = node.contains(e.target) ? anchor : null;
      hide();
      if (back && back.isConnected) back.focus();
    }
  });
  return { hide };
}
