// "View code": the request Generate would send now, as curl, Python (the `openai` client) and JavaScript
// (fetch), ready to copy. The snippets ask for the whole answer at once (no stream) and print its text; with
// a seed they print exactly what the page shows for the same settings.

/** A JSON value as a Python literal (JSON's strings and numbers are Python's too; true/false/null are not). */
function py(v, indent = "") {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (Array.isArray(v)) return `[${v.map((x) => py(x, indent)).join(", ")}]`;
  if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${py(x, indent)}`).join(", ")}}`;
  return JSON.stringify(v);
}

// the request fields the openai client takes as keyword arguments; the others (kiln's and vLLM's sampling
// extensions) go in extra_body
const OPENAI_ARGS = new Set(["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "seed", "stop"]);

/**
 * The three snippets for a request: `base` is the server's URL (e.g. http://127.0.0.1:8000), `kind`
 * "completion" or "chat", `body` the JSON body, `hasKey` whether the server wants an API key (read from
 * $KILN_API_KEY, never written into the snippet).
 */
export function snippets({ base, kind, body, hasKey }) {
  const path = kind === "chat" ? "/v1/chat/completions" : "/v1/completions";
  const url = base + path;
  const json = JSON.stringify(body, null, 2);

  const curl = [
    `curl ${url} \\`,
    `  -H "Content-Type: application/json" \\`,
    ...(hasKey ? [`  -H "Authorization: Bearer $KILN_API_KEY" \\`] : []),
    `  -d '${json.replaceAll("'", "'\\''")}'`,
  ].join("\n");

  const args = Object.entries(body).filter(([k]) => OPENAI_ARGS.has(k));
  const extra = Object.fromEntries(Object.entries(body).filter(([k]) => !OPENAI_ARGS.has(k)));
  const call = kind === "chat" ? "client.chat.completions.create" : "client.completions.create";
  const text = kind === "chat" ? "response.choices[0].message.content" : "response.choices[0].text";
  const python = [
    ...(hasKey ? ["import os", ""] : []),
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(base + "/v1")}, api_key=${hasKey ? 'os.environ["KILN_API_KEY"]' : '"none"'})`,
    `response = ${call}(`,
    ...args.map(([k, v]) => `    ${k}=${py(v)},`),
    ...(Object.keys(extra).length ? [`    extra_body=${py(extra)},`] : []),
    ")",
    `print(${text})`,
  ].join("\n");

  const headers = hasKey
    ? `{\n    "Content-Type": "application/json",\n    Authorization: "Bearer " + KILN_API_KEY,\n  }`
    : `{ "Content-Type": "application/json" }`;
  const javascript = [
    ...(hasKey ? ['const KILN_API_KEY = "…"; // the key the server was started with', ""] : []),
    `const response = await fetch(${JSON.stringify(url)}, {`,
    `  method: "POST",`,
    `  headers: ${headers},`,
    `  body: JSON.stringify(${json.replaceAll("\n", "\n  ")}),`,
    "});",
    "const data = await response.json();",
    `console.log(data.choices[0].${kind === "chat" ? "message.content" : "text"});`,
  ].join("\n");

  return { curl, python, javascript };
}
