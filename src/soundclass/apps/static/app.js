// soundclass demo page: upload or record a clip, POST it to /api/predict,
// show the top classes, the waveform, the mel spectrogram and, for a clip
// longer than the model's window, the class probabilities over time.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,       // GET /api/info
  busy: false,      // a prediction request is running
  recorder: null,   // the running recording, see startRecording()
  starting: false,  // waiting for the microphone
  audioUrl: null,   // object URL of the clip in the player
};

// ------------------------------------------------------------------ messages

function setStatus(text) {
  $("status").textContent = text || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  setStatus("");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} kB`;
  return `${n} bytes`;
}

function formatSeconds(s) {
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

// ------------------------------------------------------------------ model info

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    if (!response.ok) throw new Error(info.error || response.statusText);
    state.info = info;
    $("model-info").textContent =
      `Model ${info.model} · ${info.n_classes} classes · listens at ${info.sr} Hz`;
    $("model-info").title = info.classes.join(", ");
    $("upload-limits").textContent =
      `Up to ${formatBytes(info.max_upload_bytes)}; the first ${info.max_seconds} s are analysed.`;
  } catch (err) {
    $("model-info").textContent = "Model information unavailable.";
    showError(`Cannot reach the server: ${err.message}`);
  }
}

// ------------------------------------------------------------------ prediction

async function analyse(blob, what) {
  if (state.busy) return;
  clearError();
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (blob.size > limit) {
    showError(`${what} is ${formatBytes(blob.size)}, larger than the limit of ${formatBytes(limit)}.`);
    return;
  }
  if (blob.size === 0) {
    showError(`${what} is empty.`);
    return;
  }
  state.busy = true;
  document.body.classList.add("busy");
  $("results").hidden = true; // never show an earlier clip's results next to this one's error
  setStatus(`Analysing ${what}…`);
  try {
    const response = await postClip(blob, what);
    let payload;
    try {
      payload = await response.json();
    } catch (_) {
      throw new Error(`the server answered ${response.status} ${response.statusText}`);
    }
    if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
    showResult(payload, blob, what);
    setStatus("");
  } catch (err) {
    showError(`Could not analyse ${what}: ${err.message}`);
  } finally {
    state.busy = false;
    document.body.classList.remove("busy");
  }
}

// POST the clip; a busy server (503) says when to come back (Retry-After): wait and retry a few times.
async function postClip(blob, what) {
  const maxAttempts = 4;
  for (let attempt = 1; ; attempt++) {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": blob.type || "application/octet-stream" },
      body: blob,
    });
    if (response.status !== 503 || attempt === maxAttempts) return response;
    const wait = Math.min(10, Math.max(1, Number(response.headers.get("Retry-After")) || 1));
    setStatus(`The server is busy; analysing ${what} again in ${wait} s…`);
    await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
  }
}

function showResult(result, blob, what) {
  const list = $("top5");
  list.replaceChildren();
  for (const { label, p } of result.top) {
    const pct = 100 * p;
    const row = document.createElement("li");
    row.className = "row";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(100, pct)).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = `${pct.toFixed(1)}%`;
    row.append(name, bar, value);
    list.append(row);
  }

  if (result.unknown) {  // top calibrated probability below the model's "unknown" threshold
    const row = document.createElement("li");
    row.className = "row unknown";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = "unknown";
    const why = document.createElement("span");
    why.className = "pct";
    why.textContent = `< ${(100 * result.unknown_threshold).toFixed(0)}%`;
    why.title = "no class is probable enough: the best guesses follow";
    row.append(name, why);
    list.prepend(row);
  }

  let info = `${what} · ${formatSeconds(result.duration)} · ${result.sr} Hz`;
  if (result.channels > 1) info += ` · ${result.channels} channels (mixed to mono)`;
  if (result.truncated) info += ` · first ${formatSeconds(result.analysed_seconds)} analysed`;
  $("clip-info").textContent = info;

  $("waveform").src = `data:image/png;base64,${result.waveform_png}`;
  $("mel").src = `data:image/png;base64,${result.mel_png}`;
  drawTimeline(result.timeline);

  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = URL.createObjectURL(blob);
  $("player").src = state.audioUrl;

  $("results").hidden = false;
}

// ------------------------------------------------------------------ timeline

const TIMELINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

// Class probabilities against time on the canvas under the mel picture (hidden
// for a clip of one window: result.timeline is null). At most six classes, those
// with the highest peak; the strip at the bottom is each window's top class.
function drawTimeline(timeline) {
  const figure = $("timeline-figure");
  if (!timeline || !timeline.starts || timeline.starts.length === 0) {
    figure.hidden = true;
    return;
  }
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const { starts, ends, proba, classes } = timeline;
  const n = starts.length;
  const w = canvas.width, h = canvas.height;
  const left = 34, right = 8, top = 8, bottom = 28;
  const t0 = starts[0], t1 = ends[n - 1];
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1e-9)) * (w - left - right);
  const y = (p) => top + (1 - p) * (h - top - bottom);
  const centres = starts.map((s, i) => 0.5 * (s + ends[i]));
  const peak = classes.map((_, c) => Math.max(...proba.map((row) => row[c])));
  const shown = classes.map((_, c) => c).sort((a, b) => peak[b] - peak[a]).slice(0, TIMELINE_COLOURS.length);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#666";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const p of [0, 0.5, 1]) {
    ctx.beginPath();
    ctx.moveTo(left, y(p));
    ctx.lineTo(w - right, y(p));
    ctx.stroke();
    ctx.fillText(p.toFixed(1), 4, y(p) + 4);
  }
  ctx.fillText(`${t0.toFixed(1)} s`, left, h - 4);
  const endLabel = `${t1.toFixed(1)} s`;
  ctx.fillText(endLabel, w - right - ctx.measureText(endLabel).width, h - 4);
  shown.forEach((c, rank) => {
    const colour = TIMELINE_COLOURS[rank];
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    centres.forEach((t, i) => (i === 0 ? ctx.moveTo(x(t), y(proba[i][c])) : ctx.lineTo(x(t), y(proba[i][c]))));
    ctx.stroke();
    for (let i = 0; i < n; i++) {
      const best = proba[i].indexOf(Math.max(...proba[i]));
      if (best !== c) continue;
      const a = i === 0 ? starts[0] : 0.5 * (centres[i - 1] + centres[i]);
      const b = i === n - 1 ? ends[n - 1] : 0.5 * (centres[i] + centres[i + 1]);
      ctx.fillStyle = colour;
      ctx.fillRect(x(a), h - bottom + 4, Math.max(1, x(b) - x(a)), 6);
    }
  });
  const caption = $("timeline-caption");
  caption.replaceChildren();
  caption.append(`Class probabilities over time (${n} windows of ${formatSeconds(timeline.window_seconds)}): `);
  shown.forEach((c, rank) => {
    const key = document.createElement("span");
    key.className = "timeline-key";
    key.style.color = TIMELINE_COLOURS[rank];
    key.textContent = `■ ${classes[c]} `;
    caption.append(key);
  });
  const segments = timeline.segments || [];
  if (segments.length > 0) {
    caption.append(` · segments: ${segments.slice(0, 8).map((s) =>
      `${s.label} ${s.start.toFixed(1)}–${s.end.toFixed(1)} s`).join(", ")}${segments.length > 8 ? ", …" : ""}`);
  }
  figure.hidden = false;
}

// ------------------------------------------------------------------ upload

function setupUpload() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    if (file) analyse(file, file.name);
    input.value = ""; // choosing the same file again analyses it again
  });

  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragover");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragover"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length === 0) {
      showError("Nothing to analyse: drop an audio file.");
      return;
    }
    if (files.length > 1) setStatus("Several files dropped: analysing the first one.");
    analyse(files[0], files[0].name);
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  // A file dropped beside the zone must not make the browser navigate away.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

// ------------------------------------------------------------------ recording

// A mono 16-bit PCM WAV file of float samples in [-1, 1].
function encodeWav(samples, sampleRate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const text = (offset, s) => {
    for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i));
  };
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);          // fmt chunk size
  view.setUint16(20, 1, true);           // PCM
  view.setUint16(22, 1, true);           // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true); // byte rate
  view.setUint16(32, 2, true);           // block align
  view.setUint16(34, 16, true);          // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

function concat(blocks) {
  const n = blocks.reduce((total, b) => total + b.length, 0);
  const out = new Float32Array(n);
  let at = 0;
  for (const b of blocks) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("Recording needs a secure page: open it at http://127.0.0.1 or http://localhost.");
    return;
  }
  if (typeof AudioWorkletNode === "undefined") {
    showError("This browser cannot record PCM audio (no AudioWorklet support).");
    return;
  }
  clearError();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    showError(`No microphone: ${err.message || err.name}`);
    return;
  }
  const context = new AudioContext();
  try {
    await context.resume(); // a context created after an await may start suspended
    await context.audioWorklet.addModule("/static/recorder-worklet.js");
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    context.close();
    showError(`Cannot start the recorder: ${err.message}`);
    return;
  }
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-recorder");
  const mute = context.createGain(); // keeps the graph pulled without playing anything
  mute.gain.value = 0;
  const blocks = [];
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  node.port.onmessage = (event) => {
    blocks.push(event.data.samples);
    if (event.data.type === "final") finished();
  };
  source.connect(node).connect(mute).connect(context.destination);

  const started = performance.now();
  const maxSeconds = state.info ? state.info.max_seconds : 30;
  const timer = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    $("record-time").textContent = `Recording… ${elapsed.toFixed(1)} s (stops by itself at ${maxSeconds} s)`;
    if (elapsed >= maxSeconds) stopRecording();
  }, 100);
  state.recorder = { stream, context, source, node, blocks, done, timer };
  const button = $("record-btn");
  button.textContent = "■ Stop";
  button.classList.add("recording");
  setStatus("Recording from the microphone…");
}

async function stopRecording() {
  const rec = state.recorder;
  if (!rec) return;
  state.recorder = null;
  clearInterval(rec.timer);
  rec.node.port.postMessage("flush");
  // The last partial block; give up on it after a second (e.g. a suspended context).
  await Promise.race([rec.done, new Promise((resolve) => setTimeout(resolve, 1000))]);
  rec.source.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  const sampleRate = rec.context.sampleRate;
  await rec.context.close();
  const button = $("record-btn");
  button.textContent = "● Record";
  button.classList.remove("recording");
  const samples = concat(rec.blocks);
  $("record-time").textContent = `Recorded ${formatSeconds(samples.length / sampleRate)} at ${sampleRate} Hz.`;
  analyse(encodeWav(samples, Math.round(sampleRate)), "the recording");
}

function setupRecorder() {
  $("record-btn").addEventListener("click", async () => {
    if (state.recorder) {
      stopRecording();
    } else if (!state.starting) {
      state.starting = true;
      try {
        await startRecording();
      } finally {
        state.starting = false;
      }
    }
  });
}

// ------------------------------------------------------------------ start

setupUpload();
setupRecorder();
loadInfo();
