// Sort by clicking a header, filter by typing; plain DOM, no build step.
(function () {
  "use strict";
  var table = document.getElementById("wheels");
  var body = table.tBodies[0];
  var filter = document.getElementById("filter");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);

  function cellValue(row, i, type) {
    var cell = row.cells[i];
    var raw = cell.getAttribute("data-sort");
    var text = raw !== null ? raw : cell.textContent.trim();
    if (type === "number") { return parseFloat(text) || 0; }
    return text.toLowerCase();
  }

  // Numeric-aware compare so 1.10.0 sorts after 1.9.0.
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortBy(index) {
    var th = headers[index];
    var type = th.getAttribute("data-type");
    if (!type) { return; }
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    headers.forEach(function (h) { if (h.hasAttribute("aria-sort")) { h.setAttribute("aria-sort", "none"); } });
    th.setAttribute("aria-sort", dir);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, type), y = cellValue(b, index, type);
      var c = type === "number" ? x - y : collator.compare(x, y);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function applyFilter() {
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = row.textContent.toLowerCase();
      var ok = words.every(function (w) { return text.indexOf(w) !== -1; });
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = String(shown);
    empty.hidden = shown !== 0;
  }

  headers.forEach(function (th, i) {
    th.addEventListener("click", function () { sortBy(i); });
  });
  filter.addEventListener("input", applyFilter);
  // ?q=... pre-fills the filter so a filtered view can be shared as a link.
  var q = new URLSearchParams(window.location.search).get("q");
  if (q) { filter.value = q; }
  applyFilter();
  table.setAttribute("data-ready", "1");
})();
