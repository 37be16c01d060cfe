/* The Performance page's trend chart (p95 per stage), drawn with the vendored Chart.js. */
(function () {
  "use strict";
  const node = document.getElementById("performance-trend");
  const canvas = document.getElementById("trend-chart");
  if (!node || !canvas || typeof Chart === "undefined") return;
  const trend = JSON.parse(node.textContent);
  const colors = { claim: "#6a1b9a", chunking: "#ef6c00", embedding: "#2e7d32", storage: "#1565c0", total: "#666" };
  new Chart(canvas, {
    type: "line",
    data: {
      labels: trend.labels.map((iso) => iso.replace("T", " ").slice(11, 16)),
      datasets: Object.keys(trend.p95).map((stage) => ({
        label: stage,
        data: trend.p95[stage],
        borderColor: colors[stage] || "#999",
        borderDash: stage === "total" ? [6, 4] : [],
        pointRadius: 2,
        fill: false,
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      spanGaps: true,
      scales: { y: { beginAtZero: true, title: { display: true, text: "p95 seconds per document" } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
})();
