// The results explorer's one script: sortable tables, filters and chart tooltips. No framework,
// nothing fetched: every page works from file:// with the network off.
(function () {
  "use strict";

  // A cell's sort key: its data-sort attribute, else the first number in its text ("97.50 ± 0.12",
  // "1,293", "-3.2"), else its text. Cells without a value ("-", "") sort last either way.
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    var text = raw !== null ? raw : cell.textContent.trim();
    var m = text.match(/^[+-]?[\d,]*\.?\d+(e[+-]?\d+)?/i);
    if (m) return { num: parseFloat(m[0].replace(/,/g, "")), text: text };
    return { num: null, text: text };
  }

  function sortBy(table, column, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var descending = th.getAttribute("aria-sort") === "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var sign = descending ? -1 : 1;
    rows.sort(function (a, b) {
      var x = key(a.cells[column]), y = key(b.cells[column]);
      var xe = x.num === null && (x.text === "" || x.text === "-");
      var ye = y.num === null && (y.text === "" || y.text === "-");
      if (xe || ye) return xe === ye ? 0 : xe ? 1 : -1;  // empty cells last
      if (x.num !== null && y.num !== null) return sign * (x.num - y.num);
      return sign * x.text.localeCompare(y.text);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function sortable(table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.title = "sort by " + th.textContent.trim();
      th.addEventListener("click", function () { sortBy(table, i, th); });
    });
  }

  // Filters: a text box hides the rows that do not contain its text; a <select data-attr="x">
  // hides the rows whose data-x differs from its value ("" shows all). Filters of one table combine.
  function applyFilters(table) {
    var controls = document.querySelectorAll('[data-table="' + table.id + '"]');
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var shown = true;
      Array.prototype.forEach.call(controls, function (c) {
        var v = c.value.trim().toLowerCase();
        if (!v) return;
        if (c.getAttribute("data-attr")) {
          var have = (row.getAttribute("data-" + c.getAttribute("data-attr")) || "").toLowerCase();
          if (have.split(" ").indexOf(v) < 0) shown = false;
        } else if (row.textContent.toLowerCase().indexOf(v) < 0) {
          shown = false;
        }
      });
      row.classList.toggle("hidden", !shown);
    });
  }

  function tips() {
    var tip = document.createElement("div");
    tip.id = "tip";
    document.body.appendChild(tip);
    document.addEventListener("mouseover", function (e) {
      var t = e.target.closest ? e.target.closest("[data-tip]") : null;
      if (!t) { tip.style.display = "none"; return; }
      tip.textContent = t.getAttribute("data-tip");
      tip.style.display = "block";
    });
    document.addEventListener("mousemove", function (e) {
      tip.style.left = e.clientX + 12 + "px";
      tip.style.top = e.clientY + 12 + "px";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
    Array.prototype.forEach.call(document.querySelectorAll("[data-table]"), function (c) {
      var table = document.getElementById(c.getAttribute("data-table"));
      if (!table) return;
      c.addEventListener(c.tagName === "SELECT" ? "change" : "input", function () { applyFilters(table); });
      applyFilters(table);
    });
    tips();
  });
})();
