// What the tabs share: the server's models (one store, filled at start-up and when the API key changes) and
// the settings remembered in this browser. Each tab keeps its own state inside its module.

import { el } from "./util.js";

/** The models the server offers: its /v1/models cards, in order and by id. */
export const store = {
  models: [],
  byId: new Map(),
  setModels(list) {
    this.models = list;
    this.byId = new Map(list.map((m) => [m.id, m]));
  },
};

/** Settings kept in localStorage under "kiln.<key>"; nothing breaks where storage is unavailable. */
export const prefs = {
  get(key, fallback = null) {
    try {
      const v = localStorage.getItem("kiln." + key);
      return v === null ? fallback : v;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === "") localStorage.removeItem("kiln." + key);
      else localStorage.setItem("kiln." + key, value);
    } catch {
      /* private mode: settings are simply not remembered */
    }
  },
};

function modelLabel(m) {
  const kind = m.chat ? "chat" : "base";
  const ctx = m.context_length ? ` · ctx ${m.context_length}` : "";
  return `${m.id} (${kind}${ctx})`;
}

/** Fill a model <select> from the store, keeping its choice (or `preferred`) when still offered. */
export function fillModelSelect(select, preferred) {
  const keep = select.value || preferred;
  select.replaceChildren(
    ...store.models.map((m) => el("option", { value: m.id, text: modelLabel(m), "data-chat": String(!!m.chat) })),
  );
  if (keep && store.byId.has(keep)) select.value = keep;
}
