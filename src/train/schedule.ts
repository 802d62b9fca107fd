// Learning-rate schedules as Hugging Face's get_scheduler defines them: linear warmup from 0 over `warmup` steps,
// then constant, linear decay to 0, or a half-cosine to 0 at `total` steps. `step` counts optimizer steps from 0
// (the rate used for the first update is lrAt(0), which is 0 under warmup, exactly as transformers does).

export type ScheduleType = "constant" | "linear" | "cosine";

export function lrAt(type: ScheduleType, peak: number, step: number, warmup: number, total: number): number {
  if (step < warmup) return (peak * step) / Math.max(1, warmup);
  switch (type) {
    case "constant":
      return peak;
    case "linear":
      return peak * Math.max(0, (total - step) / Math.max(1, total - warmup));
    case "cosine": {
      const progress = (step - warmup) / Math.max(1, total - warmup);
      return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
  }
}

/** Warmup steps from the config: explicit steps win over the ratio (ceil, as transformers). */
export function warmupSteps(warmupStepsOpt: number, warmupRatio: number, total: number): number {
  return warmupStepsOpt > 0 ? warmupStepsOpt : Math.ceil(total * warmupRatio);
}
