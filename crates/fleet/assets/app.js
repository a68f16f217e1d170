// The aggregator's live page: figures (availability and the thresholds' live verdicts among
// them), charts of the run with event markers (from its start, the last five minutes once it
// is longer), the bots table and the rate control. Plain JavaScript over the aggregator's JSON API and its
// Server-Sent Events stream; uPlot draws the charts. Nothing else is loaded.
(function () {
  "use strict";

  const SHOWN_S = 300; // the charts show the run, at most its last five minutes
  const KEPT_S = 600; // points older than ten minutes are dropped
  const MAX_EVENTS = 1000;
  const BOTS_PAGE = 50;
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "scaletest-token";

  const $ = (id) => document.getElementById(id);
  const points = []; // sorted by t, one per Unix second
  const events = []; // sorted by t
  let eventsChanged = true;
  let summary = null;

  // ---- formatting -------------------------------------------------------------------------

  const short = stCharts.short;
  const grouped = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
  const ms = (v) => (v == null ? "–" : short(v) + " ms");

  // A share in %, never rounded up to 100 (one failure in a million still shows).
  function percent(part, whole) {
    if (!(whole > 0)) return "–";
    if (part >= whole) return "100%";
    const p = (100 * part) / whole;
    const scale = p >= 99 ? 1000 : 10;
    return String(Math.floor(p * scale) / scale) + "%";
  }

  function duration(s) {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }

  // ---- points and events ------------------------------------------------------------------

  // A count in a point as a per-second rate.
  const rate = (n, p) => n / (p.seconds > 0 ? p.seconds : 1);
  const positive = (v) => (v > 0 ? v : null);

  function indexOf(t) {
    let lo = 0, hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid].t < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // Insert a point, or replace the one of the same second (a late revision).
  function upsert(p) {
    const i = indexOf(p.t);
    if (i < points.length && points[i].t === p.t) points[i] = p;
    else points.splice(i, 0, p);
  }

  // Insert an event once: the stream may repeat one that /api/events already gave after a
  // (re)connect.
  function addEvent(e) {
    let i = events.length;
    while (i > 0 && events[i - 1].t > e.t) i--;
    for (let j = i - 1; j >= 0 && events[j].t === e.t; j--) {
      if (events[j].kind === e.kind && events[j].text === e.text) return;
    }
    events.splice(i, 0, e);
    eventsChanged = true;
  }

  // Bound memory however long the page stays open.
  function trim() {
    const newest = points.length ? points[points.length - 1].t : 0;
    const cut = indexOf(newest - KEPT_S + 1);
    if (cut > 0) points.splice(0, cut);
    // Events are few; the newest thousand are kept for the list, whatever their age.
    const drop = events.length - MAX_EVENTS;
    if (drop > 0) {
      events.splice(0, drop);
      eventsChanged = true;
    }
  }

  // ---- charts -----------------------------------------------------------------------------

  const C = {
    offered: "#8c8c8c", sent: "#1f77b4", ok: "#2ca02c", failed: "#d62728",
    p50: "#2ca02c", p90: "#1f77b4", p99: "#ff7f0e", p999: "#d62728",
    cycle: ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"],
  };

  const answered = (p, v) => (p.responses > 0 ? positive(v) : null);

  const defs = [
    {
      title: "Requests per second", unit: "req/s",
      series: () => [
        { label: "offered", color: C.offered, dash: true, value: (p) => p.offered || null },
        { label: "sent", color: C.sent, value: (p) => rate(p.sent, p) },
        { label: "ok", color: C.ok, value: (p) => rate(p.ok, p) },
      ],
    },
    {
      title: "Latency (corrected)", unit: "ms", log: true,
      series: () => [
        { label: "p50", color: C.p50, value: (p) => answered(p, p.latency.p50) },
        { label: "p90", color: C.p90, value: (p) => answered(p, p.latency.p90) },
        { label: "p99", color: C.p99, value: (p) => answered(p, p.latency.p99) },
        { label: "p99.9", color: C.p999, value: (p) => answered(p, p.latency.p999) },
      ],
    },
    {
      title: "Failed requests per second", unit: "req/s",
      series: () => [{ label: "failed", color: C.failed, value: (p) => rate(p.failed, p) }],
    },
    {
      // One line per server version seen in the window: a rolling update shows v1 giving
      // way to v2.
      title: "Answers by server version", unit: "%",
      series: (win) => {
        const names = new Set();
        for (const p of win) for (const v in p.versions) names.add(v);
        return [...names].sort().map((name, i) => ({
          label: name,
          color: C.cycle[i % C.cycle.length],
          value: (p) => {
            let all = 0;
            for (const v in p.versions) all += p.versions[v];
            return all > 0 ? (100 * (p.versions[name] || 0)) / all : null;
          },
        }));
      },
    },
    {
      title: "Bots: reported vs live", unit: "bots",
      series: () => [
        { label: "reported", color: C.ok, value: (p) => p.reported },
        { label: "live", color: C.offered, dash: true, value: (p) => p.live },
      ],
    },
  ];

  // The run's first second (the summary's, else the oldest point's) and the newest one.
  function runStart() {
    if (summary) return Math.floor(summary.started_unix);
    return points.length ? points[0].t : null;
  }
  function nowS() {
    return summary ? summary.started_unix + summary.elapsed_s : Date.now() / 1000;
  }
  let drawnStart = null;

  const charts = defs.map((def) => {
    const section = document.createElement("section");
    section.className = "chart";
    const h = document.createElement("h3");
    h.textContent = def.title;
    section.appendChild(h);
    $("charts").appendChild(section);
    return { def: def, section: section, plot: null, key: "" };
  });

  function chartWidth(c) {
    return Math.max(300, c.section.clientWidth);
  }

  function makePlot(c, lines, log) {
    const unit = c.def.unit;
    return new uPlot(
      {
        width: chartWidth(c),
        height: 220,
        cursor: { sync: { key: "live" } },
        scales: {
          // From the run's start to the newest second, so a fresh run fills the width; once
          // the run is longer than five minutes, its last five, scrolling steadily.
          x: {
            time: true,
            range: (u, min, max) => {
              const end = max != null ? max : Math.floor(nowS());
              const start = runStart();
              const from = Math.max(start == null ? -Infinity : start, end - SHOWN_S + 1);
              return [Math.min(from, end - 1), end];
            },
          },
          y: log ? { distr: 3, log: 10 } : { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
        },
        axes: [{ incrs: stCharts.secondIncrs }, { label: unit, size: 56, values: (u, splits) => splits.map(short) }],
        series: [{ label: "Time" }].concat(
          lines.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 1.5,
            dash: s.dash ? [6, 4] : undefined,
            spanGaps: false,
            value: (u, v) => (v == null ? "–" : short(v) + " " + unit),
          })),
        ),
        plugins: [stCharts.eventMarkers(() => events, 40)],
      },
      [[]].concat(lines.map(() => [])),
      c.section,
    );
  }

  function drawCharts() {
    drawnStart = runStart();
    const newest = points.length ? points[points.length - 1].t : 0;
    const win = points.slice(indexOf(newest - SHOWN_S + 1));
    const xs = win.map((p) => p.t);
    for (const c of charts) {
      const lines = c.def.series(win);
      const data = lines.map((s) => win.map(s.value));
      // A log axis needs a value above zero; until then the chart is linear.
      const log = !!c.def.log && data.some((d) => d.some((v) => v > 0));
      const key = lines.map((s) => s.label).join("|") + (log ? "|log" : "");
      if (!c.plot || c.key !== key) {
        if (c.plot) c.plot.destroy();
        c.plot = makePlot(c, lines, log);
        c.key = key;
      }
      c.plot.setData([xs].concat(data));
    }
  }

  let drawPending = 0;
  function redraw() {
    if (!drawPending) {
      drawPending = setTimeout(() => {
        drawPending = 0;
        drawCharts();
        drawFigures();
        drawEventList();
      }, 50);
    }
  }

  window.addEventListener("resize", () => {
    for (const c of charts) if (c.plot) c.plot.setSize({ width: chartWidth(c), height: 220 });
  });

  // ---- figures and events list ------------------------------------------------------------

  function drawFigures() {
    const p = points[points.length - 1];
    if (p) {
      $("qps-now").textContent = String(Math.round(rate(p.ok, p)));
      $("p99-now").textContent = p.responses > 0 ? ms(p.latency.p99) : "–";
      $("failed-now").textContent = short(rate(p.failed, p));
    }
    const s = summary;
    if (!s) return;
    $("run-id").textContent = s.run_id;
    const spec = s.spec || {};
    $("target").textContent = spec.url || (spec.targets && spec.targets[0] && spec.targets[0].url) || "";
    $("offered-now").textContent = s.offered > 0 ? grouped(s.offered) : "–";
    $("p99-run").textContent = ms(s.p99_ms);
    // Successful answers over ended requests (errors counts every failed one).
    const ended = s.ok + s.errors;
    const avail = $("availability");
    avail.textContent = percent(s.ok, ended);
    avail.classList.toggle("bad", ended > 0 && s.ok < ended);
    drawVerdicts(s.verdicts || []);
    drawNames(s);
    $("errors").textContent = grouped(s.errors);
    $("requests").textContent = grouped(s.requests);
    $("bots-live").textContent = s.live;
    $("bots-stale").textContent = s.stale;
    $("bots-gone").textContent = s.gone;
    $("elapsed").textContent = duration(s.elapsed_s);
    const input = $("rate-input");
    if (!input.value && document.activeElement !== input && s.offered > 0) {
      input.value = Math.round(s.offered);
    }
  }

  // Named requests: the summary's rows (whole run, slowest p99 first); "now" is the change in
  // a name's answers between the last two summaries over the time between them (kept while
  // the page redraws with the same summary).
  const names = { elapsed: null, answered: new Map(), now: new Map() };
  function drawNames(s) {
    const rows = s.names || [];
    $("names-section").hidden = rows.length === 0;
    if (s.elapsed_s !== names.elapsed) {
      const dt = names.elapsed === null ? 0 : s.elapsed_s - names.elapsed;
      const now = new Map();
      for (const r of rows) {
        const was = names.answered.get(r.name);
        if (dt > 0 && was !== undefined) now.set(r.name, (r.responses - was) / dt);
      }
      names.elapsed = s.elapsed_s;
      names.answered = new Map(rows.map((r) => [r.name, r.responses]));
      names.now = now;
    }
    $("names").tBodies[0].replaceChildren(
      ...rows.map((r) => {
        const tr = document.createElement("tr");
        const now = names.now.get(r.name);
        tr.append(
          cell(r.name),
          cell(now === undefined ? "–" : short(now), "num"),
          cell(short(r.rate), "num"),
          cell(ms(r.p50_ms), "num"),
          cell(ms(r.p99_ms), "num"),
          cell(grouped(r.responses), "num"),
          cell(grouped(r.failed), r.failed > 0 ? "num bad" : "num"),
        );
        return tr;
      }),
    );
  }

  // The thresholds judged on the run so far: one chip each, green or red.
  function drawVerdicts(verdicts) {
    const box = $("verdicts");
    box.hidden = verdicts.length === 0;
    const failed = verdicts.filter((v) => !v.pass).length;
    $("verdicts-head").textContent = failed ? failed + " of " + verdicts.length + " thresholds failing" : "thresholds passing";
    $("verdicts-list").replaceChildren(
      ...verdicts.map((v) => {
        const chip = document.createElement("li");
        chip.className = "verdict " + (v.pass ? "pass" : "fail");
        chip.title = (v.pass ? "passing: " : "failing: ") + v.threshold + ", measured " + v.shown;
        const what = document.createElement("span");
        what.className = "threshold";
        what.textContent = (v.pass ? "✓ " : "✗ ") + v.threshold;
        const measured = document.createElement("span");
        measured.className = "measured";
        measured.textContent = v.shown;
        chip.append(what, " · ", measured);
        return chip;
      }),
    );
  }

  function drawEventList() {
    if (!eventsChanged) return;
    eventsChanged = false;
    const ol = $("events");
    const shown = events.slice(-100).reverse();
    ol.replaceChildren(
      ...shown.map((e) => {
        const li = document.createElement("li");
        const time = document.createElement("time");
        time.textContent = new Date(e.t * 1000).toLocaleTimeString();
        const kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = e.kind;
        li.append(time, " ", kind, " ", e.text);
        return li;
      }),
    );
  }

  // ---- status ------------------------------------------------------------------------------

  function setStatus(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }

  // ---- the stream and the polled resources --------------------------------------------------

  // The token, when the page has one: an aggregator off loopback wants it for reads too (a
  // header here; in the stream's URL, which cannot carry a header).
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  async function getJSON(url) {
    const headers = token() ? { Authorization: "Bearer " + token() } : {};
    const r = await fetch(url, { cache: "no-store", headers: headers });
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }

  // After a (re)connect: whatever the stream missed, including late revisions of the last
  // seconds we have.
  async function fillGaps() {
    const since = points.length ? points[points.length - 1].t - 30 : 0;
    try {
      const [series, evs] = await Promise.all([
        getJSON("/api/series?since=" + since),
        getJSON("/api/events"),
      ]);
      for (const p of series.points) upsert(p);
      events.length = 0;
      eventsChanged = true;
      for (const e of evs.events) addEvent(e);
      trim();
      redraw();
    } catch (e) {
      setStatus("error", "cannot read the series: " + e.message);
    }
  }

  let stream = null;
  function connect() {
    if (stream) stream.close();
    stream = new EventSource(
      "/api/stream" + (token() ? "?token=" + encodeURIComponent(token()) : ""),
    );
    stream.onopen = () => {
      const done = summary && summary.finished;
      setStatus(done ? "finished" : "live", done ? "finished" : "live");
      fillGaps();
    };
    const onPoint = (m) => {
      upsert(JSON.parse(m.data));
      trim();
      redraw();
    };
    stream.addEventListener("point", onPoint);
    stream.addEventListener("revision", onPoint);
    stream.addEventListener("event", (m) => {
      addEvent(JSON.parse(m.data));
      trim();
      redraw();
    });
    stream.onerror = () => {
      // EventSource retries by itself unless the server refused the stream outright.
      if (stream.readyState === EventSource.CLOSED) {
        setStatus("reconnecting", "disconnected: retrying");
        setTimeout(connect, 3000);
      } else {
        setStatus("reconnecting", "reconnecting…");
      }
    };
  }

  // ---- bots table ---------------------------------------------------------------------------

  const bots = { offset: 0, sort: "name", dir: "asc", total: 0, busy: false };

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  async function loadBots() {
    if (bots.busy) return;
    bots.busy = true;
    try {
      const q = new URLSearchParams({
        offset: bots.offset, limit: BOTS_PAGE, sort: bots.sort, dir: bots.dir,
      });
      const r = await getJSON("/api/bots?" + q);
      bots.total = r.total;
      if (bots.offset >= r.total && r.total > 0) {
        bots.offset = Math.floor((r.total - 1) / BOTS_PAGE) * BOTS_PAGE;
        bots.busy = false;
        return loadBots();
      }
      const now = summary ? summary.started_unix + summary.elapsed_s : Date.now() / 1000;
      $("bots").tBodies[0].replaceChildren(
        ...r.bots.map((b) => {
          const tr = document.createElement("tr");
          tr.className = "state-" + b.state;
          tr.append(
            cell(b.name),
            cell(b.state, "state"),
            cell(b.host),
            cell(grouped(b.responses), "num"),
            cell(grouped(b.errors), "num"),
            cell(short(b.rate), "num"),
            cell(short(Math.max(0, now - b.last_seen)) + " s ago", "num"),
            cell(short(b.skew_ms) + " ms", "num"),
          );
          return tr;
        }),
      );
      const last = Math.min(bots.offset + r.bots.length, r.total);
      $("bots-total").textContent = "(" + grouped(r.total) + ")";
      $("bots-page").textContent = r.total ? bots.offset + 1 + "–" + last + " of " + grouped(r.total) : "none yet";
      $("bots-prev").disabled = bots.offset === 0;
      $("bots-next").disabled = last >= r.total;
      for (const th of document.querySelectorAll("#bots th[data-sort]")) {
        th.dataset.dir = th.dataset.sort === bots.sort ? bots.dir : "";
      }
    } catch (e) {
      $("bots-page").textContent = "cannot read the bots: " + e.message;
    } finally {
      bots.busy = false;
    }
  }

  for (const th of document.querySelectorAll("#bots th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      if (bots.sort === key) bots.dir = bots.dir === "asc" ? "desc" : "asc";
      else [bots.sort, bots.dir] = [key, key === "name" || key === "state" ? "asc" : "desc"];
      bots.offset = 0;
      loadBots();
    });
  }
  $("bots-prev").addEventListener("click", () => {
    bots.offset = Math.max(0, bots.offset - BOTS_PAGE);
    loadBots();
  });
  $("bots-next").addEventListener("click", () => {
    if (bots.offset + BOTS_PAGE < bots.total) bots.offset += BOTS_PAGE;
    loadBots();
  });

  // ---- summary ------------------------------------------------------------------------------

  async function loadSummary() {
    try {
      summary = await getJSON("/api/summary");
      if (summary.finished) setStatus("finished", "finished");
      drawFigures();
      // The charts start at the run's start, known from the first summary.
      if (runStart() !== drawnStart) redraw();
    } catch (e) {
      setStatus("error", "cannot read the summary: " + e.message);
    }
  }

  // ---- rate control -------------------------------------------------------------------------

  // A token in the URL fragment (#token=...) is taken and removed from the address bar; one
  // in the query (?token=..., how an aggregator off loopback serves the page) is taken and
  // kept there, so that a reload still gets the page.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const query = new URLSearchParams(location.search);
  if (query.get("token")) sessionStorage.setItem(TOKEN_KEY, query.get("token"));
  $("token-input").value = sessionStorage.getItem(TOKEN_KEY) || "";

  $("rate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("rate-result");
    const rateValue = Number($("rate-input").value);
    const token = $("token-input").value.trim();
    out.className = "result";
    if (!(rateValue > 0)) {
      out.textContent = "the rate must be a number above 0";
      out.classList.add("bad");
      return;
    }
    if (!token) {
      out.textContent = "enter the token first";
      out.classList.add("bad");
      $("token-input").focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    out.textContent = "sending…";
    try {
      const r = await fetch("/api/load", {
        method: "PUT",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify({ rate: rateValue }),
      });
      let body = {};
      try {
        body = await r.json();
      } catch (_) {
        // Not JSON: the status says enough.
      }
      if (r.ok && body.ok) {
        out.textContent = "rate set to " + grouped(rateValue) + " req/s";
        out.classList.add("good");
      } else {
        out.textContent = (body.error || "HTTP " + r.status).split("\n")[0];
        out.classList.add("bad");
      }
    } catch (e) {
      out.textContent = "cannot reach the aggregator: " + e.message;
      out.classList.add("bad");
    }
  });

  // ---- start ----------------------------------------------------------------------------------

  // For tests and the console: the live state, read-only by convention.
  window.scaletest = {
    points: points,
    events: events,
    plots: () => charts.map((c) => c.plot),
    get summary() {
      return summary;
    },
  };

  loadSummary();
  loadBots();
  connect();
  setInterval(() => {
    loadSummary();
    loadBots();
  }, REFRESH_MS);
})();
