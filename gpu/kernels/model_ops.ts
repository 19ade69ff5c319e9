/**
 * Model-specific kernels of the fused WebGPU training engine: the parts of
 * AMAuT (`model/amaut.ts`) around the CNN and the transformer, each with its
 * gradient, one module each — the token assembly with dropout
 * (`tokens.ts`, mask in `dropout.ts`), the avg head's weight norm
 * (`weight_norm.ts`), the fce head's merge conv (`merge.ts`), the loss
 * (`cross_entropy.ts`) and the SGD update (`sgd.ts`).
 *
 * @module
 */
export * from "./cross_entropy.ts";
export { dropoutKeep } from "./dropout.ts";
export * from "./merge.ts";
export * from "./sgd.ts";
export * from "./tokens.ts";
export * from "./weight_norm.ts";
