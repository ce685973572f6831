// The ops view: live calls from the server's event stream, the latency chart (uPlot).
// Written for Kav; no inline script (the console's Content-Security-Policy forbids it).
(function () {
  "use strict";
  function start() {
    var table = document.getElementById("live-calls");
    if (table && window.EventSource) {
      var body = table.querySelector("tbody");
      var events = new EventSource(table.getAttribute("data-events"));
      // Each `calls` event is the whole table body, rendered (and escaped) by the server.
      events.addEventListener("calls", function (e) { body.innerHTML = e.data; });
    }
    var chart = document.getElementById("latency-chart");
    if (chart && window.uPlot) {
      var s = JSON.parse(chart.getAttribute("data-series"));
      var opts = {
        width: Math.max(320, chart.clientWidth || 800),
        height: 240,
        series: [{}, { label: chart.getAttribute("data-label"), stroke: "#c0392b", width: 2, points: { show: true } }],
        axes: [{}, { label: "ms" }]
      };
      new window.uPlot(opts, [s.t, s.p95_total_ms], chart);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
