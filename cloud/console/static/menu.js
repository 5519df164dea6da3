// The day planner: each meal's price sum and allergens as dishes are picked (the server
// computes the same when the day is saved; without this script the saved figures show).
(function () {
  "use strict";
  var form = document.querySelector("form.plan");
  if (!form) return;
  var none = form.getAttribute("data-none") || "";
  // the money format of the page's language, as the server writes it (e.g. "1 250,50 ₸")
  var tag = document.documentElement.lang === "en" ? "en" : "ru-KZ";
  var whole = new Intl.NumberFormat(tag, { maximumFractionDigits: 0 });
  var cents2 = new Intl.NumberFormat(tag, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function update(period) {
    var cents = 0, found = [];
    period.querySelectorAll("select").forEach(function (sel) {
      var opt = sel.options[sel.selectedIndex];
      if (!opt || !opt.value) return;
      cents += Math.round(parseFloat(opt.getAttribute("data-price")) * 100);
      (opt.getAttribute("data-allergens") || "").split(", ").forEach(function (a) {
        if (a && found.indexOf(a) < 0) found.push(a);
      });
    });
    var text = (cents % 100 === 0 ? whole : cents2).format(cents / 100);
    period.querySelector(".js-price").textContent = text + "\u00a0₸";
    period.querySelector(".js-allergens").textContent = found.length ? found.join(", ") : none;
  }
  form.querySelectorAll("fieldset.period").forEach(function (period) {
    period.addEventListener("change", function () { update(period); });
    update(period);
  });
})();
