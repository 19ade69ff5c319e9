/**
 * Normalisation kernels of the fused WebGPU engine, computing exactly the
 * functions of `model/layers.ts` and their gradients, one module each:
 * BatchNorm (`batch_norm.ts`), LayerNorm (`layer_norm.ts`) and weight
 * standardisation (`weight_std.ts`), on the shared column reductions of
 * `norm_reduce.ts`. Every dispatch binds at most 8 storage buffers
 * (WebGPU's default limit).
 *
 * @module
 */
export * from "./batch_norm.ts";
export * from "./layer_norm.ts";
export * from "./weight_std.ts";
