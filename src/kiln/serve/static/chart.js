// Line charts drawn as SVG by hand: the dashboard needs only lines, axes and a legend, which is less code than
// vendoring a charting library (and nothing to keep up to date). Each line keeps its points on the element
// (data-points, [[x, y], ...]) so tests and curious users can read exactly what is drawn; a "Values" table,
// built when opened, gives the same numbers to screen readers.

import { el } from "./util.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 460;
const H = 220;
const PAD = { left: 56, right: 12, top: 10, bottom: 30 };

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** A number short enough for an axis label. */
export function fmt(v, digits = 4) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(digits - 2);
  if (a >= 100) return v.toFixed(0);
  return String(Number(v.toPrecision(digits)));
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.05 || 1;
    lo -= pad;
    hi += pad;
  }
  return [lo, hi];
}

/** A <figure> with one line per series ({name, color, points: [[x, y], ...]}), sharing the axes. */
export function lineChart({ id, title, series, xLabel = "step" }) {
  const drawn = series.filter((s) => s.points.length);
  const fig = el("figure", { class: "chart", "data-metric": id, "data-testid": `chart-${id}` });
  fig.append(el("figcaption", { text: title }));
  if (!drawn.length) {
    fig.append(el("p", { class: "hint", text: "no values logged yet" }));
    return fig;
  }
  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);

  const summary = drawn.map((s) => `${s.name}: last ${fmt(s.points.at(-1)[1])}`).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title} by ${xLabel}. ${summary}` });
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    root.append(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: py(y), y2: py(y) }));
    const label = svg("text", { class: "tick", x: PAD.left - 6, y: py(y) + 4, "text-anchor": "end" });
    label.textContent = fmt(y, 3);
    root.append(label);
  }
  for (const [x, anchor] of [
    [x0, "start"],
    [x1, "end"],
  ]) {
    const label = svg("text", { class: "tick", x: px(x), y: H - PAD.bottom + 16, "text-anchor": anchor });
    label.textContent = fmt(x);
    root.append(label);
  }
  const axis = svg("text", { class: "tick", x: (PAD.left + W - PAD.right) / 2, y: H - 4, "text-anchor": "middle" });
  axis.textContent = xLabel;
  root.append(axis);
  for (const s of drawn) {
    const line = svg(s.points.length === 1 ? "circle" : "polyline", {
      class: "line",
      stroke: s.color,
      fill: s.points.length === 1 ? s.color : "none",
      "data-run": s.name,
      "data-points": JSON.stringify(s.points),
    });
    if (s.points.length === 1) {
      line.setAttribute("cx", px(s.points[0][0]));
      line.setAttribute("cy", py(s.points[0][1]));
      line.setAttribute("r", 3);
    } else line.setAttribute("points", s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" "));
    root.append(line);
  }
  fig.append(root);
  hoverReadout(root, drawn, { px, x0, x1, xLabel });

  const legend = el("ul", { class: "chart-legend" });
  for (const s of drawn) {
    const [x, y] = s.points.at(-1);
    legend.append(
      el(
        "li",
        {},
        el("span", { class: "dash-swatch", style: `background:${s.color}` }),
        `${s.name}: ${fmt(y)} at ${fmt(x)}`,
      ),
    );
  }
  fig.append(legend);

  const details = el("details", { class: "chart-values" }, el("summary", { text: "Values" }));
  details.addEventListener("toggle", () => {
    if (!details.open || details.querySelector("table")) return;
    const body = el("tbody");
    for (const s of drawn)
      for (const [x, y] of s.points)
        body.append(
          el("tr", {}, el("td", { text: s.name }), el("td", { text: String(x) }), el("td", { text: String(y) })),
        );
    details.append(
      el(
        "table",
        { class: "table" },
        el("caption", { text: `${title}: every value` }),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col", text: "run" }),
            el("th", { scope: "col", text: xLabel }),
            el("th", { scope: "col", text: title }),
          ),
        ),
        body,
      ),
    );
  });
  fig.append(details);
  return fig;
}

/** A vertical rule and each run's value at the x nearest the pointer, while the pointer is over the chart. */
function hoverReadout(root, drawn, { px, x0, x1, xLabel }) {
  const rule = svg("line", { class: "hover-rule", y1: PAD.top, y2: H - PAD.bottom, visibility: "hidden" });
  const label = svg("text", { class: "hover-text", y: PAD.top + 12, visibility: "hidden" });
  root.append(rule, label);
  root.addEventListener("mousemove", (e) => {
    const box = root.getBoundingClientRect();
    const sx = ((e.clientX - box.left) / box.width) * W; // pointer in viewBox units
    const x = x0 + ((sx - PAD.left) / (W - PAD.left - PAD.right)) * (x1 - x0);
    const near = (pts) => pts.reduce((best, p) => (Math.abs(p[0] - x) < Math.abs(best[0] - x) ? p : best));
    const hits = drawn.map((s) => [s.name, near(s.points)]);
    const at = hits[0][1][0];
    rule.setAttribute("x1", px(at));
    rule.setAttribute("x2", px(at));
    const right = px(at) > W / 2;
    label.setAttribute("x", px(at) + (right ? -6 : 6));
    label.setAttribute("text-anchor", right ? "end" : "start");
    label.textContent =
      `${xLabel} ${fmt(at)}: ` + hits.map(([name, p]) => (drawn.length > 1 ? `${name} ` : "") + fmt(p[1])).join(", ");
    rule.setAttribute("visibility", "visible");
    label.setAttribute("visibility", "visible");
  });
  root.addEventListener("mouseleave", () => {
    rule.setAttribute("visibility", "hidden");
    label.setAttribute("visibility", "hidden");
  });
}
