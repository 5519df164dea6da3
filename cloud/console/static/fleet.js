// The fleet pages: a form with data-confirm asks first (no inline script: a CSP may come).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
document.getElementById("print")?.addEventListener("click", () => window.print());
