// The preference-loss family. See losses.ts for the formulas, config.ts for the options, reduce.ts for turning
// per-token log-probs into the per-sequence inputs (and back), metrics.ts for TRL's metric names.

export * from "./config.js";
export * from "./losses.js";
export * from "./metrics.js";
export * from "./reduce.js";
export * from "./sft.js";
