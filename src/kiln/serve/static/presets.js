// Saved sampling presets: named sets of the Generate tab's sampling controls, kept in this browser
// (localStorage "kiln.presets" as {name: {element id: value}}). Save, apply and delete.

import { readControls, writeControls } from "./controls.js";
import { prefs } from "./state.js";
import { $, el, showBanner } from "./util.js";

function readPresets() {
  try {
    const p = JSON.parse(prefs.get("presets", "{}"));
    return p && typeof p === "object" && !Array.isArray(p) ? p : {};
  } catch {
    return {};
  }
}

function writePresets(presets) {
  prefs.set("presets", Object.keys(presets).length ? JSON.stringify(presets) : null);
}

/** Wire the presets box under the sampling controls. */
export function initPresets() {
  const select = $("#preset-select");
  const name = $("#preset-name");
  const note = $("#preset-note");

  function render(chosen = select.value) {
    const names = Object.keys(readPresets()).sort();
    select.replaceChildren(
      ...(names.length ? names.map((n) => el("option", { value: n, text: n })) : [el("option", { value: "", text: "(none saved)" })]),
    );
    if (names.includes(chosen)) select.value = chosen;
    select.disabled = !names.length;
    $("#preset-apply").disabled = !names.length;
    $("#preset-delete").disabled = !names.length;
  }

  $("#preset-save").addEventListener("click", () => {
    const n = name.value.trim();
    if (!n) return showBanner(note, "Give the preset a name first.");
    writePresets({ ...readPresets(), [n]: readControls() });
    name.value = "";
    render(n);
    showBanner(note, `Saved “${n}”.`);
  });
  name.addEventListener("keydown", (e) => {
    if (e.key === "Enter") $("#preset-save").click();
  });
  $("#preset-apply").addEventListener("click", () => {
    const p = readPresets()[select.value];
    if (!p) return;
    writeControls(p);
    showBanner(note, `Applied “${select.value}”.`);
  });
  $("#preset-delete").addEventListener("click", () => {
    const presets = readPresets();
    const n = select.value;
    if (!(n in presets)) return;
    delete presets[n];
    writePresets(presets);
    render();
    showBanner(note, `Deleted “${n}”.`);
  });
  render();
}
