// Progress on a terminal: one redrawn line with a bar, the step, the latest loss and an ETA. Elsewhere (CI, a
// pipe, a log file): a plain line at every logged step, so logs stay readable.

export interface Progress {
  /** `etaSeconds`: the caller's own estimate (train counts evaluations in it); default: time per step so far. */
  update(step: number, info: string, etaSeconds?: number): void;
  /** Work inside the current step (an evaluation's batches): redrawn on a terminal, at most every 10 s elsewhere. */
  status(info: string, etaSeconds?: number): void;
  log(line: string): void;
  done(): void;
}

export const fmtTime = (s: number): string => {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}:${String(sec).padStart(2, "0")}`;
};

/**
 * `plainEveryMs`: off a terminal, at most one line per this many milliseconds (and always the last step), for
 * progress that updates many times a second (evaluation batches); 0 = a line at every update.
 */
export function createProgress(
  label: string, total: number, startStep: number, stream: NodeJS.WriteStream = process.stderr, quiet = false, plainEveryMs = 0,
  unit = "step",
): Progress {
  const tty = stream.isTTY === true && !quiet;
  const t0 = Date.now();
  let drawn = false;
  let lastPlain = -Infinity;
  let current = startStep;
  let lastStatus = Date.now();
  const eta = (step: number): string => {
    const doneSteps = step - startStep;
    const elapsed = (Date.now() - t0) / 1000;
    return doneSteps > 0 ? fmtTime((elapsed / doneSteps) * (total - step)) : "?";
  };
  return {
    update(step, info, etaSeconds) {
      current = step;
      if (quiet) return;
      const left = etaSeconds !== undefined ? fmtTime(etaSeconds) : eta(step);
      if (tty) {
        const width = 24;
        const filled = Math.round((width * step) / Math.max(1, total));
        const bar = "█".repeat(filled) + "░".repeat(width - filled);
        stream.write(`\r${label} ${bar} ${step}/${total} ${info} ETA ${left}\x1b[K`);
        drawn = true;
      } else if (step === total || Date.now() - lastPlain >= plainEveryMs) {
        lastPlain = Date.now();
        stream.write(`${label} ${unit} ${step}/${total} ${info} eta ${left}\n`);
      }
    },
    status(info, etaSeconds) {
      if (quiet) return;
      const left = etaSeconds !== undefined ? fmtTime(etaSeconds) : eta(current);
      if (tty) {
        const width = 24;
        const filled = Math.round((width * current) / Math.max(1, total));
        stream.write(`\r${label} ${"█".repeat(filled)}${"░".repeat(width - filled)} ${current}/${total} ${info} ETA ${left}\x1b[K`);
        drawn = true;
      } else if (Date.now() - lastStatus >= 10_000) {
        lastStatus = Date.now();
        stream.write(`${label} ${unit} ${current}/${total} ${info} eta ${left}\n`);
      }
    },
    log(line) {
      if (quiet) return;
      if (tty && drawn) stream.write("\r\x1b[K");
      stream.write(line + "\n");
      drawn = false;
    },
    done() {
      if (tty && drawn) stream.write("\n");
    },
  };
}

/** What a training run's ETA is computed from: the work left, and the time measured so far per kind of work. */
export interface EtaInput {
  step: number;
  totalSteps: number;
  /** Training so far: seconds spent in optimizer steps, and how many. */
  trainSeconds: number;
  trainSteps: number;
  /** Evaluation so far: seconds, and pairs evaluated. */
  evalSeconds: number;
  evalPairs: number;
  /** Held-out pairs per evaluation (0: no evaluation), evaluation interval (0: only at the end), pairs per step. */
  evalSize: number;
  evalSteps: number;
  pairsPerStep: number;
  /** Pairs still to go in an evaluation under way. */
  evalPairsPending: number;
}

/** Evaluations still to come after `step`: every evalSteps-th step up to the last, and the last step itself. */
export function evalsAfter(step: number, totalSteps: number, evalSteps: number, evalSize: number): number {
  if (evalSize === 0 || step >= totalSteps) return 0;
  const E = evalSteps;
  return E > 0 ? Math.floor(totalSteps / E) - Math.floor(step / E) + (totalSteps % E !== 0 ? 1 : 0) : 1;
}

/**
 * Seconds left: steps × time per step, plus pairs still to evaluate × time per evaluated pair. Before the first
 * evaluation, a pair is priced at half a training pair: evaluation runs the policy and reference forwards (2
 * passes) where training also runs the backward (about 2 more). undefined before the first step.
 */
export function etaSeconds(o: EtaInput): number | undefined {
  if (o.trainSteps === 0) return undefined;
  const perStep = o.trainSeconds / o.trainSteps;
  const perEvalPair = o.evalPairs > 0 ? o.evalSeconds / o.evalPairs : perStep / o.pairsPerStep / 2;
  const evalPairsLeft = evalsAfter(o.step, o.totalSteps, o.evalSteps, o.evalSize) * o.evalSize + o.evalPairsPending;
  return (o.totalSteps - o.step) * perStep + evalPairsLeft * perEvalPair;
}
