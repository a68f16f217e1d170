// Chart helpers shared by the HTML report (inlined) and the aggregator's live page (served as
// /assets/charts.js): number formatting, event markers and whole-second time steps for uPlot.
// Defines `stCharts`.
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
  const colorOf = (e) => eventColors[e.kind] || (e.kind.startsWith("bot_") ? "#8c564b" : "#555");

  const FONT_PX = 11; // label text, written down its line
  const GAP_PX = 16; // least distance between two labels: the text's height and some air
  const HOVER_PX = 5; // how near a group's lines the cursor shows its texts

  // Cut `text` to `max` characters and to `room` pixels, with an ellipsis when cut.
  function fit(ctx, text, max, room) {
    let t = text.length > max ? text.slice(0, max - 1) + "…" : text;
    while (t.length > 1 && ctx.measureText(t).width > room) t = t.slice(0, -2) + "…";
    return t;
  }

  // A uPlot plugin marking `events()` ({t, kind, text}, sorted by t) as dashed vertical lines.
  // Markers closer than GAP_PX to the first of a group join it, so labels never overlap
  // (a rollout's dozen events in a few seconds become one label): a lone marker is labelled
  // with its text, a group with "k events · " and its first text; labels are cut to
  // `maxText` characters and to the plot's height. Hovering near a group's lines shows every
  // text in full on that chart. Both pages also list every event in full.
  //
  // After each draw, `u.stMarkers` holds the groups as drawn, in CSS pixels of the plot area:
  // {x0, x1 (first and last line), label: {text, left, top, width, height}, events}.
  function eventMarkers(events, maxText) {
    function draw(u) {
      const r = uPlot.pxRatio;
      const { left, top, width, height } = u.bbox;
      const ctx = u.ctx;
      ctx.save();
      ctx.font = FONT_PX * r + "px sans-serif";
      // uPlot leaves its own alignment set from drawing the axes.
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      const groups = [];
      for (const e of events()) {
        const x = Math.round(u.valToPos(e.t, "x", true));
        if (x < left || x > left + width) continue;
        const color = colorOf(e);
        ctx.strokeStyle = color;
        ctx.lineWidth = r;
        ctx.setLineDash([4 * r, 3 * r]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        const g = groups[groups.length - 1];
        if (g && x - g.x < GAP_PX * r) {
          g.events.push(e);
          g.last = x;
          if (g.color !== color) g.color = "#555";
        } else {
          groups.push({ x: x, last: x, color: color, events: [e] });
        }
      }
      ctx.setLineDash([]);
      const room = height - 8 * r;
      u.stMarkers = groups.map((g) => {
        const k = g.events.length;
        const text = fit(ctx, (k > 1 ? k + " events · " : "") + g.events[0].text, maxText, room);
        const long = ctx.measureText(text).width;
        ctx.save();
        ctx.translate(g.x + 2 * r, top + 4 * r);
        ctx.rotate(Math.PI / 2);
        // On a light backing: the group's other lines run under its label.
        ctx.fillStyle = "rgba(255,255,255,0.88)";
        ctx.fillRect(-r, -(FONT_PX + 1) * r, long + 2 * r, (FONT_PX + 2) * r);
        ctx.fillStyle = g.color;
        ctx.fillText(text, 0, 0);
        ctx.restore();
        // The label's box (backing included), in CSS pixels of the plot area.
        return {
          x0: (g.x - left) / r,
          x1: (g.last - left) / r,
          label: {
            text: text,
            left: (g.x - left) / r + 1,
            top: 3,
            width: FONT_PX + 2,
            height: long / r + 2,
          },
          events: g.events,
        };
      });
      ctx.restore();
      showTip(u);
    }

    // The full texts of the group under the mouse, in a box beside its lines (on the chart
    // the mouse is over, not on those whose cursors follow it).
    function showTip(u) {
      const tip = u.stTip;
      if (!tip) return;
      const x = u.stHover ? u.cursor.left : null;
      // The group nearest the cursor, if within HOVER_PX of its lines.
      let g = null, best = HOVER_PX;
      if (x != null && x >= 0) {
        for (const m of u.stMarkers || []) {
          const d = x < m.x0 ? m.x0 - x : x > m.x1 ? x - m.x1 : 0;
          if (d <= best) [g, best] = [m, d];
        }
      }
      if (!g) {
        tip.style.display = "none";
        tip.stGroup = null;
        return;
      }
      if (tip.stGroup !== g) {
        tip.stGroup = g;
        tip.replaceChildren(
          ...g.events.map((e) => {
            const line = document.createElement("div");
            line.style.color = colorOf(e);
            line.textContent = e.text;
            return line;
          }),
        );
      }
      tip.style.display = "block";
      const w = u.over.clientWidth;
      const right = g.x1 + 8;
      tip.style.left = right + tip.offsetWidth <= w ? right + "px" : Math.max(0, g.x0 - 8 - tip.offsetWidth) + "px";
    }

    return {
      hooks: {
        init: [(u) => {
          const tip = document.createElement("div");
          tip.className = "st-marker-tip";
          Object.assign(tip.style, {
            display: "none", position: "absolute", top: "4px", zIndex: 100,
            maxWidth: "60%", padding: "3px 6px", background: "rgba(255,255,255,0.95)",
            border: "1px solid #bbb", borderRadius: "3px", font: "12px/1.35 sans-serif",
            pointerEvents: "none", whiteSpace: "normal",
          });
          u.over.appendChild(tip);
          u.stTip = tip;
          u.over.addEventListener("mouseenter", () => (u.stHover = true));
          u.over.addEventListener("mouseleave", () => {
            u.stHover = false;
            showTip(u);
          });
        }],
        draw: [draw],
        setCursor: [showTip],
      },
    };
  }

  // Time-axis steps of whole seconds: a short run gets no ticks at 0.25 s.
  const secondIncrs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400];

  return { short: short, eventMarkers: eventMarkers, secondIncrs: secondIncrs };
})();
