// The tabs as an ARIA tablist (WAI-ARIA Authoring Practices, "Tabs with automatic activation"), built from the
// page as it is: every [role=tab] button in the top bar with data-tab=NAME controls <section id="panel-NAME">.
// The roles, aria-controls/aria-labelledby and the roving tabindex are set here, so a tab added to the
// markup (a button and a panel) gets them without more code. Arrow keys, Home and End move between tabs.

import { $, $$ } from "./util.js";

/** The tab buttons, in page order. */
export const tabButtons = () => $$(".tabs [role=tab]");

/** Wire the tablist; `select(name)` shows a tab (and puts its name in the address). */
export function initTablist(select) {
  const list = $(".tabs");
  list.setAttribute("aria-label", "Playground tools");
  for (const tab of tabButtons()) {
    const panel = $(`#panel-${tab.dataset.tab}`);
    if (!tab.id) tab.id = `tab-${tab.dataset.tab}`;
    tab.setAttribute("aria-controls", panel ? panel.id : "");
    if (panel) {
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
    }
    tab.addEventListener("click", () => select(tab.dataset.tab));
  }
  list.addEventListener("keydown", (e) => {
    const tabs = tabButtons();
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1 + tabs.length, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = tabs[to % tabs.length];
    next.focus();
    select(next.dataset.tab);
  });
}

/** Mark `name` as the selected tab (aria-selected, the one Tab stop) and show only its panel. */
export function markSelected(name) {
  for (const tab of tabButtons()) {
    const on = tab.dataset.tab === name;
    tab.classList.toggle("on", on);
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    const panel = $(`#panel-${tab.dataset.tab}`);
    if (panel) panel.hidden = !on;
  }
}
