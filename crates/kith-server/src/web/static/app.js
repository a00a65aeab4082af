// kith's only script: copy buttons, confirmations, filters that apply on change, the live
// debugger's event stream, and an empty contact list that fills itself. Every page works without it, except the live updates.
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
