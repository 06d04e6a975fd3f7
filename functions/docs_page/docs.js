// The API reference: reads the OpenAPI document and lays it out; every string from it reaches the page
// through textContent or an attribute, never as markup.
(() => {
  const KEY = "tasklane.functionKey"; // the dashboard's too: one key per tab for the app's pages
  const METHODS = ["get", "post", "put", "patch", "delete"];
  const TRIED = ["get", "post"]; // sent from the page; the others are shown as curl commands only
  const MAX_SHOWN = 100000;

  // The key may come once as ?code= and then lives in this tab's sessionStorage, off the URL and history.
  const here = new URL(location.href);
  if (here.searchParams.has("code")) {
    sessionStorage.setItem(KEY, here.searchParams.get("code") || "");
    here.searchParams.delete("code");
    history.replaceState(history.state, "", here.pathname + here.search + here.hash);
  }
  // Calls go relative to this page (…/docs → …/openapi.json), so any route prefix and front end work.
  const apiBase = new URL(".", location.href);
  const refName = (ref) => ref.split("/").pop();
  const anchor = (name) => `schema-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  let doc = null;

  function banner(message) {
    const node = byId("banner");
    node.hidden = !message;
    node.textContent = message || "";
  }

  async function load() {
    banner(null);
    byId("key").value = sessionStorage.getItem(KEY) || "";
    let response;
    try {
      response = await fetch(new URL("openapi.json", apiBase), {
        cache: "no-store",
        headers: { "x-functions-key": sessionStorage.getItem(KEY) || "", accept: "application/json" },
      });
    } catch (error) {
      banner(`Cannot reach the API: ${error.message}`);
      return;
    }
    if (response.status === 401) {
      banner("The API document needs the function key: enter it above (it stays in this tab only).");
      byId("key").focus();
      return;
    }
    if (!response.ok) {
      banner(`The API document could not be read: HTTP ${response.status}`);
      return;
    }
    doc = await response.json();
    render();
  }

  function render() {
    const info = doc.info || {};
    byId("title").textContent = `${info.title || "API"} API`;
    byId("version").textContent = info.version ? `v${info.version} · OpenAPI ${doc.openapi}` : "";
    byId("description").textContent = info.description || "";
    byId("server").textContent = (doc.servers && doc.servers[0] && doc.servers[0].url) || apiBase.href;
    const toc = [];
    const operations = [];
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        if (!item[method]) continue;
        const op = item[method];
        const id = `op-${op.operationId || `${method}-${path}`.replace(/[^A-Za-z0-9_-]/g, "_")}`;
        toc.push(el("li", {}, el("a", { href: `#${id}` }, el("span", { class: `method ${method}`, text: method.toUpperCase() }), el("span", { class: "mono", text: path }))));
        operations.push(operation(id, method, path, op, item.parameters || []));
      }
    }
    byId("toc").replaceChildren(...toc);
    byId("operations").replaceChildren(...operations);
    const schemas = (doc.components && doc.components.schemas) || {};
    byId("schemas").replaceChildren(
      ...Object.entries(schemas).map(([name, schema]) => el("article", { id: anchor(name) }, el("h3", { text: name }), schemaNode(schema, 0))),
    );
    byId("schemas-section").hidden = Object.keys(schemas).length === 0;
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
    }
  }

  function operation(id, method, path, op, shared) {
    const anonymous = Array.isArray(op.security) && op.security.length === 0;
    const parameters = [...shared, ...(op.parameters || [])];
    const body = el("div", { class: "body" });
    if (parameters.length) {
      body.append(el("h4", { text: "Parameters" }), el("table", {},
        el("thead", {}, el("tr", {}, el("th", { text: "name" }), el("th", { text: "in" }), el("th", { text: "schema" }))),
        el("tbody", {}, parameters.map((p) => el("tr", {},
          el("td", {}, el("span", { class: "mono", text: p.name }), p.required ? el("span", { class: "req", text: " required" }) : null),
          el("td", { class: "muted", text: p.in }),
          el("td", {}, schemaNode(p.schema || {}, 1), p.description ? el("div", { class: "muted", text: p.description }) : null),
        )))));
    }
    const requestBody = op.requestBody;
    if (requestBody) {
      body.append(el("h4", { text: `Request body${requestBody.required ? " (required)" : ""}` }));
      for (const [media, content] of Object.entries(requestBody.content || {})) {
        body.append(el("div", { class: "media", text: media }), schemaNode(content.schema || {}, 0));
      }
    }
    body.append(el("h4", { text: "Responses" }), el("table", { class: "responses" },
      el("thead", {}, el("tr", {}, el("th", { text: "status" }), el("th", { text: "description" }), el("th", { text: "body" }))),
      el("tbody", {}, Object.entries(op.responses || {}).map(([status, answer]) => el("tr", { "data-status": status },
        el("td", { class: `status s${status[0]}`, text: status }),
        el("td", {}, el("span", { text: answer.description || "" }),
          answer.headers ? el("div", { class: "muted", text: `headers: ${Object.keys(answer.headers).join(", ")}` }) : null),
        el("td", {}, responseBody(answer)),
      )))));
    body.append(tryOut(method, path, op, parameters, anonymous));
    return el("details", { class: "op", id, "data-method": method.toUpperCase(), "data-path": path },
      el("summary", {},
        el("span", { class: `method ${method}`, text: method.toUpperCase() }),
        el("span", { class: "path mono", text: path }),
        el("span", { class: "summary", text: op.summary || "" }),
        el("span", { class: "lock", text: anonymous ? "anonymous" : "key" })),
      body);
  }

  function responseBody(answer) {
    const content = Object.entries(answer.content || {});
    if (!content.length) return el("span", { class: "muted", text: "no body" });
    return content.map(([media, value]) => el("div", {}, el("div", { class: "media", text: media }), value.schema ? schemaNode(value.schema, 0) : el("span", { class: "muted", text: "any" })));
  }

  // ---- Schemas as nested lists: type, format, bounds, required properties, links to components
  function typeText(schema) {
    if (schema.$ref) return null;
    const parts = [];
    if ("const" in schema) parts.push(JSON.stringify(schema.const));
    else if (schema.enum) parts.push(schema.enum.map((v) => JSON.stringify(v)).join(" | "));
    else if (schema.type) parts.push([].concat(schema.type).join(" | "));
    else if (!schema.oneOf && !schema.anyOf && !schema.properties) parts.push("any");
    if (schema.format) parts.push(`(${schema.format})`);
    const bounds = [];
    for (const [key, label] of [["minimum", "≥"], ["maximum", "≤"], ["minItems", "items ≥"], ["maxItems", "items ≤"], ["maxLength", "length ≤"], ["minLength", "length ≥"]]) {
      if (schema[key] !== undefined) bounds.push(`${label} ${schema[key]}`);
    }
    if (schema.default !== undefined) bounds.push(`default ${JSON.stringify(schema.default)}`);
    if (bounds.length) parts.push(`[${bounds.join(", ")}]`);
    return parts.join(" ");
  }
  function schemaNode(schema, depth) {
    if (schema.$ref) {
      const name = refName(schema.$ref);
      return el("a", { class: "type", href: `#${anchor(name)}`, text: name });
    }
    const text = typeText(schema);
    const head = el("span", {}, text ? el("span", { class: "type", text }) : null, schema.description ? el("span", { class: "desc", text: schema.description }) : null);
    if (depth > 6) return head;
    const items = [];
    const required = new Set(schema.required || []);
    for (const [name, property] of Object.entries(schema.properties || {})) {
      items.push(el("li", {}, el("span", { class: "name", text: name }), required.has(name) ? el("span", { class: "req", text: "required" }) : null, " ", schemaNode(property, depth + 1)));
    }
    if (schema.items) items.push(el("li", {}, el("span", { class: "name", text: "items" }), " ", schemaNode(schema.items, depth + 1)));
    if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      items.push(el("li", {}, el("span", { class: "name", text: "{any name}" }), " ", schemaNode(schema.additionalProperties, depth + 1)));
    }
    for (const key of ["oneOf", "anyOf", "allOf"]) {
      if (!schema[key]) continue;
      items.push(el("li", {}, el("span", { class: "desc", text: key === "allOf" ? "all of:" : "one of:" }),
        el("ul", { class: "schema" }, schema[key].map((variant) => el("li", {}, variant.title ? el("span", { class: "name", text: `${variant.title}: ` }) : null, schemaNode(variant, depth + 1))))));
    }
    return items.length ? el("div", {}, head, el("ul", { class: "schema" }, items)) : head;
  }

  // ---- A request body to start from: what the schema requires, with its first choices
  function example(schema, depth = 0) {
    if (!schema || depth > 6) return null;
    if (schema.$ref) return example(doc.components.schemas[refName(schema.$ref)], depth + 1);
    if ("const" in schema) return schema.const;
    if (schema.enum) return schema.enum[0];
    if (schema.default !== undefined) return schema.default;
    if (schema.oneOf || schema.anyOf) return example((schema.oneOf || schema.anyOf)[0], depth + 1);
    const type = [].concat(schema.type || (schema.properties ? "object" : "null"))[0];
    if (type === "object") {
      const found = {};
      const required = new Set(schema.required || []);
      for (const [name, property] of Object.entries(schema.properties || {})) {
        if (required.has(name)) found[name] = example(property, depth + 1);
      }
      return found;
    }
    if (type === "array") return [example(schema.items, depth + 1)];
    if (type === "string") return schema.format === "date-time" ? new Date().toISOString() : "";
    if (type === "integer" || type === "number") return schema.minimum ?? 0;
    if (type === "boolean") return false;
    return null;
  }

  // ---- Try it
  function tryOut(method, path, op, parameters, anonymous) {
    const inputs = new Map();
    const fields = el("div", { class: "fields" });
    for (const p of parameters) {
      if (!["path", "query", "header"].includes(p.in)) continue;
      const input = el("input", { type: "text", name: p.name, "aria-label": `${p.name} (${p.in})`, placeholder: p.required ? "required" : "optional", spellcheck: "false" });
      inputs.set(p, input);
      fields.append(el("label", { class: "mono", text: `${p.name} · ${p.in}` }), input);
    }
    let bodyInput = null;
    const json = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (json) {
      bodyInput = el("textarea", { "aria-label": "Request body", spellcheck: "false" });
      bodyInput.value = JSON.stringify(example(json.schema), null, 2);
    }
    const outcome = el("div", { class: "outcome", "aria-live": "polite" });
    const curl = el("pre", { class: "curl", hidden: true });
    const request = () => {
      let target = path;
      const query = new URLSearchParams();
      const headers = {};
      for (const [p, input] of inputs) {
        const value = input.value.trim();
        if (p.in === "path") target = target.replace(`{${p.name}}`, encodeURIComponent(value));
        else if (value && p.in === "query") query.set(p.name, value);
        else if (value && p.in === "header") headers[p.name] = value;
      }
      const url = new URL(`.${target}`, apiBase);
      url.search = query.toString();
      if (bodyInput) headers["content-type"] = "application/json";
      return { url, headers };
    };
    const showCurl = () => {
      const { url, headers } = request();
      const lines = [`curl -X ${method.toUpperCase()} '${url.href}'`];
      if (!anonymous) lines.push(`  -H "x-functions-key: $KEY"`);
      for (const [name, value] of Object.entries(headers)) lines.push(`  -H '${name}: ${value}'`);
      if (bodyInput) lines.push(`  -d '${bodyInput.value.replace(/\s*\n\s*/g, " ")}'`);
      curl.textContent = lines.join(" \\\n");
      curl.hidden = false;
    };
    const send = async (button) => {
      const { url, headers } = request();
      if (!anonymous) headers["x-functions-key"] = sessionStorage.getItem(KEY) || "";
      headers.accept = "application/json, text/plain, */*";
      button.disabled = true;
      const started = performance.now();
      try {
        const response = await fetch(url, { method: method.toUpperCase(), headers, cache: "no-store", body: bodyInput ? bodyInput.value : undefined });
        const text = await response.text();
        showOutcome(outcome, op, response, text, performance.now() - started);
      } catch (error) {
        outcome.replaceChildren(el("div", { class: "status s5", text: `The request failed: ${error.message}` }));
      } finally {
        button.disabled = false;
      }
    };
    const actions = el("div", { class: "actions" });
    if (TRIED.includes(method)) {
      const button = el("button", { type: "button", class: "primary", text: "Send" });
      button.addEventListener("click", () => send(button));
      actions.append(button);
    } else {
      actions.append(el("span", { class: "muted", text: `${method.toUpperCase()} changes data: copy the command to send it.` }));
    }
    actions.append(el("button", { type: "button", text: "curl", onclick: showCurl }));
    return el("div", { class: "try" }, el("h4", { text: "Try it" }), fields.childElementCount ? fields : null, bodyInput, actions, curl, outcome);
  }

  function showOutcome(outcome, op, response, text, ms) {
    const type = response.headers.get("content-type") || "";
    let shown = text;
    if (type.includes("json")) {
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as sent */ }
    }
    if (shown.length > MAX_SHOWN) shown = `${shown.slice(0, MAX_SHOWN)}\n… (${text.length} characters in all)`;
    const documented = Object.hasOwn(op.responses || {}, String(response.status));
    outcome.replaceChildren(
      el("div", { class: "line" },
        el("span", { class: `status s${String(response.status)[0]}`, text: `${response.status} ${response.statusText}` }),
        el("span", { class: "muted", text: `${type || "no content type"} · ${Math.round(ms)} ms` }),
        documented ? null : el("span", { class: "status s5", text: "not in the document" })),
      el("pre", { class: "response-body", text: shown || "(no body)" }),
    );
  }

  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, byId("key").value.trim());
    load();
  });
  load();
})();
