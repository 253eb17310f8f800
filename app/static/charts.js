// Metric charts: read a series from the page's JSON endpoint and draw it with uPlot.
// The page already shows the same figures as tables; this only adds the pictures.
// No inline script or style (CSP): uPlot sizes elements through the CSSOM.
(function () {
  "use strict";

  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

  function bytes(value) {
    if (value == null) return "–";
    var i = 0;
    while (Math.abs(value) >= 1024 && i < UNITS.length - 1) { value /= 1024; i++; }
    return (i === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + UNITS[i];
  }

  function percent(value) { return value == null ? "–" : value.toFixed(1) + " %"; }
  function rate(value) { return value == null ? "–" : bytes(value) + "/s"; }

  var CHARTS = {
    cpu: {
      fields: [["cpu_percent", "CPU", "#2456d6"]],
      format: percent,
    },
    mem: {
      fields: [["mem_bytes", "Used", "#1a7f4b"], ["mem_limit_bytes", "Limit", "#a15c00", [4, 4]]],
      format: bytes,
    },
    net: {
      fields: [["net_rx_bps", "In", "#2456d6"], ["net_tx_bps", "Out", "#c0362c"]],
      format: rate,
    },
  };

  function options(kind, width) {
    var spec = CHARTS[kind];
    var series = [{}];
    spec.fields.forEach(function (f) {
      series.push({ label: f[1], stroke: f[2], width: 1.5, dash: f[3], spanGaps: false,
                    value: function (u, v) { return spec.format(v); } });
    });
    return {
      width: width,
      height: 180,
      series: series,
      scales: { y: { range: function (u, min, max) { return [0, Math.max(max || 0, kind === "cpu" ? 1 : 1024)]; } } },
      axes: [{}, { size: 84, values: function (u, ticks) { return ticks.map(spec.format); } }],
    };
  }

  function data(kind, json) {
    var out = [json.t];
    CHARTS[kind].fields.forEach(function (f) { out.push(json[f[0]]); });
    return out;
  }

  function setUp(section) {
    var url = section.dataset.series;
    var plots = {};
    var charts = section.querySelectorAll("[data-chart]");

    function draw(json) {
      charts.forEach(function (el) {
        var kind = el.dataset.chart;
        if (plots[kind]) {
          plots[kind].setData(data(kind, json));
        } else {
          plots[kind] = new uPlot(options(kind, el.clientWidth || 600), data(kind, json), el);
        }
      });
      section.classList.add("drawn");
    }

    function load() {
      return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(draw)
        .catch(function () { section.classList.add("chart-error"); });
    }

    load();
    var every = section.dataset.range === "hour" ? 15000 : 60000;
    setInterval(load, every);
    window.addEventListener("resize", function () {
      charts.forEach(function (el) {
        var plot = plots[el.dataset.chart];
        if (plot) plot.setSize({ width: el.clientWidth, height: 180 });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.uPlot) return;
    document.querySelectorAll(".metric-charts[data-series]").forEach(setUp);
  });
})();
