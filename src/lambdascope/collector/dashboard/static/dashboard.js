/* lambdascope dashboard: small progressive enhancements; every page works without them.
   - tables: click (or Enter on) a th[data-sort] to sort by that column (td[data-value] first)
   - filter forms: empty fields are left out of the URL, so shared links stay short */
(function () {
  "use strict";

  function cellKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) { return numeric ? -Infinity : ""; }
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (numeric) {
      var n = parseFloat(raw);
      return isNaN(n) ? -Infinity : n;
    }
    return raw.toLowerCase();
  }

  function sortBy(th) {
    var table = th.closest("table");
    if (!table) { return; }
    var index = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var numeric = th.getAttribute("data-sort") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    if (th.getAttribute("aria-sort") === null && numeric) { ascending = false; }
    var heads = table.querySelectorAll("th[data-sort]");
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var sign = ascending ? 1 : -1;
    for (var b = 0; b < table.tBodies.length; b++) {
      var body = table.tBodies[b];
      var rows = Array.prototype.slice.call(body.rows);
      var keyed = rows.map(function (row, position) {
        return { row: row, key: cellKey(row, index, numeric), position: position };
      });
      keyed.sort(function (x, y) {
        if (x.key < y.key) { return -sign; }
        if (x.key > y.key) { return sign; }
        return x.position - y.position;
      });
      keyed.forEach(function (item) { body.appendChild(item.row); });
    }
  }

  document.addEventListener("click", function (event) {
    var th = event.target.closest && event.target.closest("th[data-sort]");
    if (th) { sortBy(th); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" && event.key !== " ") { return; }
    var th = event.target.closest && event.target.closest("th[data-sort]");
    if (th) { event.preventDefault(); sortBy(th); }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("filters")) { return; }
    var fields = form.querySelectorAll("input[name], select[name]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value === "") { fields[i].disabled = true; }
    }
  });
  /* Coming back to a page (the back button) finds its fields usable again. */
  window.addEventListener("pageshow", function () {
    var fields = document.querySelectorAll("form.filters [disabled]");
    for (var i = 0; i < fields.length; i++) { fields[i].disabled = false; }
  });
})();
