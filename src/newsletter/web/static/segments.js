// Segment builder: shows for each condition only the operators its field takes (and no value box
// where none is needed), adds and removes conditions, and keeps a live count: every edit asks
// /admin/segments/count (debounced, GET: a read) with the form's fields and shows the counts and
// the JSON filter they make. Without this script the form still saves: the server builds the filter.
(function () {
  "use strict";
  var form = document.getElementById("segment-form");
  if (!form) return;
  var list = document.getElementById("conditions");
  var template = document.getElementById("condition-template");
  var textarea = document.getElementById("filter_json");
  var save = document.getElementById("save");
  var errorBox = document.getElementById("count-error");
  var source = save.value;  // "rows" or "json": what saving uses
  var seq = 0, timer = null;

  function setupRow(row) {
    var field = row.querySelector("[data-role=field]");
    var op = row.querySelector("[data-role=op]");
    function sync() {
      var f = field.value, first = null, current = op.options[op.selectedIndex];
      Array.prototype.forEach.call(op.options, function (o) {
        var fits = (" " + o.dataset.fields + " ").indexOf(" " + f + " ") >= 0;
        o.hidden = !fits; o.disabled = !fits;
        if (fits && !first) first = o;
      });
      if (current.disabled && first) first.selected = true;
      row.querySelector("[data-part=attr]").hidden = f !== "attr";
      row.querySelector("[data-part=value]").hidden = op.value === "exists" || op.value === "!exists";
    }
    field.addEventListener("change", sync);
    op.addEventListener("change", sync);
    var box = row.querySelector("[data-role=remove]");
    var part = box.closest(".cond-part");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small";
    button.textContent = "Remove";
    button.setAttribute("aria-label", "Remove " + row.querySelector("label").textContent.replace(/: field$/, ""));
    button.addEventListener("click", function () {
      row.parentNode.removeChild(row);
      schedule();
      var next = list.querySelector("select");
      if (next) next.focus(); else add.focus();
    });
    part.replaceChild(button, box.closest("label"));
    sync();
  }

  var add = null;
  if (list && template) {
    Array.prototype.forEach.call(list.querySelectorAll("[data-row]"), setupRow);
    add = document.createElement("button");
    add.type = "button";
    add.className = "secondary";
    add.id = "add-condition";
    add.textContent = "Add a condition";
    add.addEventListener("click", function () {
      var i = list.querySelectorAll("[data-row]").length;
      while (form.elements["field_" + i]) i++;
      var html = template.innerHTML.replace(/_999/g, "_" + i).replace(/Condition 1000/g, "Condition " + (i + 1));
      var holder = document.createElement("ol");
      holder.innerHTML = html;
      var row = holder.querySelector("[data-row]");
      list.appendChild(row);
      setupRow(row);
      row.querySelector("select").focus();
    });
    list.parentNode.insertBefore(add, list.nextSibling);
  }

  function useSource(s) {
    source = s;
    save.value = s;
  }

  function show(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }

  function count(initial) {
    var params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");  // a read: the token stays out of URLs and logs
    params.set("source", source);
    var mine = ++seq;
    fetch(form.dataset.countUrl + "?" + params.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        if (mine !== seq) return;  // a newer edit asked again
        if (c.error) {
          // on opening a new segment the empty filter is not a mistake yet: only "?" until an edit
          if (!initial) { errorBox.textContent = c.error; errorBox.hidden = false; }
          show("count-matching", "?"); show("count-mailable", "?");
          return;
        }
        errorBox.hidden = true; errorBox.textContent = "";
        show("count-matching", String(c.matching));
        show("count-mailable", String(c.mailable));
        if (source === "rows" && textarea) textarea.value = c.filter;
      })
      .catch(function () {});
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(count, 300);
  }

  form.addEventListener("input", function (e) {
    if (e.target === textarea) useSource("json");
    else if (e.target.name !== "name") { if (list) useSource("rows"); }
    if (e.target.name !== "name") schedule();
  });
  form.addEventListener("change", function (e) {
    if (e.target !== textarea && e.target.name !== "name") { if (list) useSource("rows"); schedule(); }
  });
  count(true);
})();
