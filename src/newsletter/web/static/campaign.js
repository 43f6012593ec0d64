// Campaign page: asks before cancelling or sending, and — while the campaign can still change —
// polls its progress JSON every 2 s: counts, speed, time to go and what happens next, without
// reloading (the page reloads once when the status changes, to show the new actions).
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  var box = document.getElementById("campaign");
  if (!box || !window.fetch) return;
  var finalStates = { finished: 1, cancelled: 1, draft: 1 };
  if (finalStates[box.dataset.status]) return;
  function setText(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }
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
        setText("progress-text", c.done + " of " + c.total);
        setText("rate", c.rate_text || "nothing sent in the last minute");
        setText("eta", c.eta_text ? "about " + c.eta_text + " to go" : "");
        var st = document.getElementById("standing");
        if (st && c.note && st.textContent !== c.note) {
          st.textContent = c.note;
          st.hidden = false;
          st.className = "flash standing " + (c.stall ? "error" : c.needs_worker ? "warn" : "ok");
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
