/* The Performance page's trend charts, drawn with the vendored Chart.js: per-stage p50/p95/p99,
 * throughput against capacity, and SLO compliance over the window (the panels of the Grafana
 * performance dashboard). The page leaves a chart's canvas out when it has no data. */
(function () {
  "use strict";
  const node = document.getElementById("performance-trend");
  if (!node || typeof Chart === "undefined") return;
  const trend = JSON.parse(node.textContent);
  const labels = trend.labels.map((iso) => iso.replace("T", " ").slice(trend.step_seconds >= 3600 ? 5 : 11, 16));
  const QUANTILE_COLORS = { p50: "#1565c0", p95: "#ef6c00", p99: "#c62828" };

  function line(canvasId, datasets, yTitle, yMax) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return;
    new Chart(canvas, {
      type: "line",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        spanGaps: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxTicksLimit: 8 } },
          y: { beginAtZero: true, max: yMax, title: { display: true, text: yTitle } },
        },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  Object.keys(trend.p95).forEach((stage) => {
    line(
      "trend-" + stage,
      ["p50", "p95", "p99"].map((q) => ({
        label: q,
        data: trend[q][stage],
        borderColor: QUANTILE_COLORS[q],
        pointRadius: 2,
        fill: false,
      })),
      "seconds per document"
    );
  });

  const throughput = [
    { label: "docs/s stored", data: trend.docs_per_second, borderColor: "#2e7d32", pointRadius: 2, fill: false },
  ];
  if (trend.capacity) {
    throughput.push({
      label: `capacity of ${trend.capacity.replicas} pod(s) x ${trend.capacity.workers} worker(s) (${trend.capacity.model})`,
      data: labels.map(() => trend.capacity.docs_per_second),
      borderColor: "#c62828",
      borderDash: [6, 4],
      pointRadius: 0,
      fill: false,
    });
  }
  line("trend-throughput", throughput, "documents per second");

  line(
    "trend-slos",
    [
      { label: "document_latency", data: trend.slos.document_latency, borderColor: "#1565c0", pointRadius: 2 },
      { label: "throughput_per_worker", data: trend.slos.throughput_per_worker, borderColor: "#2e7d32", pointRadius: 2 },
      {
        label: "held at 0.95 (latency)",
        data: labels.map(() => 0.95),
        borderColor: "#666",
        borderDash: [6, 4],
        pointRadius: 0,
      },
    ],
    "compliance (0..1)",
    1
  );
})();
