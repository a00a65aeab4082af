// kith's only script: copy buttons, confirmations, filters that apply on change, the live
// debugger's event stream, an empty contact list that fills itself, the template editor's live
// preview and the rule builder's sections. Every page works without it, except the live updates.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectNextTo(button));
  } else {
    selectNextTo(button);
  }
});

// Without the clipboard API (plain http on another host), select the text so Ctrl+C copies it.
function selectNextTo(button) {
  const code = button.parentElement.querySelector("code");
  if (!code) return;
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

document.addEventListener("change", (event) => {
  if (event.target.matches("[data-autosubmit]")) event.target.form.requestSubmit();
});

// The live debugger: each server-sent event is a rendered row, newest on top.
(function debuggerStream() {
  const list = document.getElementById("debugger");
  if (!list || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const empty = document.getElementById("debugger-empty");
  const after = list.getAttribute("data-after") || "0";
  const source = new EventSource(list.getAttribute("data-stream") + "?after=" + encodeURIComponent(after));
  const show = (state, text) => { status.setAttribute("data-state", state); status.textContent = text; };
  source.addEventListener("open", () => show("live", "Live"));
  // A browser retries a dropped stream by itself, but not one refused (signed out, or too
  // many debugger tabs open).
  source.addEventListener("error", () => source.readyState === EventSource.CLOSED
    ? show("connecting", "Not live: reload the page, or close another debugger tab")
    : show("connecting", "Reconnecting…"));
  source.addEventListener("entry", (message) => {
    list.insertAdjacentHTML("afterbegin", message.data);
    list.firstElementChild.classList.add("dbg-new");
    if (empty) empty.hidden = true;
    while (list.children.length > 300) list.lastElementChild.remove();
  });
})();

// An empty list that fills itself: reload once the first event reaches a contact.
(function reloadOnFirstEvent() {
  const marker = document.querySelector("[data-reload-on]");
  if (!marker || !window.EventSource) return;
  const source = new EventSource(marker.getAttribute("data-reload-on"));
  source.addEventListener("open", () => marker.setAttribute("data-state", "live"));
  source.addEventListener("entry", (message) => {
    if (/dbg-(added|merged|stored)/.test(message.data)) {
      source.close();
      window.location.reload();
    }
  });
})();

// The template editor's live preview: Preview asks the server without leaving the page, and
// once a contact is chosen, typing in the template refreshes the preview and the errors. The
// server renders both; this only moves its answer into place.
(function livePreview() {
  const form = document.querySelector("form[data-live-preview]");
  if (!form || !window.fetch || !window.DOMParser) return;
  let timer = null;
  let asked = 0;
  const refresh = async () => {
    const ticket = ++asked;
    const body = new URLSearchParams(new FormData(form));
    body.set("intent", "preview");
    let text;
    try {
      const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
      text = await response.text();
    } catch {
      return;
    }
    if (ticket !== asked) return;
    const answer = new DOMParser().parseFromString(text, "text/html");
    const preview = answer.getElementById("preview");
    if (preview) document.getElementById("preview").replaceWith(preview);
    for (const slot of form.querySelectorAll(".field-error")) {
      const fresh = answer.getElementById(slot.id);
      slot.textContent = fresh ? fresh.textContent : "";
      slot.hidden = !fresh || fresh.hidden;
      const input = form.querySelector(`[aria-describedby~="${slot.id}"]`);
      if (input) {
        if (slot.hidden) input.removeAttribute("aria-invalid");
        else input.setAttribute("aria-invalid", "true");
      }
    }
  };
  form.addEventListener("click", (event) => {
    const button = event.target.closest('button[name="intent"][value="preview"]');
    if (!button) return;
    event.preventDefault();
    refresh();
  });
  // Enter in the contact field previews, in the test address sends the test: not the form's
  // first button, Save.
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    if (event.target.name === "contact") {
      event.preventDefault();
      refresh();
    } else if (event.target.name === "test_to") {
      event.preventDefault();
      form.querySelector('button[name="intent"][value="test"]').click();
    }
  });
  form.addEventListener("input", (event) => {
    if (!event.target.matches('[name="subject"], [name="html"], [name="text"], [name="topic_id"]')) return;
    if (!form.elements.contact.value.trim()) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 600);
  });
})();

// The rule builder shows the fields of the chosen trigger and of the actions ticked; the others
// stay in the form (the server reads only what the choices name) but out of the way.
(function ruleBuilder() {
  const form = document.getElementById("rule-builder");
  if (!form) return;
  const trigger = form.querySelector("[data-trigger-select]");
  const sync = () => {
    for (const part of form.querySelectorAll("[data-when]")) {
      part.hidden = !part.getAttribute("data-when").split(" ").includes(trigger.value);
    }
    for (const box of form.querySelectorAll("[data-action-toggle]")) {
      const part = form.querySelector(`[data-action="${box.getAttribute("data-action-toggle")}"]`);
      if (part) part.hidden = !box.checked;
    }
  };
  form.addEventListener("change", sync);
  sync();
})();
