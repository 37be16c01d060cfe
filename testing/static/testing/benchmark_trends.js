/* The Benchmark trends page: one chart per figure over the stored runs, drawn with the vendored
   Chart.js (pipeline/vendor/chartjs). The samples' range is a band, regressions red points, change
   points hollow orange triangles (drawn on top: a step's first run is often also the regressed one).
   The ingest benchmarks' informational per-stage figures: one chart per stage, p50/p95/p99 lines. */
(function () {
  "use strict";
  const node = document.getElementById("benchmark-trends");
  if (!node || typeof Chart === "undefined") return;
  const trends = JSON.parse(node.textContent);
  const labels = trends.runs.map((run) => run.at.replace("T", " ").slice(0, 16));
  const only = (indexes, values) => values.map((v, i) => (indexes.includes(i) ? v : null));

  trends.charts.forEach((chart, n) => {
    const canvas = document.getElementById("trend-" + n);
    if (!canvas) return;
    const steps = chart.change_points.map((p) => p.run);
    new Chart(canvas, {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          { label: "samples min", data: chart.low, borderWidth: 0, pointRadius: 0, fill: false, order: 3 },
          {
            label: "samples (min–max)",
            data: chart.high,
            borderWidth: 0,
            pointRadius: 0,
            backgroundColor: "rgba(21, 101, 192, 0.15)",
            fill: "-1",
            order: 3,
          },
          { label: "median", data: chart.median, borderColor: "#1565c0", pointRadius: 2, fill: false, order: 2 },
          {
            label: "regression",
            data: only(chart.regressions, chart.median),
            showLine: false,
            pointRadius: 6,
            pointBackgroundColor: "#ba2121",
            borderColor: "#ba2121",
            order: 1,
          },
          {
            label: "change point",
            data: only(steps, chart.median),
            showLine: false,
            pointStyle: "triangle",
            pointRadius: 11,
            pointBorderWidth: 2,
            pointBackgroundColor: "rgba(0, 0, 0, 0)",
            borderColor: "#ef6c00",
            order: 0,
          },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        spanGaps: true,
        scales: { y: { title: { display: true, text: chart.figure + " (" + chart.unit + ")" } } },
        plugins: {
          legend: { position: "bottom", labels: { filter: (item) => item.text !== "samples min" } },
          tooltip: {
            callbacks: {
              afterTitle: (items) => items.length ? "code " + trends.runs[items[0].dataIndex].code_version : "",
            },
          },
        },
      },
    });
  });

  const QUANTILE_COLORS = { p50: "#1565c0", p95: "#ef6c00", p99: "#c62828" };
  trends.stage_charts.forEach((chart) => {
    const canvas = document.getElementById("stage-trend-" + chart.benchmark + "-" + chart.stage);
    if (!canvas) return;
    new Chart(canvas, {
      type: "line",
      data: {
        labels: labels,
        datasets: ["p50", "p95", "p99"].map((q) => ({
          label: q,
          data: chart[q],
          borderColor: QUANTILE_COLORS[q],
          pointRadius: 2,
          fill: false,
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        spanGaps: true,
        interaction: { mode: "index", intersect: false },
        scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { beginAtZero: true, title: { display: true, text: "s per document" } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  });
})();
