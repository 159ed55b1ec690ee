// The Generate tab's sampling controls as values: read them, write them, remember them, and turn them into
// a request's sampling fields. Presets, the session's history entries, shared links and "View code" all
// go through these functions, so a setting means the same thing wherever it is stored.

import { prefs } from "./state.js";
import { $, syncSliderOutputs } from "./util.js";

/** element id -> default value of each sampling control. */
export const DEFAULTS = {
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

/** The controls' values, by element id (strings, as the inputs hold them). */
export function readControls() {
  const values = {};
  for (const id of Object.keys(DEFAULTS)) values[id] = $("#" + id).value;
  return values;
}

/** Set the controls to `values` (by element id; ids left out keep their value) and remember them. */
export function writeControls(values) {
  for (const [id, v] of Object.entries(values || {})) {
    const node = id in DEFAULTS ? $("#" + id) : null;
    if (node && v !== undefined && v !== null) node.value = String(v);
  }
  syncSliderOutputs();
  saveSampling();
}

/** The sampling fields of a request, from control values (the current controls by default). */
export function samplingFields(values = readControls()) {
  const num = (id) => Number(values[id] ?? DEFAULTS[id]);
  const fields = {
    max_tokens: Math.max(1, Math.floor(num("max-tokens") || 1)),
    temperature: num("temperature"),
    top_p: num("top-p"),
    top_k: Math.floor(num("top-k")),
    min_p: num("min-p"),
    repetition_penalty: num("repetition-penalty"),
  };
  const seed = String(values.seed ?? "").trim();
  if (seed !== "") fields.seed = Math.trunc(Number(seed));
  const stops = String(values["stop-seqs"] ?? "")
    .split("\n")
    .filter((s) => s !== "")
    .map(unescapeStop)
    .slice(0, 16);
  if (stops.length) fields.stop = stops;
  return fields;
}

export function saveSampling() {
  prefs.set("sampling", JSON.stringify(readControls()));
}

/** The remembered values (or the defaults) into the controls. */
export function loadSampling() {
  let values = {};
  try {
    values = JSON.parse(prefs.get("sampling", "{}")) || {};
  } catch {
    values = {};
  }
  for (const [id, v] of Object.entries({ ...DEFAULTS, ...values })) {
    const node = id in DEFAULTS ? $("#" + id) : null;
    if (node && v !== undefined) node.value = v;
  }
  syncSliderOutputs();
}
