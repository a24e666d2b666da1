// The chat page: a small client of Switchboard's REST API (session auth + CSRF).
// Live progress comes from GET /api/v1/runs/{id}/events/ (Server-Sent Events);
// without EventSource, or when the stream fails, it polls GET /api/v1/runs/{id}/.
(function () {
  "use strict";

  const API = "/api/v1";
  const TERMINAL = ["completed", "failed", "timed_out", "cancelled"];
  const ROLE_LABEL = { customer: "You", assistant: "Assistant", human_agent: "Support team", system: "Notice" };

  const els = {
    list: document.getElementById("conversation-list"),
    create: document.getElementById("new-conversation"),
    title: document.getElementById("conversation-title"),
    messages: document.getElementById("messages"),
    review: document.getElementById("review-banner"),
    reviewReason: document.getElementById("review-reason"),
    progress: document.getElementById("progress"),
    steps: document.getElementById("steps"),
    progressTitle: document.getElementById("progress-title"),
    cancel: document.getElementById("cancel-run"),
    form: document.getElementById("composer"),
    input: document.getElementById("message-input"),
    send: document.getElementById("send"),
    error: document.getElementById("composer-error"),
  };
  const state = { conversationId: null, runId: null, shown: new Set(), source: null, pollTimer: null };
  const REVIEW_REASON_DEFAULT = els.reviewReason.textContent;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, path, body) {
    const response = await fetch(API + path, {
      method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error ? data.error.message : "Something went wrong (" + response.status + ").";
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // --- Conversations -------------------------------------------------------------------
  async function loadConversations() {
    const page = await api("GET", "/conversations/?limit=50");
    els.list.replaceChildren();
    page.results.forEach((conversation, index) => addConversationButton(conversation, page.results.length - index));
  }

  function addConversationButton(conversation, number, first) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = conversation.id;
    const started = new Date(conversation.created_at);
    button.textContent = "Conversation " + number + " · " + started.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    button.addEventListener("click", () => openConversation(conversation.id, button.textContent));
    item.append(button);
    if (first) els.list.prepend(item); else els.list.append(item);
    return button;
  }

  async function openConversation(id, label) {
    stopWatching();
    state.conversationId = id;
    state.shown = new Set();
    els.messages.replaceChildren();
    els.review.hidden = true;
    els.progress.hidden = true;
    els.title.textContent = label || "Conversation";
    for (const button of els.list.querySelectorAll("button")) {
      button.setAttribute("aria-current", button.dataset.id === id ? "true" : "false");
    }
    const conversation = await api("GET", "/conversations/" + id + "/");
    conversation.messages.forEach(showMessage);
    els.input.focus();
  }

  async function newConversation() {
    const conversation = await api("POST", "/conversations/");
    const number = els.list.children.length + 1;
    const button = addConversationButton(conversation, number, true);
    await openConversation(conversation.id, button.textContent);
    return conversation.id;
  }

  // --- Messages ------------------------------------------------------------------------
  function showMessage(message) {
    if (state.shown.has(message.id)) return;
    state.shown.add(message.id);
    const item = document.createElement("li");
    item.className = "message " + message.role;
    item.dataset.role = message.role;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = ROLE_LABEL[message.role] || message.role;
    item.append(role, document.createTextNode(message.content));
    els.messages.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  async function sendMessage(event) {
    event.preventDefault();
    els.error.textContent = "";
    const content = els.input.value.trim();
    if (!content) {
      els.error.textContent = "Write a message first.";
      els.input.focus();
      return;
    }
    els.send.disabled = true;
    try {
      if (!state.conversationId) await newConversation();
      const posted = await api("POST", "/conversations/" + state.conversationId + "/messages/", { content });
      showMessage(posted.message);
      els.input.value = "";
      watchRun(posted.run.id);
    } catch (error) {
      els.error.textContent = error.message;
    } finally {
      els.send.disabled = false;
    }
  }

  // --- Live progress ---------------------------------------------------------------------
  function showStep(step) {
    const key = step.hop + "-" + step.agent;
    let item = els.steps.querySelector('[data-key="' + key + '"]');
    if (!item) {
      item = document.createElement("li");
      item.className = "step";
      item.dataset.key = key;
      item.dataset.agent = step.agent;
      els.steps.append(item);
    }
    item.dataset.status = step.status;
    item.textContent = step.agent + (step.status === "completed" ? " ✓" : step.status === "failed" ? " ✗" : " …");
    item.setAttribute("aria-label", step.agent + ": " + step.status);
  }

  function runFinished() {
    stopWatching();
    els.progress.dataset.done = "true";
    if (els.progress.dataset.cancelled !== "true") els.progressTitle.textContent = "How we answered";
  }

  // The run was stopped (by the Stop button, or elsewhere): nothing was sent; the stream's last events (the
  // notice, then `end`) still arrive.
  function showCancelled() {
    els.progress.dataset.cancelled = "true";
    els.progressTitle.textContent = "Stopped: no answer was sent";
    els.review.hidden = true;
    els.cancel.hidden = true;
  }

  async function cancelRun() {
    const runId = state.runId;
    if (!runId) return;
    els.error.textContent = "";
    els.cancel.disabled = true;
    try {
      const run = await api("POST", "/runs/" + runId + "/cancel/");
      if (run.status === "cancelled" && state.runId === runId) showCancelled();
      els.input.focus();  // the button is gone: back to the message box
    } catch (error) {
      // 409: the run ended first (answered, or handed on); its own events show how.
      els.error.textContent = error.message;
    } finally {
      els.cancel.disabled = false;
    }
  }

  // `reason` is the run's public reason ({code, message}: a fixed sentence per code), when it has one.
  function showReview(pending, reason) {
    if (els.progress.dataset.cancelled === "true") return;
    els.review.hidden = !pending;
    if (pending) els.progressTitle.textContent = "Waiting for a person";
    if (pending && reason && reason.message) els.reviewReason.textContent = reason.message;
  }

  function watchRun(runId) {
    stopWatching();
    state.runId = runId;
    els.steps.replaceChildren();
    els.progress.hidden = false;
    delete els.progress.dataset.done;
    delete els.progress.dataset.cancelled;
    els.progressTitle.textContent = "Working on it";
    els.cancel.hidden = false;
    els.review.hidden = true;
    els.reviewReason.textContent = REVIEW_REASON_DEFAULT;
    if (!window.EventSource) return pollRun(runId);
    const source = new EventSource(API + "/runs/" + runId + "/events/");
    state.source = source;
    source.addEventListener("step", (event) => showStep(JSON.parse(event.data)));
    source.addEventListener("message", (event) => showMessage(JSON.parse(event.data)));
    source.addEventListener("review", (event) => {
      const data = JSON.parse(event.data);
      showReview(!data.status, data.reason);  // a decision ("decided") ends "a person is checking"
    });
    source.addEventListener("run", (event) => {
      const data = JSON.parse(event.data);
      if (data.status === "awaiting_review") showReview(true, data.reason);
      if (data.status === "running") showReview(false);
      if (data.status === "cancelled") showCancelled();
    });
    source.addEventListener("end", runFinished);
    source.onerror = () => {
      // The stream ended (its lifetime) or failed: EventSource reconnects with Last-Event-ID; after a
      // failure to reconnect, fall back to polling.
      if (source.readyState === EventSource.CLOSED) {
        state.source = null;
        pollRun(runId);
      }
    };
  }

  async function pollRun(runId) {
    try {
      const run = await api("GET", "/runs/" + runId + "/");
      run.steps.forEach(showStep);
      if (run.status === "cancelled") showCancelled();
      showReview(run.status === "awaiting_review", run.reason);
      const conversation = await api("GET", "/conversations/" + state.conversationId + "/messages/");
      conversation.forEach(showMessage);
      if (TERMINAL.includes(run.status)) return runFinished();
    } catch (error) {
      els.error.textContent = error.message;
    }
    state.pollTimer = setTimeout(() => pollRun(runId), 1000);
  }

  function stopWatching() {
    if (state.source) state.source.close();
    state.source = null;
    clearTimeout(state.pollTimer);
    state.runId = null;
    els.cancel.hidden = true;
  }

  // --- Wiring --------------------------------------------------------------------------
  els.create.addEventListener("click", () => newConversation().catch((error) => { els.error.textContent = error.message; }));
  els.form.addEventListener("submit", sendMessage);
  els.cancel.addEventListener("click", cancelRun);
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });
  loadConversations().then(() => {
    const first = els.list.querySelector("button");
    if (first) first.click();
  }).catch((error) => { els.error.textContent = error.message; });
})();
