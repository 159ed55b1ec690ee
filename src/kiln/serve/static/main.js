// kiln playground: ES modules, no build step, no network access beyond this server.
// This module starts the page: tabs, the API key box, the models list; each tab lives in its own module
// (generate.js with completion.js and chat.js, explainer.js, tokenizers.js, compare.js).

import { getJSON } from "./api.js";
import { initCompare } from "./compare.js";
import { initDashboard } from "./dashboard.js";
import { initData } from "./data.js";
import { initExplainer } from "./explainer.js";
import { initGenerate } from "./generate.js";
import { prefs, store } from "./state.js";
import { initTokenizerTab } from "./tokenizers.js";
import { initTooltip } from "./tokens.js";
import { $, $$, setStatus, showBanner } from "./util.js";

const TABS = ["generate", "explain", "tokenize", "compare", "dashboard", "data"];

function start() {
  const tooltip = initTooltip();
  const generate = initGenerate();
  const explainer = initExplainer({ onUseSettings: (settings) => generate.useSettings(settings) });
  const tokenizers = initTokenizerTab();
  const compare = initCompare();
  const dashboard = initDashboard();
  const data = initData();

  /** Ask the server for its models and hand them to every tab; false if it refused or cannot be reached. */
  async function loadModels() {
    const status = $("#server-status");
    try {
      const j = await getJSON("v1/models");
      store.setModels(j.data || []);
      const n = store.models.length;
      setStatus(status, "ok", `${n} model${n === 1 ? "" : "s"}`);
      showBanner($("#global-error"), n ? "" : "The server offers no models (see kiln serve --models).");
      generate.onModels();
      compare.onModels();
      explainer.onModels();
      return true;
    } catch (e) {
      setStatus(status, "error", e.status === 401 ? "API key needed" : "offline");
      showBanner($("#global-error"), e.message);
      return false;
    }
  }

  function showTab() {
    const name = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "generate";
    for (const t of TABS) {
      $(`#panel-${t}`).hidden = t !== name;
      const tab = $(`#tab-${t}`);
      tab.classList.toggle("on", t === name);
      tab.setAttribute("aria-selected", String(t === name));
    }
    tooltip.hide();
    if (name === "explain") explainer.fetch();
    if (name === "dashboard") dashboard.show();
    else dashboard.hide(); // stops polling the runs' metrics
    if (name === "data") data.show();
  }

  const keyInput = $("#api-key");
  keyInput.value = prefs.get("apiKey", "");
  keyInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") keyInput.blur(); // commits it (a change event)
  });
  keyInput.addEventListener("change", async () => {
    prefs.set("apiKey", keyInput.value.trim());
    if (await loadModels()) tokenizers.load();
  });

  for (const b of $$(".tab")) b.addEventListener("click", () => (location.hash = "#" + b.dataset.tab));
  window.addEventListener("hashchange", showTab);
  showTab();
  return { loadModels, tokenizers };
}

const page = start();
if (await page.loadModels()) await page.tokenizers.load();
document.body.dataset.ready = "true";
