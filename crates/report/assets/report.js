// Draws a scaletest report's charts with uPlot from the JSON in #data. The Rust side computed
// every number; this only lays out charts, formats axes and marks events. No network.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("data").textContent);
  const root = document.getElementById("charts");
  const plots = [];

  const short = stCharts.short;

  // x = 1/(1-p) as a percentile: 1 → 0%, 10 → 90%, 1000 → 99.9%.
  function percentile(x) {
    const digits = Math.max(0, Math.round(Math.log10(x)) - 2);
    return (100 * (1 - 1 / x)).toFixed(digits) + "%";
  }

  function decades(min, max) {
    const out = [];
    for (let d = Math.ceil(Math.log10(min) - 1e-9); Math.pow(10, d) <= max * (1 + 1e-9); d++) {
      out.push(Math.pow(10, d));
    }
    return out;
  }

  function xAxis(chart) {
    if (chart.spectrum) {
      return {
        label: "percentile",
        splits: (u, i, min, max) => decades(min, max),
        values: (u, splits) => splits.map(percentile),
      };
    }
    // Whole seconds: a short run should not get ticks at 0.5 s.
    const incrs = stCharts.secondIncrs;
    return data.time ? { incrs: incrs } : { label: "seconds since start", incrs: incrs };
  }

  function options(chart, width) {
    const unit = chart.unit;
    // A log axis needs at least one value above zero.
    const log = chart.log && chart.series.some((s) => s.values.some((v) => v > 0));
    const xValue = chart.spectrum
      ? (u, v) => (v == null ? "–" : percentile(v))
      : data.time
        ? (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(11, 19) + " UTC")
        : (u, v) => (v == null ? "–" : v + " s");
    const xLabel = chart.spectrum ? "Percentile" : data.time ? "Time" : "Second";
    return {
      width: width,
      height: 260,
      // Room for the last percentile label, which is centred on the right edge.
      padding: chart.spectrum ? [12, 28, 0, 0] : undefined,
      cursor: chart.spectrum ? {} : { sync: { key: "time" } },
      scales: {
        x: chart.spectrum
          ? { time: false, distr: 3, log: 10 }
          : { time: data.time },
        y: log ? { distr: 3, log: 10 } : { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      axes: [
        xAxis(chart),
        { label: unit, size: 56, values: (u, splits) => splits.map(short) },
      ],
      series: [{ label: xLabel, value: xValue }].concat(
        chart.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          dash: s.dash ? [6, 4] : undefined,
          spanGaps: !!s.join,
          points: { show: chart.x.length < 2 || !!s.join },
          value: (u, v) => (v == null ? "–" : short(v) + " " + unit),
        })),
      ),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      plugins: chart.spectrum || !data.events.length ? [] : [stCharts.eventMarkers(() => data.events, 48)],
    };
  }

  for (const chart of data.charts) {
    const section = document.createElement("section");
    section.className = "chart";
    const h = document.createElement("h3");
    h.textContent = chart.title;
    section.appendChild(h);
    root.appendChild(section);
    const values = [chart.x].concat(chart.series.map((s) => s.values));
    const width = Math.max(300, section.clientWidth);
    plots.push({ plot: new uPlot(options(chart, width), values, section), section: section });
  }

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      for (const p of plots) {
        p.plot.setSize({ width: Math.max(300, p.section.clientWidth), height: 260 });
      }
    });
  });
})();
