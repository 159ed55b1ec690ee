// Small DOM and formatting helpers shared by every tab. No state lives here.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** A new element: attributes (class, text, style, on<event> handlers, others as attributes) and children. */
export function el(tag, attrs = {}, ...children) {
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

/** A token's text with its invisible characters made visible. */
export function visible(s) {
  if (s === "") return "∅";
  return s.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\r/g, "␍").replace(/\t/g, "⇥");
}

/** A probability as a percentage with as many digits as it needs. */
export function pct(p) {
  if (p >= 0.995) return (p * 100).toFixed(0) + "%";
  if (p >= 0.1) return (p * 100).toFixed(1) + "%";
  if (p >= 0.001) return (p * 100).toFixed(2) + "%";
  if (p > 0) return "<0.1%";
  return "0%";
}

/** Probability -> hue: red (0.1% or less) through amber to green (100%), on a log scale. */
export function probHue(p) {
  const t = Math.max(0, Math.min(1, 1 + Math.log10(Math.max(p, 1e-9)) / 3));
  return Math.round(t * 130);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A status pill: `state` drives its colour (and the tests' waits), `text` what it says. */
export function setStatus(node, state, text) {
  node.dataset.state = state;
  node.textContent = text || state;
}

/** Show `message` in a banner, or hide the banner when there is none. */
export function showBanner(node, message) {
  if (!message) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = message;
}

/** Write each range slider's value into its <output>, with "off" where the setting does nothing. */
export function syncSliderOutputs(root = document) {
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

/** Put `text` on the clipboard; false where the browser refuses (no permission, not a secure context). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // http:// on another host is not a secure context: fall back to the older selection-based copy
    const area = el("textarea", { style: "position:fixed;opacity:0", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
