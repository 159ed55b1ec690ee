// kiln playground: ES modules, no build step, no network access beyond this server.
// This module starts the page: tabs, the API key box, the models list; each tab lives in its own module
// (generate.js with completion.js and chat.js, explainer.js, tokenizers.js, compare.js).

import { getJSON } from "./api.js";
import { initArena } from "./arena.js";
import { initCompare } from "./compare.js";
import { initDashboard } from "./dashboard.js";
import { initData } from "./data.js";
import { initExplainer } from "./explainer.js";
import { initGenerate } from "./generate.js";
import { prefs, store } from "./state.js";
import { initTablist, markSelected, tabButtons } from "./tablist.js";
import { initTokenizerTab } from "./tokenizers.js";
import { initTooltip } from "./tokens.js";
import { $, setStatus, showBanner } from "./util.js";

const TABS = ["generate", "explain", "tokenize", "compare", "arena", "dashboard", "data"];

function start() {
  const tooltip = initTooltip();
  const generate = initGenerate();
  const explainer = initExplainer({ onUseSettings: (settings) => generate.useSettings(settings) });
  const tokenizers = initTokenizerTab();
  const compare = initCompare();
  const arena = initArena();
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
      arena.onModels();
      return true;
    } catch (e) {
      setStatus(status, "error", e.status === 401 ? "API key needed" : "offline");
      showBanner($("#global-error"), e.message);
      return false;
    }
  }

  function showTab() {
    // the tabs in the markup count too (tablist.js), so a tab whose module is not in TABS still opens
    const known = new Set([...TABS, ...tabButtons().map((b) => b.dataset.tab)]);
    const name = known.has(location.hash.slice(1)) ? location.hash.slice(1) : "generate";
    markSelected(name);
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

  initTablist((name) => {
    // pushState, not location.hash: a fragment navigation would scroll to (and take the keyboard's place to)
    // an element with that id, such as the Generate button; the Back button still walks the tabs (hashchange)
    if (location.hash !== "#" + name) history.pushState(null, "", "#" + name);
    showTab();
  });
  window.addEventListener("hashchange", showTab);
  showTab();
  return { loadModels, tokenizers };
}

const page = start();
if (await page.loadModels()) await page.tokenizers.load();
document.body.dataset.ready = "true";
