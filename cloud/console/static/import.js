// The import wizard's progress line: the upload's percentage while the file goes up (htmx's
// xhr progress events), then "checking" until the answer comes; "importing" after Apply.
(function () {
  function line() { return document.getElementById("import-progress"); }
  function show(text, value) {
    var p = line();
    if (!p) return;
    p.hidden = false;
    var bar = p.querySelector("progress");
    if (value === null) bar.removeAttribute("value"); else bar.value = value;
    p.querySelector("span").textContent = text;
  }
  document.addEventListener("htmx:xhr:progress", function (ev) {
    var d = ev.detail, p = line();
    if (!p || !d.lengthComputable || !d.total) return;
    var pct = Math.round((100 * d.loaded) / d.total);
    var words = p.querySelector("span").dataset;
    if (d.loaded >= d.total) show(words.check, null);
    else show(words.upload.replace("{p}", pct), pct);
  });
  document.addEventListener("submit", function (ev) {
    if (ev.target.id !== "apply-form") return;
    var p = line();
    if (p) show(p.querySelector("span").dataset.apply, null);
    ev.target.querySelector("button").disabled = true; // one import per click
  });
})();
