// Chart helpers shared by the HTML report (inlined) and the aggregator's live page (served as
// /assets/charts.js): number formatting and event markers for uPlot. Defines `stCharts`.
var stCharts = (function () {
  "use strict";

  // Short numbers for axes and legends: 1.2k, 3.4M, 0.25.
  function short(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
    if (a >= 100) return String(Math.round(v));
    if (a >= 1) return String(+v.toFixed(2));
    return String(+v.toPrecision(2));
  }

  const eventColors = { load: "#1f77b4", posted: "#9467bd", run: "#333" };

  // A uPlot draw hook marking `events()` ({t, kind, text}, sorted by t) as dashed vertical
  // lines with their text written down the line, cut to `maxText` characters; a label that
  // would overlap the one before is left out (both pages list every event in full).
  function eventMarkers(events, maxText) {
    return function (u) {
      const r = uPlot.pxRatio;
      const { left, top, width, height } = u.bbox;
      const ctx = u.ctx;
      ctx.save();
      ctx.font = 11 * r + "px sans-serif";
      // uPlot leaves its own alignment set from drawing the axes.
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      let lastLabel = -Infinity;
      for (const e of events()) {
        const x = Math.round(u.valToPos(e.t, "x", true));
        if (x < left || x > left + width) continue;
        const color = eventColors[e.kind] || (e.kind.startsWith("bot_") ? "#8c564b" : "#555");
        ctx.strokeStyle = color;
        ctx.lineWidth = r;
        ctx.setLineDash([4 * r, 3 * r]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        if (x - lastLabel >= 14 * r) {
          const text = e.text.length > maxText ? e.text.slice(0, maxText - 1) + "…" : e.text;
          ctx.save();
          ctx.translate(x + 2 * r, top + 4 * r);
          ctx.rotate(Math.PI / 2);
          ctx.fillStyle = color;
          ctx.fillText(text, 0, 0);
          ctx.restore();
          lastLabel = x;
        }
      }
      ctx.restore();
    };
  }

  return { short: short, eventMarkers: eventMarkers };
})();
