// The gallery: plain JavaScript over imgvec's HTTP API (/api/docs), no build step, no CDN.
//
// Object names, attributes and server messages are data: every piece of them reaches the page
// through textContent, attribute setters or option/dataset properties, never through innerHTML.
// The query lives in the URL (?text=… or ?similar=<id> or ?image=<name or id> or ?diverse=1,
// with the filters), so a search can be reloaded, shared, and walked with the browser's back
// button.
"use strict";

const DEFAULT_K = 24;
const TOKEN_KEY = "imgvec_token";
// Fields the filter language reads as the listing's own columns, not as attributes.
const LISTED_FIELDS = new Set(["name", "locator", "size", "content_type", "updated_at"]);
const FILTER_FIELD = /^[A-Za-z_][\w.-]*$/;
// RFC 6265 cookie-octet: a token outside it cannot ride in the cookie <img> requests carry.
const COOKIE_SAFE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/;
// A select shows its option's text cut at its right edge: a longer space name gives up its
// middle so that the image count after it stays readable (style.css sizes the select for it).
const SPACE_NAME_SHOWN = 40;

const byId = (id) => document.getElementById(id);
const ui = {
  form: byId("search-form"),
  text: byId("text"),
  upload: byId("upload"),
  file: byId("file"),
  filtersToggle: byId("filters-toggle"),
  filters: byId("filters"),
  space: byId("space"),
  k: byId("k"),
  minScore: byId("min-score"),
  minScoreValue: byId("min-score-value"),
  prefix: byId("prefix"),
  attributeFilters: byId("attribute-filters"),
  extraFilters: byId("extra-filters"),
  diverse: byId("diverse"),
  context: byId("context"),
  status: byId("status"),
  results: byId("results"),
  welcome: byId("welcome"),
  health: byId("health"),
  dropOverlay: byId("drop-overlay"),
  tokenDialog: byId("token-dialog"),
  tokenInput: byId("token-input"),
  tokenError: byId("token-error"),
  tokenCancel: byId("token-cancel"),
};

let spaces = [];
let extraWheres = []; // filters from the link that no picker shows
let current = { mode: null }; // the query on screen
let latestRequest = 0;
let uploadPreview = null; // the object URL of the uploaded image shown beside its results

// ---------------------------------------------------------------------------------------------
// DOM helpers: elements with text, never markup.

function element(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

// Only the API's own paths become an src or href: a javascript: or foreign URL never does.
function apiPath(url) {
  return typeof url === "string" && url.startsWith("/api/") ? url : null;
}

function formatScore(score) {
  return typeof score === "number" ? score.toFixed(3) : "";
}

function plural(count, noun) {
  return typeof count === "number" ? `${count} ${noun}${count === 1 ? "" : "s"}` : `? ${noun}s`;
}

function formatBytes(size) {
  if (typeof size !== "number") return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

// ---------------------------------------------------------------------------------------------
// The API: a token when the server asks for one, problem+json details as errors.

class ApiError extends Error {}

let tokenPrompt = null; // one prompt shared by every request that got a 401 meanwhile
// A cancelled prompt means "not now": the requests of the same start (spaces, the link's query,
// the health line) fail without asking again; the next search the user starts asks again.
let tokenDeclined = false;

function askForToken(refused) {
  if (tokenDeclined) return Promise.resolve(null);
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      ui.tokenError.textContent = refused ? "The server refused that token." : "";
      ui.tokenInput.value = "";
      // Escape leaves returnValue as the last prompt set it: it must not read as Continue.
      ui.tokenDialog.returnValue = "";
      ui.tokenDialog.addEventListener(
        "close",
        () => {
          const token = ui.tokenInput.value.trim();
          const given = ui.tokenDialog.returnValue === "ok" && token ? token : null;
          tokenPrompt = null;
          tokenDeclined = !given;
          resolve(given);
        },
        { once: true },
      );
      ui.tokenDialog.showModal();
    });
  }
  return tokenPrompt;
}

function storeToken(token) {
  if (!COOKIE_SAFE.test(token)) {
    throw new ApiError("That token has characters a cookie cannot carry (spaces, quotes, ;).");
  }
  localStorage.setItem(TOKEN_KEY, token);
  // The cookie lets <img src> and the original's link authenticate as well.
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${TOKEN_KEY}=${token}; Path=/; SameSite=Strict; Max-Age=31536000${secure}`;
}

async function problemDetail(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
    if (body && typeof body.title === "string" && body.title) return body.title;
  } catch {
    // not JSON: the status line below says what there is to say
  }
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(`/api${path}`, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The server cannot be reached. Is `imgvec serve` running?");
  }
  if (response.status === 401) {
    const fresh = await askForToken(Boolean(token));
    if (!fresh) {
      throw new ApiError("This server needs an access token to answer: search again to give it.");
    }
    storeToken(fresh);
    return api(path, options);
  }
  if (!response.ok) throw new ApiError(await problemDetail(response));
  return response.json();
}

// ---------------------------------------------------------------------------------------------
// Spaces and the filter controls.

function selectedSpace() {
  return spaces.find((space) => space.name === ui.space.value);
}

function whereExpression(key, value) {
  // A bare number or boolean matches the JSON value and its text; a quoted value is text only.
  if (typeof value === "number" || typeof value === "boolean") return `${key}=${value}`;
  return `${key}='${String(value).replaceAll("'", "''")}'`;
}

function renderAttributePickers() {
  ui.attributeFilters.replaceChildren();
  const attributes = selectedSpace()?.attributes || {};
  for (const [key, values] of Object.entries(attributes)) {
    if (!FILTER_FIELD.test(key) || LISTED_FIELDS.has(key) || !Array.isArray(values)) continue;
    const select = element("select", { attrs: { "data-attribute": key } });
    select.append(new Option("any", ""));
    for (const value of values) {
      if (value === null || typeof value === "object") continue;
      select.append(new Option(String(value), whereExpression(key, value)));
    }
    select.addEventListener("change", rerunWithFilters);
    ui.attributeFilters.append(
      element("label", { className: "field" }, [
        element("span", { className: "field-label", text: key }),
        select,
      ]),
    );
  }
}

function renderExtraFilters() {
  ui.extraFilters.replaceChildren();
  for (const expression of extraWheres) {
    const remove = element("button", {
      className: "chip-remove",
      text: "×",
      attrs: { type: "button", "aria-label": `Remove the filter ${expression}` },
    });
    remove.addEventListener("click", () => {
      extraWheres = extraWheres.filter((other) => other !== expression);
      renderExtraFilters();
      rerunWithFilters();
    });
    ui.extraFilters.append(
      element("span", { className: "chip" }, [element("span", { text: expression }), remove]),
    );
  }
}

function pickerWheres() {
  return [...ui.attributeFilters.querySelectorAll("select")]
    .map((select) => select.value)
    .filter(Boolean);
}

function showMinScore() {
  const value = Number(ui.minScore.value);
  ui.minScoreValue.textContent = value > 0 ? value.toFixed(2) : "off";
}

function filtersFromControls() {
  const k = Math.max(1, Math.min(500, Number.parseInt(ui.k.value, 10) || DEFAULT_K));
  const minScore = Number(ui.minScore.value);
  return {
    space: ui.space.value || null,
    k,
    minScore: minScore > 0 ? minScore : null,
    prefix: ui.prefix.value.trim() || null,
    where: [...pickerWheres(), ...extraWheres],
  };
}

function applyFiltersToControls(filters) {
  if (filters.space && spaces.some((space) => space.name === filters.space)) {
    ui.space.value = filters.space;
  }
  renderAttributePickers();
  ui.k.value = String(filters.k);
  ui.minScore.value = String(filters.minScore ?? 0);
  showMinScore();
  ui.prefix.value = filters.prefix ?? "";
  extraWheres = [];
  for (const expression of filters.where) {
    const picker = [...ui.attributeFilters.querySelectorAll("select")].find((select) =>
      [...select.options].some((option) => option.value === expression && !select.value),
    );
    if (picker) picker.value = expression;
    else extraWheres.push(expression);
  }
  renderExtraFilters();
}

// ---------------------------------------------------------------------------------------------
// The query in the URL.

function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  const k = Number.parseInt(params.get("k") ?? "", 10);
  const minScore = Number.parseFloat(params.get("min_score") ?? "");
  const filters = {
    space: params.get("space"),
    k: k > 0 ? k : DEFAULT_K,
    minScore: minScore > 0 ? minScore : null,
    prefix: params.get("prefix"),
    where: params.getAll("where"),
  };
  const similar = params.get("similar") ?? "";
  if (/^\d+$/.test(similar)) return { mode: "similar", objectId: similar, filters };
  // A name is no id for /similar: searched as a listed image, the API names it or says what is
  // wrong with it ("did you mean …?"), where ignoring it would show the blank home page.
  const images = [...params.getAll("image"), similar].filter(Boolean);
  if (images.length) return { mode: "image", images, filters };
  if (params.get("diverse")) return { mode: "diverse", filters };
  if (params.get("text")) return { mode: "text", text: params.get("text"), filters };
  return { mode: null, filters };
}

function urlOf(state) {
  const params = new URLSearchParams();
  if (state.mode === "text") params.set("text", state.text);
  if (state.mode === "similar") params.set("similar", state.objectId);
  if (state.mode === "image") for (const image of state.images) params.append("image", image);
  if (state.mode === "diverse") params.set("diverse", "1");
  const { space, k, minScore, prefix, where } = state.filters;
  if (space) params.set("space", space);
  params.set("k", String(k));
  if (minScore) params.set("min_score", String(minScore));
  if (prefix) params.set("prefix", prefix);
  for (const expression of where) params.append("where", expression);
  return `${location.pathname}?${params}`;
}

function go(state, { push = true, userAction = true } = {}) {
  if (userAction) tokenDeclined = false;
  // An uploaded image cannot travel in a link: for an upload the URL keeps only the filters.
  const url = urlOf(state.mode === "upload" ? { ...state, mode: null } : state);
  if (push && url !== `${location.pathname}${location.search}`) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  return run(state);
}

// ---------------------------------------------------------------------------------------------
// Running a query.

function queryParams(filters, names) {
  const params = new URLSearchParams();
  const values = {
    space: filters.space,
    k: filters.k,
    n: filters.k,
    min_score: filters.minScore,
    prefix: filters.prefix,
  };
  for (const name of names) if (values[name] != null) params.set(name, String(values[name]));
  if (names.includes("where")) {
    for (const expression of filters.where) params.append("where", expression);
  }
  return params;
}

async function fetchResults(state, signal) {
  const { filters } = state;
  if (state.mode === "text") {
    const params = queryParams(filters, ["space", "k", "min_score", "prefix", "where"]);
    params.set("text", state.text);
    return api(`/search?${params}`, { signal });
  }
  if (state.mode === "similar") {
    const id = encodeURIComponent(state.objectId);
    const all = ["space", "k", "min_score", "prefix", "where"];
    const [answer, image] = await Promise.all([
      api(`/images/${id}/similar?${queryParams(filters, all)}`, { signal }),
      api(`/images/${id}?${queryParams(filters, ["space"])}`, { signal }),
    ]);
    return { ...answer, image };
  }
  if (state.mode === "image") {
    const params = queryParams(filters, ["space", "k", "min_score", "prefix", "where"]);
    for (const image of state.images) params.append("image", image);
    return api(`/search?${params}`, { signal });
  }
  if (state.mode === "diverse") {
    const params = queryParams(filters, ["space", "n", "prefix", "where"]);
    return api(`/diverse?${params}`, { signal });
  }
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  for (const [name, value] of queryParams(filters, ["space", "k", "min_score", "prefix", "where"])) {
    form.append(name, value);
  }
  return api("/search", { method: "POST", body: form, signal });
}

let inFlight = null;

async function run(state) {
  current = state;
  // The box shows the query on screen: a text, or nothing for an image, a sample or no query.
  ui.text.value = state.mode === "text" ? state.text : "";
  const request = ++latestRequest;
  inFlight?.abort();
  inFlight = new AbortController();
  ui.welcome.hidden = state.mode !== null;
  if (state.mode === null) {
    ui.context.hidden = true;
    ui.results.replaceChildren();
    setStatus("");
    document.body.classList.remove("busy");
    return;
  }
  document.body.classList.add("busy");
  ui.results.setAttribute("aria-busy", "true");
  setStatus(state.mode === "diverse" ? "Sampling…" : "Searching…");
  const slow = setTimeout(() => {
    if (request === latestRequest && (state.mode === "text" || state.mode === "upload")) {
      setStatus("Searching… the server loads its model on the first search of a space: "
        + "this one can take a while.");
    }
  }, 3000);
  try {
    const answer = await fetchResults(state, inFlight.signal);
    if (request !== latestRequest) return;
    renderContext(state, answer);
    renderResults(answer.results || [], state.mode);
    if (!answer.results?.length) {
      setStatus(answer.note || "No images match. Try fewer filters or a lower minimum score.");
    } else {
      const what = plural(answer.results.length, state.mode === "diverse" ? "cluster" : "image");
      setStatus(`${what} in ${answer.space ?? "the space"}`);
    }
  } catch (error) {
    if (request !== latestRequest || error.name === "AbortError") return;
    ui.results.replaceChildren();
    renderContext(state, null);
    setStatus(error instanceof ApiError ? error.message : `Something went wrong: ${error}`, true);
  } finally {
    clearTimeout(slow);
    if (request === latestRequest) {
      document.body.classList.remove("busy");
      ui.results.removeAttribute("aria-busy");
    }
  }
}

function rerunWithFilters() {
  if (current.mode === null) return;
  const state = { ...current, filters: filtersFromControls() };
  // A text edited but not yet searched is what the user sees: the filter applies to it.
  if (state.mode === "text" && ui.text.value.trim()) state.text = ui.text.value.trim();
  go(state, { push: false });
}

function setStatus(message, isError = false) {
  ui.status.textContent = message;
  ui.status.classList.toggle("error", isError);
  ui.status.setAttribute("role", isError ? "alert" : "status");
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function renderContext(state, answer) {
  const parts = [];
  if (state.mode === "text") {
    parts.push(element("h1", { className: "context-title", attrs: { tabindex: "-1" } }, [
      document.createTextNode("Images matching "),
      element("q", { text: state.text }),
    ]));
  } else if (state.mode === "diverse") {
    parts.push(element("div", {}, [
      element("h1", {
        className: "context-title",
        text: "A diverse sample",
        attrs: { tabindex: "-1" },
      }),
      element("p", {
        className: "context-note",
        text: "One image per cluster of the space, the one nearest its centre, with the cluster's size.",
      }),
    ]));
  } else if (state.mode === "upload") {
    const preview = element("img", {
      className: "context-thumb",
      attrs: { alt: "", width: "64", height: "64" },
    });
    preview.src = state.preview;
    parts.push(preview, element("div", {}, [
      element("h1", { className: "context-title", attrs: { tabindex: "-1" } }, [
        document.createTextNode("Images like "),
        element("span", { className: "name", text: state.file.name }),
      ]),
      element("p", { className: "context-note", text: "An uploaded image is not kept in the link." }),
    ]));
  } else if (state.mode === "similar") {
    parts.push(...similarContext(state, answer?.image));
  } else if (state.mode === "image") {
    parts.push(element("h1", { className: "context-title", attrs: { tabindex: "-1" } }, [
      document.createTextNode("Images like "),
      element("span", { className: "name", text: state.images.join(" + ") }),
    ]));
  }
  ui.context.replaceChildren(...parts);
  ui.context.hidden = parts.length === 0;
}

function similarContext(state, image) {
  const title = element("h1", { className: "context-title", attrs: { tabindex: "-1" } }, [
    document.createTextNode("Images like "),
    element("span", { className: "name", text: image?.name ?? `image ${state.objectId}` }),
  ]);
  const details = [image?.content_type, formatBytes(image?.size)];
  for (const [key, value] of Object.entries(image?.attributes || {})) {
    details.push(`${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`);
  }
  const meta = element("p", { className: "context-note", text: details.filter(Boolean).join(" · ") });
  const original = apiPath(image?.original_url);
  if (original) {
    meta.append(" ", element("a", {
      className: "original-link",
      text: "Open original ↗",
      attrs: { href: original, target: "_blank", rel: "noopener" },
    }));
  }
  const thumbnail = apiPath(image?.thumbnail_url);
  const parts = [];
  if (thumbnail) {
    parts.push(element("img", {
      className: "context-thumb",
      attrs: { src: thumbnail, alt: "", width: "64", height: "64" },
    }));
  }
  parts.push(element("div", {}, [title, meta]));
  return parts;
}

function renderResults(results, mode) {
  ui.results.replaceChildren(...results.map((result) => resultCard(result, mode)));
}

function resultCard(result, mode) {
  const name = String(result.name ?? result.locator ?? `image ${result.object_id}`);
  const card = element("li", { className: "card" });
  const thumbnail = element("img", {
    attrs: { alt: "", width: "256", height: "256", loading: "lazy", decoding: "async" },
  });
  thumbnail.addEventListener("error", () => card.classList.add("broken"), { once: true });
  const source = apiPath(result.thumbnail_url);
  if (source) thumbnail.src = source;

  const facts = [];
  if (mode === "diverse" && typeof result.cluster === "number") {
    facts.push(element("span", {
      className: "cluster",
      text: `cluster ${result.cluster + 1} · ${plural(result.cluster_size, "image")}`,
    }));
  } else if (typeof result.score === "number") {
    facts.push(element("span", { className: "score", text: formatScore(result.score) }));
  }
  for (const value of Object.values(result.attributes || {})) {
    if (value !== null && typeof value !== "object") {
      facts.push(element("span", { className: "tag", text: String(value) }));
    }
  }

  const open = element("button", {
    className: "card-open",
    // Read out as "More like <name>, <score or cluster>, <attributes>": what the card shows.
    attrs: { type: "button", title: name },
  }, [
    element("span", { className: "visually-hidden", text: "More like " }),
    element("span", { className: "thumb" }, [thumbnail]),
    element("span", { className: "card-name", text: name }),
    element("span", { className: "card-facts" }, facts),
  ]);
  open.addEventListener("click", () => openSimilar(result.object_id));

  card.append(open);
  card.dataset.objectId = String(result.object_id);
  if (typeof result.score === "number") card.dataset.score = String(result.score);
  if (typeof result.cluster === "number") card.dataset.cluster = String(result.cluster);
  const original = apiPath(result.original_url);
  if (original) {
    card.append(element("a", {
      className: "card-original",
      text: "↗",
      attrs: { href: original, target: "_blank", rel: "noopener", title: "Open the original",
               "aria-label": `Open the original of ${name}` },
    }));
  }
  return card;
}

async function openSimilar(objectId) {
  await go({ mode: "similar", objectId: String(objectId), filters: filtersFromControls() });
  window.scrollTo({ top: 0 });
  // Keyboard users land on the new query's heading, not at the bottom of a replaced grid.
  ui.context.querySelector(".context-title")?.focus({ preventScroll: true });
}

// ---------------------------------------------------------------------------------------------
// Uploads: the button, drag-and-drop anywhere, and paste.

function searchWithFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image (${file.type}).`, true);
    return;
  }
  // One object URL per upload (re-runs with other filters reuse it), released by the next.
  if (uploadPreview) URL.revokeObjectURL(uploadPreview);
  uploadPreview = URL.createObjectURL(file);
  go({ mode: "upload", file, preview: uploadPreview, filters: filtersFromControls() });
}

function hasFiles(event) {
  return [...(event.dataTransfer?.types || [])].includes("Files");
}

function wireUploads() {
  ui.upload.addEventListener("click", () => ui.file.click());
  ui.file.addEventListener("change", () => {
    searchWithFile(ui.file.files[0]);
    ui.file.value = ""; // the same file chosen again still searches
  });
  let dragDepth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    ui.dropOverlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) ui.dropOverlay.hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    ui.dropOverlay.hidden = true;
    searchWithFile(event.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) searchWithFile(file);
  });
}

// ---------------------------------------------------------------------------------------------
// Start.

function wireControls() {
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text) {
      setStatus("Type a description to search for, or upload an image.", true);
      ui.text.focus();
      return;
    }
    go({ mode: "text", text, filters: filtersFromControls() });
  });
  ui.filtersToggle.addEventListener("click", () => {
    const open = ui.filtersToggle.getAttribute("aria-expanded") !== "true";
    ui.filtersToggle.setAttribute("aria-expanded", String(open));
    ui.filters.classList.toggle("open", open);
  });
  ui.tokenCancel.addEventListener("click", () => ui.tokenDialog.close("cancel"));
  ui.diverse.addEventListener("click", () => go({ mode: "diverse", filters: filtersFromControls() }));
  ui.space.addEventListener("change", () => {
    renderAttributePickers();
    extraWheres = [];
    renderExtraFilters();
    rerunWithFilters();
  });
  ui.k.addEventListener("change", rerunWithFilters);
  ui.minScore.addEventListener("input", showMinScore);
  ui.minScore.addEventListener("change", rerunWithFilters);
  let typing = null;
  ui.prefix.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(rerunWithFilters, 400);
  });
  document.addEventListener("keydown", (event) => {
    const typingSomewhere = event.target.closest?.("input, select, textarea, dialog");
    if (event.key === "/" && !typingSomewhere) {
      event.preventDefault();
      ui.text.focus();
      ui.text.select();
    }
  });
  window.addEventListener("popstate", () => {
    const state = stateFromUrl();
    applyFiltersToControls(state.filters);
    run(state);
  });
}

function shortened(name) {
  if (name.length <= SPACE_NAME_SHOWN) return name;
  const kept = SPACE_NAME_SHOWN - 1;
  return `${name.slice(0, Math.ceil(kept / 2))}…${name.slice(name.length - Math.floor(kept / 2))}`;
}

async function loadSpaces() {
  const answer = await api("/spaces");
  spaces = Array.isArray(answer.spaces) ? answer.spaces : [];
  ui.space.replaceChildren(...spaces.map((space) => {
    const images = typeof space.images === "number" ? ` (${space.images} images)` : "";
    const option = new Option(`${shortened(space.name)}${images}`, space.name);
    option.title = space.name;
    return option;
  }));
  if (answer.default) ui.space.value = answer.default;
  ui.space.disabled = spaces.length === 0;
  return spaces.length;
}

async function showHealth() {
  try {
    const health = await api("/health");
    const facts = [`database ${health.database}`];
    if (health.pgvector) facts.push(`pgvector ${health.pgvector}`);
    if (health.read_only) facts.push("read-only");
    ui.health.textContent = facts.join(" · ");
  } catch (error) {
    ui.health.textContent = error instanceof ApiError ? error.message : "";
  }
}

async function start() {
  document.body.classList.add("busy"); // until the spaces are in and the link's query answered
  wireControls();
  wireUploads();
  showMinScore();
  let problem = null;
  try {
    if ((await loadSpaces()) === 0) problem = "No embedding space is loaded yet: run `imgvec run`.";
  } catch (error) {
    problem = error instanceof ApiError ? error.message : String(error);
  }
  const state = stateFromUrl();
  applyFiltersToControls(state.filters);
  // A query in the link still runs (it says what is wrong in its own words); a blank page keeps
  // the message instead of a welcome that invites searches bound to fail.
  if (problem && state.mode === null) {
    ui.welcome.hidden = true;
    document.body.classList.remove("busy");
    setStatus(problem, true);
  } else {
    await go(state, { push: false, userAction: false });
  }
  showHealth();
}

start();
