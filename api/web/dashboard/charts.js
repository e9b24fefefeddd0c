// The metrics panel: sagaMetrics' figures, step table and remote warehouse commands, and two uPlot charts (the library is served
// from /vendor): sagas completed, failed and compensated per minute (sagaActivity), and each step's
// p50 and p95 duration. Lines differ by colour, dash, width and marker, and bars by fill as well as by
// colour. Colours come from the stylesheet,
// so they follow its light or dark scheme. The panel stays hidden while sagaMetrics fails.
import { graphql } from "./graphql.js";
import { $, count, duration, element, time, words } from "./dom.js";

const METRICS = `query ($since: DateTime!, $until: DateTime!) {
  sagaMetrics(since: $since, until: $until) {
    started completed failed needsAttention completionRate averageDurationMs p95DurationMs
    compensations timeouts
    steps { name attempts succeeded failed timedOut averageDurationMs p50DurationMs p95DurationMs }
    warehouseCommands {
      warehouseCode type sent outcomes { outcome count }
      latencyMsAverage latencyMsMax lastLatencyMs lastResponse lastAt
    }
  }
}`;
const ACTIVITY = `query ($since: DateTime!, $until: DateTime!) {
  sagaActivity(since: $since, until: $until) { start completed failed compensated }
}`;
const EVERY = 5000;
const AFTER_ERROR = 60000;
const HEIGHT = 220;

let timer;
let activityChart;
let durationChart;

export async function pollMetrics() {
  const until = new Date();
  const since = new Date(until.getTime() - Number($("metrics-window").value) * 1000);
  const window = { since: since.toISOString(), until: until.toISOString() };
  let next = EVERY;
  try {
    const { sagaMetrics } = await graphql(METRICS, window);
    showPanel("shown");
    renderMetrics(sagaMetrics);
    drawDurations(sagaMetrics.steps);
    const { sagaActivity } = await graphql(ACTIVITY, window);
    drawActivity(sagaActivity);
  } catch {
    // A server without metrics (or one failing to compute them) leaves the panel out.
    showPanel("unavailable");
    next = AFTER_ERROR;
  }
  // One timer only: a poll started by changing the window replaces the one waiting.
  clearTimeout(timer);
  timer = setTimeout(pollMetrics, next);
}

// A change of the browser's scheme draws the charts afresh in its colours.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  activityChart?.destroy();
  durationChart?.destroy();
  activityChart = durationChart = null;
  pollMetrics();
});

function showPanel(state) {
  $("metrics").dataset.state = state;
  $("metrics").hidden = state !== "shown";
}

// completionRate is a ratio: completed over sagas that ended in the window.
const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)} %`);

function renderMetrics(m) {
  const figures = [
    ["Started", count(m.started)],
    ["Completed", count(m.completed)],
    ["Failed", count(m.failed)],
    ["Needs attention", count(m.needsAttention)],
    ["Completion rate", percent(m.completionRate)],
    ["Average duration", duration(m.averageDurationMs)],
    ["p95 duration", duration(m.p95DurationMs)],
    ["Compensations", count(m.compensations)],
    ["Timeouts", count(m.timeouts)],
  ];
  $("figures").replaceChildren(
    ...figures.map(([label, value]) => element("div", {}, element("dt", {}, label), element("dd", {}, value))),
  );
  $("step-metrics").replaceChildren(
    ...m.steps.map((s) =>
      element(
        "tr",
        {},
        element("th", { scope: "row" }, words(s.name)),
        ...[s.attempts, s.succeeded, s.failed, s.timedOut].map((n) => element("td", {}, count(n))),
        element("td", {}, duration(s.averageDurationMs)),
        element("td", {}, duration(s.p50DurationMs)),
        element("td", {}, duration(s.p95DurationMs)),
      ),
    ),
  );
  renderWarehouseCommands(m.warehouseCommands);
}

// Shown only when this server has sent a command to a remote warehouse: the built-in one sends none.
function renderWarehouseCommands(commands) {
  $("warehouse-commands").hidden = commands.length === 0;
  $("warehouse-command-rows").replaceChildren(
    ...commands.map((c) =>
      element(
        "tr",
        { "data-warehouse": c.warehouseCode, "data-type": c.type },
        element("th", { scope: "row" }, c.warehouseCode),
        element("td", {}, c.type),
        element("td", {}, count(c.sent)),
        element("td", {}, c.outcomes.map((o) => `${count(o.count)} ${o.outcome}`).join(", ")),
        element("td", {}, duration(c.latencyMsAverage)),
        element("td", {}, duration(c.latencyMsMax)),
        element("td", {}, duration(c.lastLatencyMs)),
        element("td", {}, c.lastResponse),
        element("td", {}, time(c.lastAt)),
      ),
    ),
  );
}

const width = (id) => Math.max(320, $(id).clientWidth);
const colour = (name) => getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();
// Axes in the page's ink, with faint grid lines.
const axis = (options) => ({
  stroke: colour("ink"),
  grid: { stroke: colour("line") },
  ticks: { stroke: colour("line") },
  ...options,
});

// Markers on the minutes where something happened (not on the many empty ones), however dense the line.
const eventful = (u, series) => u.data[series].flatMap((n, i) => (n > 0 ? [i] : []));
const marker = (size, fill, width = 1) => ({ size, fill, width, filter: eventful });

// Where the lines coincide (each failure compensates, say), a thin dotted line runs inside a wide dashed
// one, and the markers nest: a small dot (compensated) on a larger one (completed) inside a hollow ring
// (failed), so every series stays visible.
const activitySeries = () => [
  { label: "Completed", stroke: colour("chart-completed"), width: 2, points: marker(10, colour("chart-completed")) },
  { label: "Failed", stroke: colour("chart-failed"), width: 4, dash: [10, 5], points: marker(17, "transparent", 2) },
  { label: "Compensated", stroke: colour("chart-compensated"), width: 1.5, dash: [2, 3], points: marker(5, colour("chart-compensated")) },
];

function drawActivity(buckets) {
  const data = [
    buckets.map((b) => Date.parse(b.start) / 1000),
    buckets.map((b) => b.completed),
    buckets.map((b) => b.failed),
    buckets.map((b) => b.compensated),
  ];
  const total = data.slice(1).reduce((sum, series) => sum + series.reduce((a, b) => a + b, 0), 0);
  $("activity-chart").dataset.total = String(total);
  $("activity-summary").textContent =
    `${count(total)} outcomes and compensations over ${buckets.length} minutes: ` +
    ["completed", "failed", "compensated"]
      .map((name, i) => `${count(data[i + 1].reduce((a, b) => a + b, 0))} ${name}`)
      .join(", ");
  if (activityChart) return activityChart.setData(data);
  const series = activitySeries();
  // How each line is drawn, for whoever reads the page rather than the canvas.
  $("activity-chart").dataset.series = JSON.stringify(
    series.map((s) => ({ label: s.label, stroke: s.stroke, dash: s.dash ?? [], width: s.width, marker: s.points })),
  );
  activityChart = new uPlot(
    {
      width: width("activity-chart"),
      height: HEIGHT,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{ label: "Minute" }, ...series],
      // Whole sagas only on the count axis.
      axes: [
        axis({}),
        axis({ label: "sagas per minute", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }),
      ],
    },
    data,
    $("activity-chart"),
  );
}

function drawDurations(steps) {
  const measured = steps.filter((s) => s.p95DurationMs !== null);
  // Two lines per step name, so neighbours do not run into each other.
  const names = measured.map((s) => words(s.name).replace(" ", "\n"));
  const data = [
    measured.map((_, i) => i),
    measured.map((s) => s.p50DurationMs),
    measured.map((s) => s.p95DurationMs),
  ];
  $("durations-chart").dataset.steps = String(measured.length);
  if (durationChart) {
    durationChart.names = names;
    return durationChart.setData(data);
  }
  const bars = (align) => uPlot.paths.bars({ size: [0.35, 48], align });
  durationChart = new uPlot(
    {
      width: width("durations-chart"),
      height: HEIGHT,
      scales: {
        // One slot per step, whatever uPlot would make of the data's extent.
        x: { time: false, auto: false, range: (u) => [-0.6, u.data[0].length - 0.4] },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      series: [
        { label: "Step", value: (u, i) => u.names?.[i]?.replace("\n", " ") ?? "" },
        { label: "p50", fill: colour("chart-p50"), stroke: colour("chart-p50"), paths: bars(-1), points: { show: false }, value: (u, ms) => duration(ms) },
        { label: "p95", fill: colour("chart-p95-fill"), stroke: colour("chart-p95"), width: 2, dash: [4, 3], paths: bars(1), points: { show: false }, value: (u, ms) => duration(ms) },
      ],
      axes: [
        axis({ size: 48, splits: (u) => u.data[0], values: (u, splits) => splits.map((i) => u.names?.[i] ?? "") }),
        axis({ label: "duration", size: 64, values: (u, ticks) => ticks.map((ms) => duration(ms)) }),
      ],
    },
    data,
    $("durations-chart"),
  );
  durationChart.names = names;
  durationChart.redraw();
}
