// Panels that poll (hx-trigger="every …") get the same HTML back most of the time. Swapping it in
// anyway would make a screen reader announce the live region around the panel again and again, so
// a panel that carries data-live-key is swapped after a GET only when the answer's key differs from
// its own (answers to a form are always swapped).
// No inline script (CSP script-src 'self').
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  const polled = event.detail.requestConfig && event.detail.requestConfig.verb === "get";
  if (!polled || !target || target.dataset.liveKey === undefined) return;
  const answer = new DOMParser().parseFromString(event.detail.serverResponse || "", "text/html");
  const incoming = answer.querySelector("[data-live-key]");
  if (incoming && incoming.dataset.liveKey === target.dataset.liveKey) event.detail.shouldSwap = false;
});
