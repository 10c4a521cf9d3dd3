// The live preview page: polls /api/state, fetches each camera's newest frame when there is a
// new one, draws everything on canvases, and reports what it drew to /api/rendered once a second.
// Everything about the rig (cameras, body parts, edges, channels, phases) comes from /api/layout.
"use strict";

const params = new URLSearchParams(window.location.search);
// Polls of the state per second (the page shows at most this many updates a second).
const TARGET_HZ = Math.min(60, Math.max(1, Number(params.get("hz")) || 20));
const RETRY_MS = 500;
const REPORT_INTERVAL_MS = 1000;
const TRACE_COLOURS = { force: "#4aa3f0", emg: "#e0a040", other: "#9aa3ad" };
const TRAJECTORY_COLOUR = "#3fb96f";
const SIDE_VIEW_MARGIN_MM = 60;

const clientId = makeClientId();
const startedMs = performance.now();

let layout = null;
let serverId = null;
let lastState = null;
let connected = false;

// Per camera: its tile and what was drawn in it.
const tiles = new Map();

// What the page has rendered, reported to the server (tests and the benchmark read it).
const counters = {
  polls: 0,
  newStates: 0,
  lastVersion: -1,
  framesDrawn: {},
  skeletonsDrawn: {},
  tracesDrawn: 0,
  sideViewPoints: 0,
  sideViewsDrawn: 0,
  errors: 0,
  lastError: "",
  phasesSeen: new Set(),
  // Moving averages (ms) of the time a poll waits for the state and spends drawing it.
  fetchMs: 0,
  renderMs: 0,
};
const window1s = { at: performance.now(), newStates: 0, polls: 0, frames: {} };
let rates = { updatesPerS: 0, pollsPerS: 0, framesPerS: {} };

function makeClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  return "page-" + Math.random().toString(16).slice(2) + Date.now().toString(16);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function setConnected(up) {
  if (up === connected) {
    return; // touching the page when nothing changed makes the browser lay it out again
  }
  connected = up;
  const element = document.getElementById("connection");
  element.textContent = up ? "live" : "no connection – retrying";
  element.className = "connection " + (up ? "up" : "down");
}

function noteError(error) {
  counters.errors += 1;
  counters.lastError = String(error);
}

// --- layout -----------------------------------------------------------------------------------

async function loadLayout() {
  const response = await fetch("/api/layout", { cache: "no-store" });
  if (!response.ok) {
    throw new Error("layout: HTTP " + response.status);
  }
  layout = await response.json();
  if (layout.server_id !== serverId) {
    // Another preview (a restart): count what is drawn from this one afresh.
    counters.framesDrawn = {};
    counters.skeletonsDrawn = {};
    counters.lastVersion = -1;
    traceRing.generation = -1;
    traceRing.needWhole = true;
  }
  serverId = layout.server_id;
  buildPage();
}

function buildPage() {
  const cameras = document.getElementById("cameras");
  cameras.replaceChildren();
  tiles.clear();
  for (const camera of layout.cameras) {
    ensureTile(camera.name, camera.width, camera.height);
  }
  const steps = document.getElementById("phase-steps");
  steps.replaceChildren();
  for (const phase of layout.phases) {
    const item = document.createElement("li");
    item.textContent = phase.replace("_", "-");
    item.dataset.phase = phase;
    steps.appendChild(item);
  }
  document.getElementById("trace-window").textContent = "last " + layout.trace_window_s + " s";
  sideViewKey = null;
  tracesEventCount = -1;
}

function ensureTile(name, width, height) {
  let tile = tiles.get(name);
  if (tile) {
    return tile;
  }
  const element = document.createElement("div");
  element.className = "camera";
  element.dataset.camera = name;
  const header = document.createElement("header");
  const title = document.createElement("span");
  title.className = "name";
  title.textContent = name;
  const info = document.createElement("span");
  info.className = "counters";
  const counterSpans = ["frames", "dropped", "shown"].map((name) => {
    const span = document.createElement("span");
    span.className = name;
    info.appendChild(span);
    return span;
  });
  header.append(title, info);
  const canvas = document.createElement("canvas");
  canvas.width = width || 640;
  canvas.height = height || 480;
  element.append(header, canvas);
  document.getElementById("cameras").appendChild(element);
  tile = {
    name,
    element,
    info,
    counterSpans,
    canvas,
    context: canvas.getContext("2d"),
    bitmap: null,
    bitmapSeq: -1,
    bitmapTrigger: -1,
    pose: null,
    loading: false,
    drawnOnce: false,
    counterText: ["", "", ""],
  };
  tiles.set(name, tile);
  counters.framesDrawn[name] = counters.framesDrawn[name] || 0;
  counters.skeletonsDrawn[name] = counters.skeletonsDrawn[name] || 0;
  return tile;
}

// --- the poll loop ----------------------------------------------------------------------------

// Polls start on a steady beat, up to MAX_IN_FLIGHT at once: the round trip to the preview
// (slow on a loaded machine) overlaps with drawing instead of adding to it.
const MAX_IN_FLIGHT = 2;
let inFlight = 0;
let layoutLoading = false;
let retryAfterMs = 0;

function tick() {
  const now = performance.now();
  if (layout === null) {
    if (!layoutLoading && now >= retryAfterMs) {
      layoutLoading = true;
      loadLayout()
        .catch((error) => {
          noteError(error);
          setConnected(false);
          retryAfterMs = performance.now() + RETRY_MS;
        })
        .finally(() => {
          layoutLoading = false;
        });
    }
    return;
  }
  if (inFlight < MAX_IN_FLIGHT) {
    pollOnce();
  }
}

async function pollOnce() {
  inFlight += 1;
  const began = performance.now();
  try {
    const from = traceRing.needWhole ? -1 : traceRing.lastBin;
    const response = await fetch("/api/state?trace_from=" + from, { cache: "no-store" });
    if (!response.ok) {
      throw new Error("state: HTTP " + response.status);
    }
    const state = await response.json();
    const fetched = performance.now();
    counters.fetchMs += 0.1 * (fetched - began - counters.fetchMs);
    if (layout === null) {
      return;
    }
    if (state.server_id !== serverId) {
      // The preview restarted (perhaps with another rig config): start over.
      layout = null;
      return;
    }
    counters.polls += 1;
    window1s.polls += 1;
    setConnected(true);
    if (state.version < counters.lastVersion) {
      return; // overtaken by a newer answer
    }
    if (state.version === counters.lastVersion) {
      // Nothing new arrived (between trials): only the clocks move.
      renderTrial(state);
      return;
    }
    counters.lastVersion = state.version;
    counters.newStates += 1;
    window1s.newStates += 1;
    const tracesChanged = mergeTraces(state.traces);
    lastState = state;
    render(state, tracesChanged);
    counters.renderMs += 0.1 * (performance.now() - fetched - counters.renderMs);
  } catch (error) {
    noteError(error);
    setConnected(false);
    layout = null;
    retryAfterMs = performance.now() + RETRY_MS;
  } finally {
    inFlight -= 1;
  }
}

function render(state, tracesChanged) {
  renderTrial(state);
  renderPhase(state.jump.phase);
  for (const [name, camera] of Object.entries(state.cameras)) {
    const tile = ensureTile(name, camera.width, camera.height);
    renderCameraCounters(tile, camera, state);
    if (camera.frame_seq > tile.bitmapSeq && !tile.loading && camera.frame_seq > 0) {
      fetchFrame(tile);
    }
    if (!tile.drawnOnce) {
      drawTile(tile, camera); // the placeholder; frames are drawn as they arrive
    }
  }
  // The side view changes only with a new 3D pose.
  const poseKey = state.pose3d ? state.pose3d.trigger_index : -1;
  if (poseKey !== sideViewKey || state.trajectory.length !== sideViewTrajectory) {
    sideViewKey = poseKey;
    sideViewTrajectory = state.trajectory.length;
    drawSideView(state);
  }
  const eventCount = state.jump.events.length;
  if (tracesChanged || eventCount !== tracesEventCount) {
    tracesEventCount = eventCount;
    drawTraces(state);
  }
  renderJump(state.jump);
  renderFeed(state.feed);
}

let sideViewKey = null;
let sideViewTrajectory = -1;
let tracesEventCount = -1;

async function fetchFrame(tile) {
  tile.loading = true;
  try {
    const response = await fetch("/frame/" + encodeURIComponent(tile.name) + ".jpg", {
      cache: "no-store",
    });
    if (!response.ok) {
      return;
    }
    const seq = Number(response.headers.get("X-Frame-Seq"));
    const trigger = Number(response.headers.get("X-Trigger-Index"));
    const pose = JSON.parse(response.headers.get("X-Pose") || "null");
    const bitmap = await createImageBitmap(await response.blob());
    if (tile.bitmap) {
      tile.bitmap.close();
    }
    tile.bitmap = bitmap;
    tile.bitmapSeq = seq;
    tile.bitmapTrigger = trigger;
    tile.pose = pose;
    counters.framesDrawn[tile.name] += 1;
    window1s.frames[tile.name] = (window1s.frames[tile.name] || 0) + 1;
    if (lastState && lastState.cameras[tile.name]) {
      drawTile(tile, lastState.cameras[tile.name]);
    }
  } catch (error) {
    noteError(error);
  } finally {
    tile.loading = false;
  }
}

// --- cameras ----------------------------------------------------------------------------------

function renderCameraCounters(tile, camera, state) {
  const status = state.trial.status || {};
  const frames = status.frames ? status.frames[tile.name] : undefined;
  const dropped = status.dropped ? status.dropped[tile.name] : undefined;
  const fps = rates.framesPerS[tile.name] || 0;
  const texts = [
    " frames " + (frames === undefined ? "–" : String(frames)),
    " dropped " + (dropped === undefined ? "–" : String(dropped)),
    " shown " + fps.toFixed(0) + "/s",
  ];
  // Only what changed is touched: the page stays cheap to lay out.
  texts.forEach((text, i) => {
    if (tile.counterText[i] !== text) {
      tile.counterText[i] = text;
      tile.counterSpans[i].textContent = text;
    }
  });
  tile.counterSpans[1].classList.toggle("some", Boolean(dropped));
}

function drawTile(tile, camera) {
  tile.drawnOnce = true;
  const ctx = tile.context;
  const width = camera.width || tile.canvas.width;
  const height = camera.height || tile.canvas.height;
  if (tile.canvas.width !== width || tile.canvas.height !== height) {
    tile.canvas.width = width;
    tile.canvas.height = height;
  }
  if (!tile.bitmap) {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#8a919c";
    ctx.font = Math.round(height / 16) + "px sans-serif";
    ctx.fillText("waiting for frames…", width * 0.05, height * 0.1);
    return;
  }
  // The frame may have been shrunk for the page: it is stretched back to the camera's pixels,
  // which the 2D poses are in.
  ctx.drawImage(tile.bitmap, 0, 0, width, height);
  drawSkeleton(tile, width);
}

function likelihoodColour(likelihood) {
  const threshold = layout.min_likelihood;
  const share = threshold < 1 ? (likelihood - threshold) / (1 - threshold) : 1;
  const hue = Math.round(120 * Math.min(1, Math.max(0, share)));
  return "hsl(" + hue + ", 90%, 55%)";
}

// The 2D pose that came with the frame (the nearest the server had) over the frame.
function drawSkeleton(tile, width) {
  const pose = tile.pose;
  if (!pose || !layout) {
    return;
  }
  const points = pose.points;
  const shown = points.map(
    (p) => p[0] !== null && p[1] !== null && p[2] !== null && p[2] >= layout.min_likelihood,
  );
  const ctx = tile.context;
  const lineWidth = Math.max(1.5, width / 320);
  ctx.lineWidth = lineWidth;
  ctx.strokeStyle = "rgba(255, 255, 255, 0.75)";
  let edges = 0;
  for (const [a, b] of layout.edges) {
    if (a < points.length && b < points.length && shown[a] && shown[b]) {
      ctx.beginPath();
      ctx.moveTo(points[a][0], points[a][1]);
      ctx.lineTo(points[b][0], points[b][1]);
      ctx.stroke();
      edges += 1;
    }
  }
  let dots = 0;
  const radius = Math.max(2.5, width / 160);
  for (let i = 0; i < points.length; i += 1) {
    if (!shown[i]) {
      continue;
    }
    ctx.beginPath();
    ctx.arc(points[i][0], points[i][1], radius, 0, 2 * Math.PI);
    ctx.fillStyle = likelihoodColour(points[i][2]);
    ctx.fill();
    dots += 1;
  }
  if (dots > 0 && edges > 0) {
    counters.skeletonsDrawn[tile.name] += 1;
  }
}

// --- trial, phase, jump -----------------------------------------------------------------------

function setText(id, text) {
  const element = document.getElementById(id);
  const value = String(text);
  if (element.textContent !== value) {
    element.textContent = value;
  }
}

function renderTrial(state) {
  const status = state.trial.status || {};
  setText("trial-id", state.trial.trial_id || "–");
  setText("trial-state", status.state || "–");
  let elapsed = status.elapsed_s;
  if (typeof elapsed === "number" && status.state === "running" && state.trial.status_age_s) {
    // Status arrives a few times a second; the clock runs on between them.
    elapsed += state.trial.status_age_s;
  }
  setText("trial-elapsed", typeof elapsed === "number" ? elapsed.toFixed(1) + " s" : "–");
  setText("trial-pulses", status.pulses ?? "–");
  setText("trial-samples", status.daq_samples ?? "–");
  setText("update-rate", rates.updatesPerS.toFixed(0) + "/s");
}

function renderPhase(phase) {
  const element = document.getElementById("phase");
  const text = phase ? phase.replace("_", "-") : "–";
  if (element.textContent !== text) {
    element.textContent = text;
    element.dataset.phase = phase || "";
    if (phase) {
      counters.phasesSeen.add(phase);
    }
  }
  for (const item of document.querySelectorAll("#phase-steps li")) {
    item.classList.toggle("current", item.dataset.phase === phase);
  }
}

// The jump's numbers that lead the table, in this order; every other value follows.
const HEADLINE = [
  /^(jump_)?height_mm$/,
  /^(jump_)?distance_mm$/,
  /^flight_time_s$/,
  /^takeoff_speed_mm_per_s$/,
  /^peak.*force_n$/,
];

function valueRank(key) {
  for (let i = 0; i < HEADLINE.length; i += 1) {
    if (HEADLINE[i].test(key)) {
      return i;
    }
  }
  return key.startsWith(layout.emg_onset_prefix) ? HEADLINE.length : HEADLINE.length + 1;
}

function valueLabel(key) {
  if (key.startsWith(layout.emg_onset_prefix)) {
    return "EMG onset " + key.slice(layout.emg_onset_prefix.length) + " (from take-off)";
  }
  const bare = key.replace(/_(mm_per_s|mm|s|n|deg)$/, "").replace(/_/g, " ");
  return bare.charAt(0).toUpperCase() + bare.slice(1);
}

function formatValue(key, value) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return "–";
  }
  if (typeof value !== "number") {
    return String(value);
  }
  if (key.startsWith(layout.emg_onset_prefix)) {
    // Seconds relative to take-off: negative is before it.
    return (value * 1000).toFixed(1) + " ms";
  }
  if (key.endsWith("_mm_per_s")) {
    return value.toFixed(0) + " mm/s";
  }
  if (key.endsWith("_mm")) {
    return value.toFixed(1) + " mm";
  }
  if (key.endsWith("_s")) {
    // Durations and onsets read best in ms; times in the trial (take-off at 1.930 s) in s.
    return Math.abs(value) < 1 ? (value * 1000).toFixed(1) + " ms" : value.toFixed(3) + " s";
  }
  if (key.endsWith("_n")) {
    return value.toFixed(3) + " N";
  }
  if (key.endsWith("_deg")) {
    return value.toFixed(1) + "°";
  }
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}

let shownJump = {};
let shownJumpKey = "";

function renderJump(jump) {
  setText("jump-count", jump.jumps_seen ? "(" + jump.jumps_seen + " this trial)" : "");
  const values = jump.last_jump;
  const key = JSON.stringify(values);
  if (key !== shownJumpKey) {
    shownJumpKey = key;
    const body = document.createElement("tbody");
    shownJump = {};
    if (!values) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.className = "hint";
      cell.textContent = "no jump yet";
    } else {
      const keys = Object.keys(values).sort((a, b) => valueRank(a) - valueRank(b));
      for (const name of keys) {
        const row = body.insertRow();
        if (valueRank(name) < HEADLINE.length) {
          row.className = "headline";
        }
        const label = valueLabel(name);
        const text = formatValue(name, values[name]);
        row.insertCell().textContent = label;
        const cell = row.insertCell();
        cell.className = "value";
        cell.textContent = text;
        shownJump[name] = text;
      }
    }
    document.getElementById("last-jump").replaceChildren(body);
  }
  const list = document.getElementById("events");
  const events = jump.events.slice(-8).reverse();
  const eventsKey = JSON.stringify(events.map((e) => [e.name, e.trigger_index]));
  if (list.dataset.key !== eventsKey) {
    list.dataset.key = eventsKey;
    list.replaceChildren();
    for (const event of events) {
      const item = document.createElement("li");
      const time = typeof event.t_s === "number" ? event.t_s.toFixed(3) + " s" : "–";
      item.textContent = event.name + " at " + time + " (pulse " + event.trigger_index + ")";
      list.appendChild(item);
    }
  }
}

function renderFeed(feed) {
  const total = Object.values(feed.messages).reduce((a, b) => a + b, 0);
  setText(
    "feed-info",
    "feed: " + total + " messages, " + feed.seq_gaps + " skipped by the feed (never by the" +
      " recording), " + feed.bad_messages + " unreadable",
  );
}

// --- 3D side view -----------------------------------------------------------------------------

function drawSideView(state) {
  const canvas = document.getElementById("side-view");
  const ctx = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  ctx.fillStyle = "#0c0d10";
  ctx.fillRect(0, 0, width, height);
  const gap = layout.gap_mm;
  const pose = state.pose3d;
  const xs = [-SIDE_VIEW_MARGIN_MM * 1.5, gap + SIDE_VIEW_MARGIN_MM * 1.5];
  const zs = [-20, 90];
  const seen = [];
  if (pose) {
    for (const p of pose.points) {
      if (p[0] !== null && p[2] !== null) {
        seen.push(p);
      }
    }
  }
  for (const p of seen) {
    xs.push(p[0]);
    zs.push(p[2]);
  }
  for (const t of state.trajectory) {
    xs.push(t[1]);
    zs.push(t[2]);
  }
  const xMin = Math.min(...xs) - 5;
  const xMax = Math.max(...xs) + 5;
  const zMin = Math.min(...zs) - 5;
  const zMax = Math.max(...zs) + 5;
  // One scale for both axes: the side view keeps the mouse's proportions.
  const scale = Math.min(width / (xMax - xMin), height / (zMax - zMin));
  const x0 = (width - scale * (xMax - xMin)) / 2;
  const toX = (x) => x0 + (x - xMin) * scale;
  const toY = (z) => height - (z - zMin) * scale;
  // The platforms: tops at z = 0, take-off for x <= 0, landing from x = gap on.
  ctx.fillStyle = "#3a3f48";
  ctx.fillRect(toX(xMin), toY(0), toX(0) - toX(xMin), toY(zMin) - toY(0));
  ctx.fillRect(toX(gap), toY(0), toX(xMax) - toX(gap), toY(zMin) - toY(0));
  ctx.fillStyle = "#8a919c";
  ctx.font = "11px sans-serif";
  ctx.fillText("take-off", toX(xMin) + 4, toY(0) + 14);
  ctx.fillText("landing", toX(gap) + 4, toY(0) + 14);
  ctx.fillText("gap " + gap + " mm", toX(gap / 2) - 24, toY(0) + 14);
  // The centre of the body over the last seconds.
  if (state.trajectory.length > 1) {
    ctx.strokeStyle = TRAJECTORY_COLOUR;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    state.trajectory.forEach((t, i) => {
      if (i === 0) {
        ctx.moveTo(toX(t[1]), toY(t[2]));
      } else {
        ctx.lineTo(toX(t[1]), toY(t[2]));
      }
    });
    ctx.stroke();
  }
  let drawn = 0;
  if (pose) {
    const points = pose.points;
    const ok = (p) => p && p[0] !== null && p[2] !== null;
    ctx.strokeStyle = "rgba(255, 255, 255, 0.8)";
    ctx.lineWidth = 2;
    for (const [a, b] of layout.edges) {
      if (ok(points[a]) && ok(points[b])) {
        ctx.beginPath();
        ctx.moveTo(toX(points[a][0]), toY(points[a][2]));
        ctx.lineTo(toX(points[b][0]), toY(points[b][2]));
        ctx.stroke();
      }
    }
    ctx.fillStyle = "#f2c14e";
    for (const p of points) {
      if (ok(p)) {
        ctx.beginPath();
        ctx.arc(toX(p[0]), toY(p[2]), 3, 0, 2 * Math.PI);
        ctx.fill();
        drawn += 1;
      }
    }
    const errors = pose.reprojection_error.filter((e) => e !== null);
    const median = errors.length ? errors.sort((a, b) => a - b)[Math.floor(errors.length / 2)] : null;
    document.getElementById("pose3d-info").textContent =
      "pulse " + pose.trigger_index + ", " + drawn + " of " + points.length + " parts" +
      (median === null ? "" : ", median reprojection error " + median.toFixed(1) + " px");
  }
  counters.sideViewPoints = drawn;
  counters.sideViewsDrawn += 1;
}

// --- traces -----------------------------------------------------------------------------------

// The page's copy of the trace window: per channel, min and max of each bin, in a ring indexed
// by bin number. Each poll brings the bins from the newest one held on.
const traceRing = {
  generation: -1,
  nBins: 0,
  lastBin: -1,
  samplesPerBin: 1,
  low: [],
  high: [],
  needWhole: true,
};

function resetTraceRing(traces) {
  traceRing.generation = traces.generation;
  traceRing.nBins = traces.n_bins;
  traceRing.samplesPerBin = traces.samples_per_bin;
  traceRing.lastBin = -1;
  traceRing.low = traces.channels.map(() => new Float64Array(traces.n_bins).fill(NaN));
  traceRing.high = traces.channels.map(() => new Float64Array(traces.n_bins).fill(NaN));
}

// Returns whether the window changed (new bins, or a new window).
function mergeTraces(traces) {
  const lastBefore = traceRing.lastBin;
  const generationBefore = traceRing.generation;
  const stale =
    traces.generation !== traceRing.generation ||
    traces.n_bins !== traceRing.nBins ||
    traces.channels.length !== traceRing.low.length ||
    traces.last_bin < traceRing.lastBin;
  if (stale) {
    resetTraceRing(traces);
    // Bins before this answer's first one were not sent: ask for the whole window next.
    traceRing.needWhole = traces.first_bin > Math.max(0, traces.last_bin - traces.n_bins + 1);
  } else if (traceRing.needWhole && traces.first_bin <= Math.max(0, traces.last_bin - traces.n_bins + 1)) {
    traceRing.needWhole = false;
  }
  const n = traceRing.nBins;
  if (traceRing.lastBin >= 0) {
    // Bins between the newest held and the first sent never came (lost blocks): empty them.
    for (let b = traceRing.lastBin + 1; b < traces.first_bin && b <= traceRing.lastBin + n; b += 1) {
      for (let c = 0; c < traceRing.low.length; c += 1) {
        traceRing.low[c][b % n] = NaN;
        traceRing.high[c][b % n] = NaN;
      }
    }
  }
  traces.channels.forEach((channel, c) => {
    for (let i = 0; i < channel.low.length; i += 1) {
      const slot = (traces.first_bin + i) % n;
      traceRing.low[c][slot] = channel.low[i] === null ? NaN : channel.low[i];
      traceRing.high[c][slot] = channel.high[i] === null ? NaN : channel.high[i];
    }
  });
  traceRing.lastBin = Math.max(traceRing.lastBin, traces.last_bin);
  const sent = traces.channels.length ? traces.channels[0].low.length : 0;
  return sent > 0 || traceRing.lastBin !== lastBefore || traceRing.generation !== generationBefore;
}

function drawTraces(state) {
  const canvas = document.getElementById("traces");
  const ctx = canvas.getContext("2d");
  const width = canvas.width;
  const channels = layout.channels;
  const rowHeight = 46;
  const height = Math.max(60, rowHeight * channels.length + 16);
  if (canvas.height !== height) {
    canvas.height = height;
  }
  ctx.fillStyle = "#0c0d10";
  ctx.fillRect(0, 0, width, height);
  const n = traceRing.nBins;
  const firstBin = traceRing.lastBin - n + 1;
  let withData = 0;
  channels.forEach((channel, row) => {
    const top = row * rowHeight + 2;
    const plotHeight = rowHeight - 8;
    ctx.strokeStyle = "#2f343d";
    ctx.strokeRect(0, top, width, plotHeight);
    const low = traceRing.low[row];
    const high = traceRing.high[row];
    let rangeLow = Infinity;
    let rangeHigh = -Infinity;
    if (low && n > 0 && traceRing.lastBin >= 0) {
      for (let b = Math.max(0, firstBin); b <= traceRing.lastBin; b += 1) {
        const slot = b % n;
        if (low[slot] < rangeLow) {
          rangeLow = low[slot];
        }
        if (high[slot] > rangeHigh) {
          rangeHigh = high[slot];
        }
      }
    }
    const seen = Number.isFinite(rangeLow) && Number.isFinite(rangeHigh);
    if (seen) {
      withData += 1;
      // Each channel scaled to its own range over the window.
      const span = rangeHigh > rangeLow ? rangeHigh - rangeLow : 1;
      const toY = (v) => top + plotHeight - 1 - ((v - rangeLow) / span) * (plotHeight - 2);
      const binWidth = width / n;
      ctx.strokeStyle = TRACE_COLOURS[channel.kind] || TRACE_COLOURS.other;
      ctx.lineWidth = Math.max(1, binWidth);
      ctx.beginPath();
      for (let b = Math.max(0, firstBin); b <= traceRing.lastBin; b += 1) {
        const slot = b % n;
        if (Number.isNaN(low[slot]) || Number.isNaN(high[slot])) {
          continue;
        }
        const x = (b - firstBin + 0.5) * binWidth;
        ctx.moveTo(x, toY(low[slot]) + 0.5);
        ctx.lineTo(x, toY(high[slot]) - 0.5);
      }
      ctx.stroke();
    }
    ctx.fillStyle = "#c9ced6";
    ctx.font = "11px sans-serif";
    const range = seen
      ? " " + rangeLow.toPrecision(3) + " … " + rangeHigh.toPrecision(3) + " " + channel.units
      : " (no data)";
    ctx.fillText(channel.name + range, 4, top + 12);
  });
  drawEventMarkers(ctx, state, width, rowHeight * channels.length);
  ctx.fillStyle = "#8a919c";
  ctx.font = "10px sans-serif";
  ctx.fillText("−" + layout.trace_window_s + " s", 2, height - 3);
  ctx.fillText("now", width - 22, height - 3);
  if (withData > 0) {
    counters.tracesDrawn += 1;
  }
}

function drawEventMarkers(ctx, state, width, plotsHeight) {
  const n = traceRing.nBins;
  if (!n || traceRing.lastBin < 0) {
    return;
  }
  const firstBin = traceRing.lastBin - n + 1;
  ctx.strokeStyle = "rgba(255, 255, 255, 0.6)";
  ctx.setLineDash([4, 3]);
  ctx.fillStyle = "#e6e8eb";
  let labelRow = 0;
  for (const event of state.jump.events) {
    if (typeof event.daq_sample_index !== "number") {
      continue;
    }
    const bin = event.daq_sample_index / traceRing.samplesPerBin;
    if (bin < firstBin || bin > traceRing.lastBin + 1) {
      continue;
    }
    const x = ((bin - firstBin) / n) * width;
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, plotsHeight);
    ctx.stroke();
    // Events close together (take-off, landing) get their labels on different lines.
    ctx.fillText(event.name, x + 2, plotsHeight - 4 - 12 * (labelRow % 3));
    labelRow += 1;
  }
  ctx.setLineDash([]);
}

// --- reporting --------------------------------------------------------------------------------

function updateRates() {
  const now = performance.now();
  const span = (now - window1s.at) / 1000;
  if (span <= 0) {
    return;
  }
  const framesPerS = {};
  for (const name of tiles.keys()) {
    framesPerS[name] = (window1s.frames[name] || 0) / span;
  }
  rates = {
    updatesPerS: window1s.newStates / span,
    pollsPerS: window1s.polls / span,
    framesPerS,
  };
  window1s.at = now;
  window1s.newStates = 0;
  window1s.polls = 0;
  window1s.frames = {};
}

function renderedReport() {
  const phase = document.getElementById("phase");
  let camerasWithFrames = 0;
  for (const name of tiles.keys()) {
    if (counters.framesDrawn[name] > 0) {
      camerasWithFrames += 1;
    }
  }
  return {
    client_id: clientId,
    server_id: serverId,
    page_uptime_s: (performance.now() - startedMs) / 1000,
    connected,
    target_hz: TARGET_HZ,
    polls: counters.polls,
    new_states: counters.newStates,
    updates_per_s: rates.updatesPerS,
    polls_per_s: rates.pollsPerS,
    fetch_ms: counters.fetchMs,
    render_ms: counters.renderMs,
    frames_per_s: rates.framesPerS,
    camera_tiles: tiles.size,
    cameras_with_frames: camerasWithFrames,
    frames_drawn: counters.framesDrawn,
    skeletons_drawn: counters.skeletonsDrawn,
    phase_shown: phase.dataset.phase || "",
    phase_text: phase.textContent,
    phases_seen: Array.from(counters.phasesSeen),
    trial_id_shown: document.getElementById("trial-id").textContent,
    jump_shown: shownJump,
    events_shown: document.querySelectorAll("#events li").length,
    side_view_points: counters.sideViewPoints,
    side_views_drawn: counters.sideViewsDrawn,
    traces_drawn: counters.tracesDrawn,
    errors: counters.errors,
    last_error: counters.lastError,
  };
}

async function reportLoop() {
  for (;;) {
    await sleep(REPORT_INTERVAL_MS);
    updateRates();
    try {
      await fetch("/api/rendered", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(renderedReport()),
        cache: "no-store",
      });
    } catch (error) {
      // The server is away; the poll loop shows it.
    }
  }
}

setInterval(tick, 1000 / TARGET_HZ);
tick();
reportLoop();
