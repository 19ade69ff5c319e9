/**
 * The host's byte order, for code that views little-endian file data (WAV
 * samples, checkpoint tensors) in place instead of through a `DataView`.
 *
 * @module
 */

/** True when this machine stores multi-byte numbers little-endian. */
export const HOST_LITTLE_ENDIAN: boolean =
  new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
