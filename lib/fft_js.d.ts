/** Types of the parts of `npm:fft.js` (4.0.4) the mel front end uses. */
export default class FFT {
  /** A radix-4 FFT of `size` points (a power of two). */
  constructor(size: number);
  /** An interleaved complex array [re0, im0, re1, im1, ...] of 2·size numbers. */
  createComplexArray(): number[];
  /** FFT of real `input` into `output` (interleaved); fills bins 0 … size/2. */
  realTransform(output: number[], input: ArrayLike<number>): void;
  /** Fills the upper half of `output` from the lower half by symmetry. */
  completeSpectrum(output: number[]): void;
}
