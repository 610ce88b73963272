// Memory Agent chat page: sign in with an API key, chat over Server-Sent Events, and keep
// the user's memories live beside the chat. Plain JS, no build step, no dependencies.
"use strict";

const KEY_STORAGE = "memoryAgent.apiKey";
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  threadId: null,
  memories: [], // newest first, as GET /v1/memories lists them
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
  Object.assign(state, { key: null, threadId: null, memories: [], turn: null });
  $("messages").replaceChildren();
  renderMemories();
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
    if (state.key) refreshMemories();
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
    if (index >= 0) state.memories.splice(index, 1);
  } else {
    const memory = { ...(state.memories[index] || {}), id: event.memory_id };
    Object.assign(memory, { content: event.content, context: event.context });
    memory.version = event.version;
    if (index >= 0) state.memories[index] = memory;
    else state.memories.unshift(memory);
  }
  renderMemories(event.memory_id);
}

// Reconciles the list with state.memories, keeping each memory's element (and so an open
// editor and its focus) across updates.
function renderMemories(changedId) {
  const list = $("memory-list");
  const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
  const items = state.memories.map((memory) => {
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
  $("memories-empty").hidden = state.memories.length > 0;
  setText($("memory-count"), state.memories.length ? `(${state.memories.length})` : "");
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
      <p class="content"></p>
      <p class="context"></p>
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

function updateMemoryItem(item, memory) {
  item.dataset.version = memory.version;
  setText(item.querySelector(".content"), memory.content);
  const context = item.querySelector(".context");
  setText(context, memory.context || "");
  context.hidden = !memory.context;
  setText(item.querySelector(".version"), `v${memory.version}`);
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
        `Conflict: this memory was changed elsewhere (now v${current.version}: ` +
        `“${current.content}”). Save again to replace it with your text, or Cancel.`;
    } catch (reload) {
      conflict.textContent = `Conflict: ${error.describe()}`;
    }
    conflict.hidden = false;
  }
}

function replaceMemory(memory) {
  const index = state.memories.findIndex((m) => m.id === memory.id);
  if (index >= 0) state.memories[index] = memory;
  else state.memories.unshift(memory);
  renderMemories();
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
  state.memories = state.memories.filter((m) => m.id !== id);
  renderMemories();
  showNotice("Memory deleted.");
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
  state.threadId = null;
  state.memories = [];
  $("messages").replaceChildren();
  renderMemories();
  showNotice("All your data was erased.");
}

function newChat() {
  if (state.turn) state.turn.abort();
  state.threadId = null;
  $("messages").replaceChildren();
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
$("export").addEventListener("click", exportData);
$("erase").addEventListener("click", eraseData);

if (state.key) enterWorkspace();
else $("api-key").focus();
