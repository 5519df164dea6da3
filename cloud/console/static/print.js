// The letter page's print button (no inline script: a CSP may come, docs/console.md).
document.getElementById("print")?.addEventListener("click", () => window.print());
