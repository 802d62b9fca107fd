import { TsdpoError } from "../errors.js";

// What `tsdpo iterate` asks of a judge. A judge either scores one completion (higher is better) or compares two
// completions of the same prompt. Both may be async, so a judge can call out to a service; the iterate loop
// records every answer as it arrives, so a resumed run never asks twice.

export interface Judge {
  /** The spec it was made from ("afinn", "module:./j.mjs", "reward:models/rm", ...), for logs and the run folder. */
  readonly name: string;
  /** A score for one completion; higher is better. Must be a finite number. */
  score?(prompt: string, completion: string): Promise<number>;
  /**
   * How strongly `a` is preferred to `b`, as P(a ≻ b) in [0, 1] (0.5 = tie). A judge with only `compare` is asked
   * about pairs; one with `score` is asked about single completions.
   */
  compare?(prompt: string, a: string, b: string): Promise<number>;
  /** Extra per-call facts worth recording (an LLM judge's agreement between the two orders, ...). */
  lastDetail?(): Record<string, number | string | boolean> | null;
  /** Frees what the judge holds (a model, a worker). */
  close?(): Promise<void> | void;
}

/** Options every judge constructor may read: the backend choice and the file:line of the config that named it. */
export interface JudgeContext {
  /** Where the judge spec came from, for error messages ("run.json: judge"). */
  where: string;
  /** Directory that relative paths in the spec are resolved against (the config file's folder). */
  baseDir: string;
  /** The backend name the run uses ("js" | "native"). */
  backend?: string;
}

/** Runs a judge's construction so that its errors name where its spec came from ("run.json: judge: models/rm: ..."). */
export function located<T>(ctx: JudgeContext, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TsdpoError) throw new TsdpoError(e.kind, `${ctx.where}: ${e.message}`);
    throw e;
  }
}
