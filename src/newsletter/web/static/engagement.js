// Campaign page: draws the engagement charts (uPlot, served from /static/vendor) from the report
// JSON embedded in the page. Colours come from the page's CSS variables, so the charts follow
// the light or dark theme; the same numbers are in the tables for screen readers.
(function () {
  "use strict";
  if (!window.uPlot) return;
  var data = document.getElementById("engagement-data");
  var r = data ? JSON.parse(data.textContent) : { timeline: [], links: [] };
  var css = getComputedStyle(document.documentElement);
  function v(name, fallback) { return (css.getPropertyValue(name) || fallback).trim(); }
  var fg = v("--fg", "#1b1f24"), line = v("--line", "#d5dae1"), accent = v("--accent", "#0b57d0");
  var ok = v("--ok", "#146c2e"), warn = v("--warn", "#7a4d00"), muted = v("--muted", "#4a5360");
  function axis(extra) {
    var a = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    for (var k in extra) a[k] = extra[k];
    return a;
  }
  function width(el) { return Math.max(240, Math.min(900, el.clientWidth || 600)); }

  var box = document.getElementById("chart-timeline");
  if (box) {
    var xs = {}, byKind = {};
    (r.timeline || []).forEach(function (s) {
      byKind[s.kind] = {};
      s.points.forEach(function (p) {
        var t = Date.parse(p.at) / 1000;
        xs[t] = 1;
        byKind[s.kind][t] = p;
      });
    });
    var times = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    function col(kind, who) {
      return times.map(function (t) { var p = (byKind[kind] || {})[t]; return p ? p[who] : 0; });
    }
    if (times.length) {
      var cols = [times, col("open", "human"), col("open", "machine"), col("click", "human"), col("click", "machine")];
      var one = times.length === 1;  // a single bucket: its points, centred, no invented line to zero
      new uPlot({
        width: width(box), height: 240,
        series: [
          {},
          { label: "Opens (people)", stroke: accent, width: 2, points: { show: true, size: 10, fill: accent } },
          { label: "Opens (machines)", stroke: muted, width: 1, dash: [4, 4], points: { show: true, size: 8 } },
          { label: "Clicks (people)", stroke: ok, width: 2, points: { show: true, size: 7, fill: ok } },
          { label: "Clicks (machines)", stroke: warn, width: 1, dash: [4, 4], points: { show: true, size: 8 } },
        ],
        axes: [axis({}), axis({ size: 40 })],
        scales: { x: one ? { time: true, range: [times[0] - 3600, times[0] + 3600] } : { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      }, cols, box);
    } else {
      box.textContent = "No opens or clicks yet.";
    }
  }

  var lbox = document.getElementById("chart-links");
  if (lbox && r.links && r.links.length) {
    var links = r.links.slice(0, 12);
    var idx = links.map(function (l, i) { return i + 1; });
    function short(u) { return u.replace(/^https?:\/\/(www\.)?/, "").slice(0, 28); }
    new uPlot({
      width: width(lbox), height: 60 + 24 * links.length,
      scales: { x: { time: false, range: [0.5, links.length + 0.5] }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      series: [
        {},
        { label: "Clicks (people)", fill: accent, stroke: accent, paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } },
      ],
      axes: [
        axis({ values: function (u, ticks) { return ticks.map(function (t) { var l = links[Math.round(t) - 1]; return l && Math.round(t) === t ? short(l.url) : ""; }); }, rotate: 0 }),
        axis({ size: 40 }),
      ],
    }, [idx, links.map(function (l) { return l.human_clicks; })], lbox);
  }

  var gdata = document.getElementById("growth-data"), gbox = document.getElementById("chart-growth");
  if (gdata && gbox) {
    var weeks = JSON.parse(gdata.textContent);
    var danger = v("--danger", "#b3261e");
    new uPlot({
      width: width(gbox), height: 220,
      series: [
        {},
        { label: "Subscribed", stroke: ok, width: 2, points: { show: true, size: 6, fill: ok } },
        { label: "Unsubscribed", stroke: warn, width: 2, points: { show: true, size: 6 } },
        { label: "Bounced", stroke: danger, width: 1, dash: [4, 4], points: { show: true, size: 6 } },
      ],
      axes: [axis({}), axis({ size: 40 })],
      scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
    }, [weeks.map(function (w) { return Date.parse(w.week + "T00:00:00Z") / 1000; }),
        weeks.map(function (w) { return w.subscribed; }), weeks.map(function (w) { return w.unsubscribed; }),
        weeks.map(function (w) { return w.bounced; })], gbox);
  }
})();
