/**
 * 16-bit source samples attached to decoded audio. A channel decoded from
 * 16-bit PCM holds `v / 32768` for each integer sample `v`; the decoder can
 * attach those integers to the `Float32Array` itself, so that the fused
 * front end uploads 2 bytes a sample instead of 4 (a batch of 32 ten-second
 * 44.1-kHz clips: 28 MB instead of 56 MB) and converts them on the GPU.
 *
 * The attachment is a property of the array object (a symbol key): it goes
 * wherever the array goes unchanged (`mono_mix` hands a mono clip's channel
 * on as its waveform) and is lost with any copy. The samples are shared,
 * never written: the audio cache hands the same `Int16Array` to every read.
 * Only the scheduler decides when an attachment may still be trusted —
 * after a stage that might have written into the float array in place, it
 * is not (see `FrontEndContext.sourcesIntact`).
 *
 * @module
 */

/** The property key of the attached samples. */
const PCM16 = Symbol.for("amaut.pcm16");

/** A float channel with its 16-bit source samples attached. */
type Tagged = Float32Array & { [PCM16]?: Int16Array };

/**
 * Attaches a channel's 16-bit source samples to it.
 *
 * @param channel Float samples, `channel[i] === samples[i] / 32768`.
 * @param samples The integers it was decoded from (shared, not copied; never
 *   write to them afterwards).
 * @returns `channel`.
 * @throws {RangeError} When the lengths differ.
 */
export function attachPcm16(
  channel: Float32Array,
  samples: Int16Array,
): Float32Array {
  if (channel.length !== samples.length) {
    throw new RangeError(
      `Cannot attach ${samples.length} 16-bit samples to a channel of ${channel.length}: decode both from the same data`,
    );
  }
  Object.defineProperty(channel, PCM16, {
    value: samples,
    enumerable: false,
    configurable: true,
  });
  return channel;
}

/**
 * The 16-bit source samples attached to a channel, if any.
 *
 * @param channel A float channel.
 * @returns The samples (`channel[i] === samples[i] / 32768` when nothing
 *   wrote to `channel` since), or `undefined`.
 */
export function pcm16Of(channel: Float32Array): Int16Array | undefined {
  const samples = (channel as Tagged)[PCM16];
  return samples !== undefined && samples.length === channel.length
    ? samples
    : undefined;
}

/**
 * Channels-first 16-bit samples of interleaved ones (a copy per channel).
 *
 * @param samples Interleaved samples, `frames × channelCount`.
 * @param channelCount Channels.
 * @param frames Samples per channel.
 * @returns One `Int16Array` per channel.
 */
export function deinterleavePcm16(
  samples: Int16Array,
  channelCount: number,
  frames: number,
): Int16Array[] {
  if (channelCount === 1) return [samples.slice(0, frames)];
  const out: Int16Array[] = [];
  for (let c = 0; c < channelCount; c++) {
    const channel = new Int16Array(frames);
    let p = c;
    for (let i = 0; i < frames; i++) {
      channel[i] = samples[p];
      p += channelCount;
    }
    out.push(channel);
  }
  return out;
}

/**
 * Float samples of 16-bit ones, `v / 32768` (what the WAV decoder gives),
 * with the integers attached ({@linkcode attachPcm16}).
 *
 * @param samples 16-bit samples (attached, not copied).
 * @returns The float channel.
 */
export function floatOfPcm16(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = samples[i] / 32768;
  return attachPcm16(out, samples);
}
