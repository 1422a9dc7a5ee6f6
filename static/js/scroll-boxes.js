// A table or code sample wider than the screen scrolls inside its own box (.table-wrap, pre).
// Such a box must be reachable from the keyboard to be scrolled, so it becomes focusable while it
// overflows, and stops being a tab stop when it fits again. No inline script (CSP script-src 'self').
(() => {
  const mark = () => {
    for (const box of document.querySelectorAll(".table-wrap, pre")) {
      const scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.dataset.scrollBox = "true";
      } else if (!scrolls && box.dataset.scrollBox) {
        box.removeAttribute("tabindex");
        delete box.dataset.scrollBox;
      }
    }
  };
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", mark);
  document.addEventListener("htmx:afterSettle", mark);
})();
