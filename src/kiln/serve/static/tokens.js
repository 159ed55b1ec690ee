// The token view: generated tokens as spans coloured by probability, and the tooltip that lists the
// alternatives the model considered (click one to branch, where the span's owner can branch).

import { $, el, pct, probColour, visible } from "./util.js";

// span -> {tok, owner}; owner = {branch(index, alt)?, noBranch: "why this view cannot branch"}
const spanData = new WeakMap();

/** A span for one generated token, coloured by its probability; its data drives the tooltip. */
export function tokenSpan(tok, index, owner) {
  const span = el("span", { class: "tok", "data-testid": "token", "data-index": String(index) });
  span.textContent = tok.text;
  if (!tok.text) span.classList.add("empty");
  if (tok.forced) span.classList.add("forced");
  if (tok.logprob !== null && tok.logprob !== undefined) {
    const p = Math.exp(tok.logprob);
    span.dataset.prob = p.toFixed(6);
    span.style.setProperty("--tok-bg", probColour(p));
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
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") hide();
  });
  return { hide };
}
