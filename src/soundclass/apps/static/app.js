// soundclass demo page: upload or record a clip, POST it to /api/predict,
// show the top classes, the waveform and the mel spectrogram.
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

  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = URL.createObjectURL(blob);
  $("player").src = state.audioUrl;

  $("results").hidden = false;
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
