/**
 * Worker side of the decode pool: reads and decodes WAV files off the main
 * thread and transfers the samples back (no copy).
 *
 * Messages in: `{ id, path }`. Out: `{ id, ok: true, sampleRateHz, channels,
 * pcm16?, bitsPerSample, encoding }` (`pcm16`: a 16-bit source's integer
 * samples, which the pool attaches to the channels again) or `{ id, ok: false, message, wav }` (`wav` is true for
 * a {@linkcode WavError}: a bad file rather than an I/O failure).
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { readWav, WavError } from "./wav.ts";

self.onmessage = async (event: MessageEvent<{ id: number; path: string }>) => {
  const { id, path } = event.data;
  try {
    const decoded = await readWav(path);
    self.postMessage(
      {
        id,
        ok: true,
        sampleRateHz: decoded.sampleRateHz,
        channels: decoded.channels,
        pcm16: decoded.pcm16,
        bitsPerSample: decoded.info.bitsPerSample,
        encoding: decoded.info.encoding,
      },
      [...decoded.channels, ...decoded.pcm16 ?? []].map((c) =>
        c.buffer as ArrayBuffer
      ),
    );
  } catch (error) {
    self.postMessage({
      id,
      ok: false,
      message: (error as Error).message,
      wav: error instanceof WavError,
      file: path,
    });
  }
};
