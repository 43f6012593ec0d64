// Progressive enhancement for the preview page: tabs without reloading, broken-image
// detection inside the frames, and reload when --watch sees a change. Works without it.
(function () {
  "use strict";
  var tabs = document.querySelectorAll('[role="tab"][data-tab]');
  function show(key, push) {
    tabs.forEach(function (t) {
      var on = t.dataset.tab === key;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      var panel = document.getElementById(t.getAttribute("aria-controls"));
      if (!panel) return;
      panel.hidden = !on;
      if (on) panel.querySelectorAll("iframe[data-src]").forEach(function (f) {
        if (f.getAttribute("src") === "about:blank") f.setAttribute("src", f.dataset.src);
      });
    });
    if (push) {
      var u = new URL(location.href);
      u.searchParams.set("view", key);
      history.replaceState(null, "", u);
    }
  }
  tabs.forEach(function (t, i) {
    t.addEventListener("click", function (e) { e.preventDefault(); show(t.dataset.tab, true); t.focus(); });
    t.addEventListener("keydown", function (e) {
      var d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!d) return;
      var next = tabs[(i + d + tabs.length) % tabs.length];
      show(next.dataset.tab, true); next.focus(); e.preventDefault();
    });
  });
  var current = document.querySelector('[role="tab"][aria-selected="true"]');
  tabs.forEach(function (t) { t.tabIndex = t === current ? 0 : -1; });

  // Images that fail to load inside a frame become warnings.
  var list = document.getElementById("warnings");
  var reported = {};
  function checkFrame(f) {
    var doc;
    try { doc = f.contentDocument; } catch (e) { return; }
    if (!doc) return;
    doc.querySelectorAll("img").forEach(function (img) {
      function bad() {
        var name = (img.getAttribute("src") || "").split("/").pop().slice(0, 60);
        if (reported[name]) return;
        reported[name] = true;
        if (list && list.tagName !== "UL") { var ul = document.createElement("ul"); ul.className = "warnings"; ul.id = "warnings"; list.replaceWith(ul); list = ul; }
        var li = document.createElement("li"); li.textContent = "image " + name + " did not load (broken link?)"; list.appendChild(li);
        var n = document.getElementById("warning-count"); if (n) n.textContent = "(" + list.children.length + ")";
      }
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) bad();
      else img.addEventListener("error", bad);
    });
  }
  document.querySelectorAll(".frames iframe").forEach(function (f) {
    f.addEventListener("load", function () { checkFrame(f); });
  });

  // --watch: poll a tiny JSON endpoint; reload when the composed digest changes.
  var w = document.getElementById("watching");
  if (w && window.fetch) {
    var version = w.dataset.version;
    setInterval(function () {
      fetch(w.dataset.state, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) { if (s && s.version && s.version !== version) location.reload(); })
        .catch(function () {});
    }, 1000);
  }
})();
