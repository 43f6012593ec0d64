// Campaign page: asks before cancelling, and shows live progress by polling the JSON API every 2 s
// while the campaign can still change.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  var box = document.getElementById("campaign");
  if (!box || !window.fetch) return;
  var finalStates = { finished: 1, cancelled: 1 };
  if (finalStates[box.dataset.status]) return;
  function tick() {
    fetch(box.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (c) {
        if (!c) return;
        if (c.status !== box.dataset.status) { location.reload(); return; }
        box.querySelectorAll("[data-count]").forEach(function (el) {
          el.textContent = c.counts[el.dataset.count] || 0;
        });
        var p = document.getElementById("progress");
        p.max = c.total || 1; p.value = c.done;
        document.getElementById("progress-text").textContent = c.done + " of " + c.total;
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
