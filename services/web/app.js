// Memory Agent chat page: sign in with an API key, chat over Server-Sent Events, keep the
// user's memories live beside the chat (search, add, edit, delete), reopen earlier
// conversations, and show usage and cost. Plain JS, no build step, no dependencies.
"use strict";

const KEY_STORAGE = "memoryAgent.apiKey";
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  threadId: null,
  memories: [], // newest first, as GET /v1/memories lists them
  search: null, // {query, hits: [{memory, score, kind}]} while search results are shown
  threads: [], // most recently active first, as GET /v1/threads lists them
  turn: null, // AbortController of the running chat turn
};

// ---- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }

  static async from(response) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not JSON (a proxy's page, say): fall back to the status line
    }
    return new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || "request failed",
      error.field,
    );
  }

  describe() {
    const field = this.field ? `, field “${this.field}”` : "";
    return `${this.message} [${this.code}${field}]`;
  }
}

async function api(path, { method = "GET", json, signal, key = state.key } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  const init = { method, headers, signal };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await ApiError.from(response);
    if (error.status === 401 && key === state.key) signOut(`Signed out: ${error.describe()}`);
    throw error;
  }
  return response;
}

// Yields {event, data} for each Server-Sent Event of a fetch response.
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// ---- messages to the person -------------------------------------------------------------

function showError(error) {
  const text = error instanceof ApiError ? error.describe() : String(error.message || error);
  $("error").textContent = text;
  $("error").hidden = false;
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}

function clearMessages() {
  $("error").hidden = true;
  $("notice").hidden = true;
}

// ---- sign in / out ----------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  clearMessages();
  const key = $("api-key").value.trim();
  try {
    await api("/v1/memories?limit=1", { key }); // checks the key before keeping it
  } catch (error) {
    showError(error);
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  state.key = key;
  $("api-key").value = "";
  enterWorkspace();
}

function signOut(message) {
  if (state.turn) state.turn.abort();
  sessionStorage.removeItem(KEY_STORAGE);
  Object.assign(state, {
    key: null, threadId: null, memories: [], search: null, threads: [], turn: null,
  });
  $("messages").replaceChildren();
  $("search-query").value = "";
  renderMemories();
  renderThreads();
  $("workspace").hidden = true;
  $("account").hidden = true;
  $("sign-in").hidden = false;
  clearMessages();
  if (typeof message === "string") showError(message);
  $("api-key").focus();
}

function enterWorkspace() {
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("account").hidden = false;
  $("message").focus();
  refreshMemories();
  refreshThreads();
}

// ---- chat -------------------------------------------------------------------------------

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Agent";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function addNote(item, text, className = "note") {
  const note = document.createElement("p");
  note.className = className;
  note.textContent = text;
  item.append(note);
}

async function sendMessage(event) {
  event.preventDefault();
  const message = $("message").value.trim();
  if (!message || state.turn) return;
  clearMessages();
  addMessage("user", message);
  $("message").value = "";
  const answer = addMessage("assistant", "");
  const text = answer.querySelector(".text");
  text.setAttribute("aria-live", "polite");
  text.setAttribute("aria-busy", "true");
  answer.dataset.state = "streaming";
  state.turn = new AbortController();
  $("send").disabled = true;
  try {
    const json = { message, stream: true };
    if (state.threadId) json.thread_id = state.threadId;
    const response = await api("/v1/chat", { method: "POST", json, signal: state.turn.signal });
    let final = null;
    for await (const { event: name, data } of serverSentEvents(response)) {
      if (name === "started") state.threadId = data.thread_id;
      else if (name === "text") {
        text.textContent += data.text;
        answer.scrollIntoView({ block: "end" });
      }
      else if (name === "memory") applyMemoryEvent(data);
      else if (name === "error") addNote(answer, `${data.message} [${data.code}]`, "note warn");
      else if (name === "final") final = data;
    }
    if (!final) throw new Error("the answer stream ended early; try again");
    state.threadId = final.thread_id;
    if (final.text) text.textContent = final.text;
    addNote(answer, describeTurn(final), "meta");
  } catch (error) {
    if (error.name !== "AbortError") {
      showError(error);
      addNote(answer, "No complete answer.", "note warn");
    }
  } finally {
    text.setAttribute("aria-busy", "false");
    answer.dataset.state = "done";
    state.turn = null;
    $("send").disabled = false;
    if (state.key) {
      refreshMemories();
      refreshThreads();
    }
  }
}

function describeTurn(final) {
  const parts = [];
  if (final.latency && final.latency.total_ms != null) {
    parts.push(`${Math.round(final.latency.total_ms)} ms`);
  }
  if (final.usage) parts.push(`${final.usage.input_tokens + final.usage.output_tokens} tokens`);
  if (typeof final.cost_usd === "number") parts.push(`$${final.cost_usd.toFixed(5)}`);
  if (final.offline) parts.push("offline: no model answered");
  return parts.join(" · ");
}

// ---- memories ---------------------------------------------------------------------------

async function refreshMemories() {
  try {
    const items = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: "200" });
      if (cursor) query.set("cursor", cursor);
      const page = await (await api(`/v1/memories?${query}`)).json();
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < 2000);
    state.memories = items;
    renderMemories();
  } catch (error) {
    if (state.key) showError(error);
  }
}

function applyMemoryEvent(event) {
  const index = state.memories.findIndex((m) => m.id === event.memory_id);
  if (event.action === "deleted") {
    forgetMemory(event.memory_id);
  } else {
    const memory = { ...(state.memories[index] || {}), id: event.memory_id };
    Object.assign(memory, { content: event.content, context: event.context });
    memory.version = event.version;
    replaceMemory(memory, false);
  }
  renderMemories(event.memory_id);
}

// What the list shows: search hits while a search is on, else every memory.
function shownMemories() {
  if (!state.search) return state.memories;
  return state.search.hits.map((hit) => ({
    ...hit.memory,
    score: hit.score,
    kind: hit.kind || hit.memory.kind,
  }));
}

// Reconciles the list with what is shown, keeping each memory's element (and so an open
// editor and its focus) across updates.
function renderMemories(changedId) {
  const list = $("memory-list");
  const shown = shownMemories();
  const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
  const items = shown.map((memory) => {
    const item = existing.get(memory.id) || createMemoryItem(memory.id);
    existing.delete(memory.id);
    updateMemoryItem(item, memory);
    return item;
  });
  existing.forEach((item) => item.remove());
  items.forEach((item, i) => {
    if (list.children[i] !== item) list.insertBefore(item, list.children[i] || null);
  });
  if (changedId) flash(list.querySelector(`li[data-id="${CSS.escape(changedId)}"]`));
  $("memories-empty").hidden = shown.length > 0 || Boolean(state.search);
  setText($("memory-count"), state.memories.length ? `(${state.memories.length})` : "");
  $("search-status").hidden = !state.search;
  if (state.search) {
    const n = state.search.hits.length;
    const found = n === 0 ? "No memories match" : n === 1 ? "1 memory matches" : `${n} memories match`;
    setText($("search-summary"), `${found} “${state.search.query}”.`);
  }
}

function flash(item) {
  if (!item) return;
  item.classList.remove("changed");
  void item.offsetWidth; // restart the animation
  item.classList.add("changed");
}

function createMemoryItem(id) {
  const item = document.createElement("li");
  item.className = "memory";
  item.dataset.id = id;
  item.innerHTML = `
    <div class="view">
      <p class="match" hidden><span class="score"></span> <span class="kind"></span></p>
      <p class="content"></p>
      <p class="context"></p>
      <p class="dates"></p>
      <div class="actions">
        <span class="version"></span>
        <button type="button" class="edit">Edit</button>
        <button type="button" class="delete danger">Delete</button>
      </div>
    </div>`;
  item.querySelector(".edit").addEventListener("click", () => openEditor(item));
  item.querySelector(".delete").addEventListener("click", () => deleteMemory(item));
  return item;
}

// Only real changes touch the DOM, so the live region announces only those.
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const DATE_ONLY = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

// A <time> element: readable text, the exact instant for machines and in a tooltip.
function timeElement(iso, format = DATE_TIME) {
  const time = document.createElement("time");
  time.dateTime = iso;
  const when = new Date(iso);
  time.textContent = format.format(when);
  time.title = when.toString();
  return time;
}

function describeVersion(version) {
  if (!version || version <= 1) return { text: "", title: "" };
  const edits = version - 1;
  return {
    text: `edited ${edits}×`,
    title: `Changed ${edits} time${edits === 1 ? "" : "s"} since it was saved (version ${version})`,
  };
}

function updateMemoryItem(item, memory) {
  item.dataset.version = memory.version;
  setText(item.querySelector(".content"), memory.content);
  const context = item.querySelector(".context");
  setText(context, memory.context || "");
  context.hidden = !memory.context;

  const match = item.querySelector(".match");
  match.hidden = typeof memory.score !== "number";
  if (!match.hidden) {
    const percent = Math.round(Math.max(0, Math.min(1, memory.score)) * 100);
    setText(match.querySelector(".score"), `${percent}% match`);
    match.querySelector(".score").title = `relevance ${memory.score.toFixed(3)} of 1`;
    const kind = match.querySelector(".kind");
    setText(kind, memory.kind || "");
    kind.hidden = !memory.kind;
  }

  const dates = item.querySelector(".dates");
  const stamp = `${memory.created_at || ""}|${memory.observed_at || ""}`;
  if (dates.dataset.stamp !== stamp) {
    dates.dataset.stamp = stamp;
    dates.replaceChildren();
    if (memory.created_at) {
      dates.append("Saved ", timeElement(memory.created_at));
      // Said to have happened at another time than it was saved (e.g. "last summer").
      const observed = memory.observed_at && Date.parse(memory.observed_at);
      if (observed && Math.abs(observed - Date.parse(memory.created_at)) > 60_000) {
        dates.append(" · about ", timeElement(memory.observed_at, DATE_ONLY));
      }
    }
    dates.hidden = !memory.created_at;
  }

  const version = item.querySelector(".version");
  const described = describeVersion(memory.version);
  setText(version, described.text);
  version.title = described.title;
  const label = `memory “${shorten(memory.content)}”`;
  item.querySelector(".edit").setAttribute("aria-label", `Edit ${label}`);
  item.querySelector(".delete").setAttribute("aria-label", `Delete ${label}`);
}

function shorten(text, max = 40) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function openEditor(item) {
  if (item.querySelector("form.editor")) return;
  const id = item.dataset.id;
  const memory = state.memories.find((m) => m.id === id);
  const form = document.createElement("form");
  form.className = "editor";
  form.dataset.version = item.dataset.version; // the version this edit started from
  form.innerHTML = `
    <label>Edit memory</label>
    <textarea rows="3" required></textarea>
    <p class="conflict" role="alert" hidden></p>
    <div class="actions">
      <button type="submit">Save</button>
      <button type="button" class="cancel">Cancel</button>
    </div>`;
  const field = form.querySelector("textarea");
  field.id = `edit-${id}`;
  form.querySelector("label").htmlFor = field.id;
  field.value = memory ? memory.content : item.querySelector(".content").textContent;
  form.addEventListener("submit", (event) => saveMemory(event, item, form));
  form.querySelector(".cancel").addEventListener("click", () => closeEditor(item));
  item.classList.add("editing");
  item.querySelector(".view").hidden = true;
  item.append(form);
  field.focus();
}

function closeEditor(item) {
  const form = item.querySelector("form.editor");
  if (form) form.remove();
  item.classList.remove("editing");
  item.querySelector(".view").hidden = false;
  item.querySelector(".edit").focus();
}

async function saveMemory(event, item, form) {
  event.preventDefault();
  clearMessages();
  const id = item.dataset.id;
  const content = form.querySelector("textarea").value.trim();
  if (!content) return;
  const version = Number(form.dataset.version);
  const conflict = form.querySelector(".conflict");
  try {
    const path = `/v1/memories/${encodeURIComponent(id)}`;
    const saved = await (await api(path, { method: "PATCH", json: { content, version } })).json();
    replaceMemory(saved);
    closeEditor(item);
    flash(item);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 409) {
      if (error.status === 404) refreshMemories();
      showError(error);
      return;
    }
    // Changed elsewhere since the edit began: show what it is now; a second Save overwrites.
    try {
      const path = `/v1/memories/${encodeURIComponent(id)}`;
      const current = await (await api(path)).json();
      replaceMemory(current);
      form.dataset.version = current.version;
      conflict.textContent =
        "Conflict: this memory was changed elsewhere since you began editing " +
        `(it now reads “${current.content}”). Save again to replace it with your text, ` +
        "or Cancel.";
    } catch (reload) {
      conflict.textContent = `Conflict: ${error.describe()}`;
    }
    conflict.hidden = false;
  }
}

// Puts a memory as the API returned it into the list (and into search hits showing it).
function replaceMemory(memory, render = true) {
  const index = state.memories.findIndex((m) => m.id === memory.id);
  if (index >= 0) state.memories[index] = memory;
  else state.memories.unshift(memory);
  if (state.search) {
    for (const hit of state.search.hits) {
      if (hit.memory.id === memory.id) hit.memory = { ...hit.memory, ...memory };
    }
  }
  if (render) renderMemories();
}

function forgetMemory(id) {
  state.memories = state.memories.filter((m) => m.id !== id);
  if (state.search) state.search.hits = state.search.hits.filter((h) => h.memory.id !== id);
}

async function deleteMemory(item) {
  clearMessages();
  const id = item.dataset.id;
  try {
    await api(`/v1/memories/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) {
      showError(error);
      return;
    }
  }
  forgetMemory(id);
  renderMemories();
  showNotice("Memory deleted.");
}

async function searchMemories(event) {
  event.preventDefault();
  clearMessages();
  const query = $("search-query").value.trim();
  if (!query) return clearSearch();
  try {
    const params = new URLSearchParams({ q: query, limit: "20" });
    const found = await (await api(`/v1/memories/search?${params}`)).json();
    state.search = { query, hits: found.items };
    renderMemories();
  } catch (error) {
    showError(error);
  }
}

function clearSearch() {
  state.search = null;
  $("search-query").value = "";
  renderMemories();
  $("search-query").focus();
}

async function addMemory(event) {
  event.preventDefault();
  clearMessages();
  const content = $("new-memory").value.trim();
  if (!content) return;
  const json = { content };
  const context = $("new-memory-context").value.trim();
  if (context) json.context = context;
  try {
    const response = await api("/v1/memories", { method: "POST", json });
    const saved = await response.json();
    replaceMemory(saved, false);
    renderMemories(saved.id);
    $("new-memory").value = "";
    $("new-memory-context").value = "";
    // 200: the same memory existed already (same key), and was updated instead.
    showNotice(response.status === 201 ? "Memory saved." : "Memory updated (it existed).");
  } catch (error) {
    showError(error);
  }
}

// ---- conversations ----------------------------------------------------------------------

async function refreshThreads() {
  try {
    state.threads = (await (await api("/v1/threads?limit=50")).json()).items;
    renderThreads();
  } catch (error) {
    if (state.key) showError(error);
  }
}

function renderThreads() {
  const list = $("thread-list");
  list.replaceChildren(
    ...state.threads.map((thread) => {
      const item = document.createElement("li");
      item.dataset.id = thread.thread_id;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thread";
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = thread.title || "Untitled conversation";
      title.title = title.textContent; // the whole title, where the list cuts it short
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.append("Last active ", timeElement(thread.updated_at));
      button.append(title, meta);
      if (thread.thread_id === state.threadId) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => openThread(thread.thread_id));
      item.append(button);
      return item;
    }),
  );
  $("threads-empty").hidden = state.threads.length > 0;
}

async function openThread(threadId) {
  if (state.turn) state.turn.abort();
  clearMessages();
  try {
    const path = `/v1/threads/${encodeURIComponent(threadId)}?limit=200`;
    const { messages } = await (await api(path)).json();
    state.threadId = threadId;
    $("messages").replaceChildren();
    // Tool calls and their results are the agent's own steps: show what was said.
    for (const message of messages) {
      if ((message.role === "user" || message.role === "assistant") && message.content) {
        const item = addMessage(message.role, message.content);
        if (message.created_at) {
          const note = document.createElement("p");
          note.className = "meta";
          note.append(timeElement(message.created_at));
          item.append(note);
        }
      }
    }
    renderThreads();
    $("message").focus();
  } catch (error) {
    if (error.status === 404) refreshThreads();
    showError(error);
  }
}

// ---- usage ------------------------------------------------------------------------------

const USD = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 5,
});
const COUNT = new Intl.NumberFormat();

async function showUsage() {
  clearMessages();
  const dialog = $("usage-dialog");
  if (!dialog.open) dialog.showModal();
  await loadUsage();
}

async function loadUsage() {
  const days = $("usage-days").value;
  const label = $("usage-days").selectedOptions[0].textContent.toLowerCase();
  setText($("usage-total"), "Loading…");
  try {
    const usage = await (await api(`/v1/usage?days=${encodeURIComponent(days)}`)).json();
    const rows = usage.items.map((row) => {
      const tr = document.createElement("tr");
      const cells = [
        row.day,
        row.model,
        COUNT.format(row.calls),
        COUNT.format(row.input_tokens),
        COUNT.format(row.output_tokens),
        USD.format(row.cost_usd),
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i >= 2) td.className = "num";
        tr.append(td);
      });
      return tr;
    });
    $("usage-rows").replaceChildren(...rows);
    $("usage-table").hidden = rows.length === 0;
    $("usage-empty").hidden = rows.length > 0;
    setText($("usage-total"), `${USD.format(usage.total_cost_usd)} spent in the ${label}.`);
  } catch (error) {
    setText($("usage-total"), `Could not load usage: ${error.message}`);
  }
}

// ---- your data --------------------------------------------------------------------------

async function exportData() {
  clearMessages();
  try {
    const blob = await (await api("/v1/me/export")).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `memory-agent-export-${new Date().toISOString().slice(0, 10)}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    showNotice("Export downloaded.");
  } catch (error) {
    showError(error);
  }
}

async function eraseData() {
  clearMessages();
  const sure = window.confirm(
    "Erase all your memories, conversations and usage records? This cannot be undone.",
  );
  if (!sure) return;
  try {
    await api("/v1/me", { method: "DELETE" });
  } catch (error) {
    showError(error);
    return;
  }
  Object.assign(state, { threadId: null, memories: [], search: null, threads: [] });
  $("messages").replaceChildren();
  renderMemories();
  renderThreads();
  showNotice("All your data was erased.");
}

function newChat() {
  if (state.turn) state.turn.abort();
  state.threadId = null;
  $("messages").replaceChildren();
  renderThreads();
  clearMessages();
  $("message").focus();
}

// ---- wiring -----------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", signIn);
$("chat-form").addEventListener("submit", sendMessage);
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});
$("sign-out").addEventListener("click", () => signOut());
$("new-chat").addEventListener("click", newChat);
$("refresh").addEventListener("click", () => {
  clearMessages();
  refreshMemories();
});
$("refresh-threads").addEventListener("click", () => {
  clearMessages();
  refreshThreads();
});
$("search-form").addEventListener("submit", searchMemories);
$("search-clear").addEventListener("click", clearSearch);
$("add-memory-form").addEventListener("submit", addMemory);
$("usage").addEventListener("click", showUsage);
$("usage-days").addEventListener("change", loadUsage);
$("export").addEventListener("click", exportData);
$("erase").addEventListener("click", eraseData);

if (state.key) enterWorkspace();
else $("api-key").focus();
