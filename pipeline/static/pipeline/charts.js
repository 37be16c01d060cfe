/* Charts of the admin's pipeline pages, drawn with the vendored Chart.js (vendor/chartjs).
 * Each page renders its figures with Django's json_script; this file only draws them. */
(function () {
  "use strict";

  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => (css.getPropertyValue(name) || "").trim() || fallback;
  const PRIMARY = color("--primary", "#417690");
  const QUIET = color("--body-quiet-color", "#666");
  const ERROR = "#c62828";
  const WARN = "#ef6c00";
  const OK = "#2e7d32";

  function data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // ISO timestamps -> "HH:MM" (same day) or "MM-DD HH:MM", in UTC like the rest of the admin.
  function timeLabels(isoList, stepSeconds) {
    return isoList.map((iso) => {
      const t = iso.replace("T", " ").slice(0, 16);
      return stepSeconds >= 3600 ? t.slice(5) : t.slice(11);
    });
  }

  function constant(value, length) {
    return value === null || value === undefined ? null : Array(length).fill(value);
  }

  function lineChart(canvasId, labels, datasets, yTitle, extra) {
    const canvas = document.getElementById(canvasId);
    if (!canvas) return null;
    return new Chart(canvas, {
      type: "line",
      data: { labels: labels, datasets: datasets.filter((d) => d.data !== null) },
      options: Object.assign(
        {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          spanGaps: false,
          interaction: { mode: "index", intersect: false },
          elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
          scales: {
            x: { ticks: { maxTicksLimit: 12, color: QUIET } },
            y: { beginAtZero: true, title: { display: true, text: yTitle }, ticks: { color: QUIET } },
          },
          plugins: { legend: { position: "bottom" } },
        },
        extra || {}
      ),
    });
  }

  function dashed(label, values, borderColor) {
    return { label: label, data: values, borderColor: borderColor, borderDash: [6, 4], pointRadius: 0, fill: false };
  }

  // --- the pipeline overview -------------------------------------------------------------------

  function drawOverview() {
    const figures = data("overview-data");
    if (!figures) return;
    const perMinute = figures.per_minute;
    const labels = perMinute.map((_, i) => `${perMinute.length - i} min ago`);
    new Chart(document.getElementById("throughput-chart"), {
      type: "bar",
      data: { labels: labels, datasets: [{ label: "documents embedded", data: perMinute, backgroundColor: PRIMARY }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { ticks: { maxTicksLimit: 7, color: QUIET } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { display: false } },
      },
    });
    const stages = figures.latencies.map((row) => row.stage);
    if (stages.length) {
      new Chart(document.getElementById("latency-chart"), {
        type: "bar",
        data: {
          labels: stages,
          datasets: [
            { label: "p50 (s)", data: figures.latencies.map((r) => r.p50), backgroundColor: PRIMARY },
            { label: "p95 (s)", data: figures.latencies.map((r) => r.p95), backgroundColor: WARN },
          ],
        },
        options: { animation: false, indexAxis: "y", responsive: true, maintainAspectRatio: false },
      });
    }
    const kinds = Object.keys(figures.errors);
    if (kinds.length) {
      new Chart(document.getElementById("errors-chart"), {
        type: "bar",
        data: {
          labels: kinds,
          datasets: [{ label: "failed attempts", data: kinds.map((k) => figures.errors[k]), backgroundColor: ERROR }],
        },
        options: { animation: false, indexAxis: "y", responsive: true, maintainAspectRatio: false },
      });
    }
  }

  // --- SLOs and capacity ------------------------------------------------------------------------

  function drawSlos() {
    const figures = data("slo-data");
    if (!figures) return;
    const s = figures.series;
    const labels = timeLabels(s.labels, s.step_seconds);
    const n = labels.length;
    lineChart(
      "chart-throughput",
      labels,
      [
        { label: "embedded / min", data: s.embedded_per_minute, borderColor: PRIMARY, fill: false },
        { label: "arrived / min", data: s.arrived_per_minute, borderColor: QUIET, fill: false },
        dashed("capacity / min", constant(s.capacity_per_minute, n), ERROR),
      ],
      "documents per minute"
    );
    lineChart(
      "chart-queue",
      labels,
      [
        { label: "pending documents", data: s.queue_depth, borderColor: PRIMARY, fill: false },
        dashed(`bound (capacity x ${figures.freshness_sla_seconds} s SLA)`, constant(s.queue_bound, n), ERROR),
      ],
      "documents"
    );
    lineChart(
      "chart-latency",
      labels,
      [
        { label: "p50", data: s.latency_seconds.p50, borderColor: PRIMARY },
        { label: "p95", data: s.latency_seconds.p95, borderColor: WARN },
        { label: "p99", data: s.latency_seconds.p99, borderColor: ERROR },
        dashed("SLO: 30 s", constant(30, n), QUIET),
      ],
      "seconds per document"
    );
    lineChart(
      "chart-failures",
      labels,
      [{ label: "documents failed", data: s.failed, borderColor: ERROR, backgroundColor: ERROR, fill: true }],
      "documents per step"
    );
    lineChart(
      "chart-freshness",
      labels,
      [
        { label: "embedded within the SLA (%)", data: s.freshness_percent, borderColor: OK },
        dashed("objective 99%", constant(99, n), QUIET),
      ],
      "percent",
      { scales: { x: { ticks: { maxTicksLimit: 12 } }, y: { min: 0, max: 100, title: { display: true, text: "percent" } } } }
    );
    const a = figures.arrivals;
    const peaks = a.peak_docs_per_second.concat(Array(Math.max(0, a.days.length - a.peak_docs_per_second.length)).fill(null));
    lineChart(
      "chart-arrivals",
      a.days,
      [
        { label: "busiest hour of the day (docs/s)", data: peaks, borderColor: PRIMARY, pointRadius: 3, showLine: true },
        dashed("trend and projection", a.trend_docs_per_second.length ? a.trend_docs_per_second : null, WARN),
        dashed("capacity", constant(a.capacity_docs_per_second, a.days.length), ERROR),
      ],
      "documents per second",
      { elements: { point: { radius: 3 } } }
    );
  }

  function draw() {
    drawOverview();
    drawSlos();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
