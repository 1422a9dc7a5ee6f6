// Filter forms (the usage page): typing a date chooses the custom period, and fields left empty
// stay out of the address that htmx requests and pushes, so a bookmarked view reads cleanly.
// Without JavaScript the form is a plain GET form and the server ignores empty fields.
// No inline script (CSP script-src 'self').
document.addEventListener("change", (event) => {
  const form = event.target.closest("form[data-usage-filters]");
  if (!form || !["from", "to"].includes(event.target.name) || !event.target.value) return;
  const range = form.querySelector("select[name=range]");
  if (range) range.value = "custom";
}, true);
document.addEventListener("htmx:configRequest", (event) => {
  if (!event.detail.elt.matches("form[data-usage-filters]")) return;
  const data = event.detail.formData;
  for (const name of [...new Set(data.keys())]) {
    if (data.getAll(name).every((value) => value === "")) data.delete(name);
  }
  if (data.get("range") !== "custom") {
    data.delete("from");
    data.delete("to");
  }
});
