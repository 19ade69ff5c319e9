/**
 * The browser entry of the `web/` page (bundled by `web/serve.ts` with
 * `deno bundle --platform browser`): loads an exported model package from
 * `model/` next to the page (or the folder named by `?model=`), picks the
 * tfjs backend (WebGPU when `navigator.gpu` gives an adapter, else cpu),
 * classifies a dropped or chosen WAV file or a microphone recording, and
 * draws the log-mel spectrogram and the class probabilities.
 *
 * For tests and scripts it sets `window.amaut`:
 *
 * - `ready`: resolves to `{ labels, backend, sampleRateHz, lengthSamples }`
 *   once the model is loaded (rejects with the load error);
 * - `classify(bytes, name?)`: classifies WAV bytes as a dropped file would
 *   (and shows the result), resolving to a {@linkcode Classification}.
 *
 * @module
 */
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import "./node_global.ts"; // before anything that may reach wav-decoder
import { selectBackend } from "../pipeline/backend.ts";
import type { Tf } from "../pipeline/types.ts";
import {
  fetchLoader,
  type LoadedModel,
  loadPackage,
} from "../lib/inference.ts";
import {
  type Classification,
  classifyWave,
  type Spectrogram,
  spectrogram,
  wavToMono,
} from "./classify.ts";

/** What `window.amaut.ready` resolves to. */
export interface PageInfo {
  readonly labels: readonly string[];
  readonly backend: string;
  readonly sampleRateHz: number;
  readonly lengthSamples: number | null;
}

/** The hook the page puts on `window`. */
export interface AmautPage {
  readonly ready: Promise<PageInfo>;
  classify(bytes: Uint8Array, name?: string): Promise<Classification>;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`The page lacks #${id}`);
  return el as T;
};

const statusEl = $<HTMLParagraphElement>("status");
const modelEl = $<HTMLElement>("model-info");
const dropEl = $<HTMLElement>("drop");
const fileEl = $<HTMLInputElement>("file");
const micEl = $<HTMLButtonElement>("mic");
const canvasEl = $<HTMLCanvasElement>("spectrogram");
const barsEl = $<HTMLOListElement>("bars");
const clipEl = $<HTMLElement>("clip");

function setStatus(text: string, kind: "info" | "error" = "info"): void {
  statusEl.textContent = text;
  statusEl.className = kind;
}

/** Removes the previous clip's bars, spectrogram and summary (before a new clip or error). */
function clearResult(): void {
  barsEl.replaceChildren();
  canvasEl.getContext("2d")?.clearRect(0, 0, canvasEl.width, canvasEl.height);
  delete canvasEl.dataset.frames;
  delete canvasEl.dataset.mels;
  clipEl.textContent = "";
}

/** The package folder: `?model=` (relative to the page) or `model/`. */
function modelUrl(): URL {
  const param = new URL(location.href).searchParams.get("model");
  const rel = param && param !== "" ? param : "model/";
  return new URL(rel.endsWith("/") ? rel : `${rel}/`, location.href);
}

async function start(): Promise<
  { tf: Tf; model: LoadedModel; info: PageInfo }
> {
  const { tf, backend } = await selectBackend("auto", {
    allowFallbackAdapter: true,
  });
  const url = modelUrl();
  setStatus(`Loading the model from ${url.pathname} (${backend.name})…`);
  const model = await loadPackage(tf, fetchLoader(url));
  const info: PageInfo = {
    labels: model.labels,
    backend: tf.getBackend(),
    sampleRateHz: model.sampleRateHz,
    lengthSamples: model.lengthSamples,
  };
  const secs = model.lengthSamples === null
    ? "any length"
    : `${(model.lengthSamples / model.sampleRateHz).toFixed(2)} s clips`;
  modelEl.textContent =
    `${model.config.name}: ${model.labels.length} classes (${
      model.labels.join(", ")
    }), ${model.sampleRateHz} Hz, ${secs}; backend ${info.backend} (${backend.reason})`;
  setStatus("Ready: drop a WAV file, choose one, or record.");
  dropEl.classList.remove("disabled");
  fileEl.disabled = false;
  micEl.disabled = false;
  return { tf, model, info };
}

const loaded = start();
loaded.catch((error: Error) => setStatus(error.message, "error"));

/** Viridis-like colour ramp, `t` in [0, 1]. */
function colour(t: number): [number, number, number] {
  const stops: [number, number, number][] = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f)) as [
    number,
    number,
    number,
  ];
}

function drawSpectrogram(s: Spectrogram): void {
  const ctx = canvasEl.getContext("2d");
  if (ctx === null) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of s.values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const span = hi > lo ? hi - lo : 1;
  const image = ctx.createImageData(s.frames, s.nMels);
  for (let m = 0; m < s.nMels; m++) {
    const y = s.nMels - 1 - m; // low bands at the bottom
    for (let t = 0; t < s.frames; t++) {
      const [r, g, b] = colour((s.values[m * s.frames + t] - lo) / span);
      const at = 4 * (y * s.frames + t);
      image.data[at] = r;
      image.data[at + 1] = g;
      image.data[at + 2] = b;
      image.data[at + 3] = 255;
    }
  }
  // Scale the tiny image up to the canvas without smoothing.
  const small = new OffscreenCanvas(s.frames, s.nMels);
  small.getContext("2d")?.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvasEl.width, canvasEl.height);
  ctx.drawImage(small, 0, 0, canvasEl.width, canvasEl.height);
  canvasEl.dataset.frames = String(s.frames);
  canvasEl.dataset.mels = String(s.nMels);
}

function drawBars(c: Classification): void {
  const order = c.labels.map((_, i) => i).sort((a, b) =>
    c.probabilities[b] - c.probabilities[a]
  );
  barsEl.replaceChildren(...order.map((i) => {
    const li = document.createElement("li");
    const p = c.probabilities[i];
    li.dataset.label = c.labels[i];
    li.dataset.probability = String(p);
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = c.labels[i];
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(2)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)} %`;
    li.append(name, track, value);
    return li;
  }));
}

/** Classifies one mono clip at the model's rate and shows the result. */
async function show(wave: Float32Array, what: string): Promise<Classification> {
  const { tf, model } = await loaded;
  setStatus(`Classifying ${what}…`);
  const result = await classifyWave(tf, model, wave);
  drawSpectrogram(await spectrogram(tf, model, wave));
  drawBars(result);
  clipEl.textContent = `${what}: ${wave.length} samples (${
    (wave.length / model.sampleRateHz).toFixed(2)
  } s) at ${model.sampleRateHz} Hz → ${result.top} (${
    (100 * Math.max(...result.probabilities)).toFixed(1)
  } %)`;
  setStatus(`Done: ${what} is most likely "${result.top}".`);
  return result;
}

async function classifyBytes(
  bytes: Uint8Array,
  name = "clip.wav",
): Promise<Classification> {
  clearResult(); // a new file's error never sits beside the last file's result
  try {
    const { model } = await loaded;
    return await show(wavToMono(bytes, name, model), `"${name}"`);
  } catch (error) {
    setStatus((error as Error).message, "error");
    throw error;
  }
}

async function classifyFile(file: File): Promise<void> {
  await classifyBytes(new Uint8Array(await file.arrayBuffer()), file.name)
    .catch(() => {}); // shown in the status line
}

dropEl.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropEl.classList.add("over");
});
dropEl.addEventListener("dragleave", () => dropEl.classList.remove("over"));
dropEl.addEventListener("drop", (event) => {
  event.preventDefault();
  dropEl.classList.remove("over");
  const file = event.dataTransfer?.files[0];
  if (file) void classifyFile(file);
});
fileEl.addEventListener("change", () => {
  const file = fileEl.files?.[0];
  if (file) void classifyFile(file);
  fileEl.value = "";
});

/** The AudioWorklet that forwards the first input channel to the page. */
const RECORDER =
  `registerProcessor("amaut-recorder", class extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) this.port.postMessage(ch.slice(0));
    return true;
  }
});`;

/** Records `samples` samples of the microphone at the AudioContext's rate. */
async function record(model: LoadedModel): Promise<Float32Array> {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: {
      channelCount: 1,
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
    },
  });
  const context = new AudioContext();
  try {
    if (context.sampleRate !== model.sampleRateHz) {
      throw new RangeError(
        `Cannot record: the microphone runs at ${context.sampleRate} Hz and the model expects ${model.sampleRateHz} Hz (AMAuT never resamples; use a WAV file at ${model.sampleRateHz} Hz instead)`,
      );
    }
    const samples = model.lengthSamples ?? model.sampleRateHz;
    const url = URL.createObjectURL(
      new Blob([RECORDER], { type: "text/javascript" }),
    );
    await context.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "amaut-recorder");
    const out = new Float32Array(samples);
    let at = 0;
    await new Promise<void>((resolve) => {
      node.port.onmessage = (event: MessageEvent<Float32Array>) => {
        const chunk = event.data.subarray(0, samples - at);
        out.set(chunk, at);
        at += chunk.length;
        if (at >= samples) resolve();
      };
      source.connect(node);
    });
    source.disconnect();
    node.disconnect();
    return out;
  } finally {
    stream.getTracks().forEach((t) => t.stop());
    await context.close();
  }
}

micEl.addEventListener("click", async () => {
  micEl.disabled = true;
  clearResult();
  try {
    const { model } = await loaded;
    const secs = (model.lengthSamples ?? model.sampleRateHz) /
      model.sampleRateHz;
    setStatus(`Recording ${secs.toFixed(2)} s…`);
    const wave = await record(model);
    await show(wave, "the recording");
  } catch (error) {
    setStatus((error as Error).message, "error");
  } finally {
    micEl.disabled = false;
  }
});

const ready = loaded.then((l) => l.info);
ready.catch(() => {}); // shown in the status line; callers still see the rejection
(globalThis as unknown as { amaut: AmautPage }).amaut = {
  ready,
  classify: classifyBytes,
};
