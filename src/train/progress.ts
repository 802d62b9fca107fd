// Progress on a terminal: one redrawn line with a bar, the step, the latest loss and an ETA. Elsewhere (CI, a
// pipe, a log file): a plain line at every logged step, so logs stay readable.

export interface Progress {
  update(step: number, info: string): void;
  log(line: string): void;
  done(): void;
}

const fmtTime = (s: number): string => {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}:${String(sec).padStart(2, "0")}`;
};

export function createProgress(label: string, total: number, startStep: number, stream: NodeJS.WriteStream = process.stderr, quiet = false): Progress {
  const tty = stream.isTTY === true && !quiet;
  const t0 = Date.now();
  let drawn = false;
  const eta = (step: number): string => {
    const doneSteps = step - startStep;
    const elapsed = (Date.now() - t0) / 1000;
    return doneSteps > 0 ? fmtTime((elapsed / doneSteps) * (total - step)) : "?";
  };
  return {
    update(step, info) {
      if (quiet) return;
      if (tty) {
        const width = 24;
        const filled = Math.round((width * step) / Math.max(1, total));
        const bar = "█".repeat(filled) + "░".repeat(width - filled);
        stream.write(`\r${label} ${bar} ${step}/${total} ${info} ETA ${eta(step)}\x1b[K`);
        drawn = true;
      } else {
        stream.write(`${label} step ${step}/${total} ${info} eta ${eta(step)}\n`);
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
