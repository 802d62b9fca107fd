// One trainer per run folder. Two processes writing the same checkpoints, metrics.jsonl and final/ would interleave
// into a run that neither of them made, so a trainer holds `<run>/train.lock` (created with O_EXCL, so exactly one
// process can create it) for as long as it runs. The lock names its holder's pid and host; a lock whose process is
// gone (kill -9, a crash, a reboot) is taken over with a notice, so a dead run never blocks its own resume.
// acquireLock is the same lock for any file that one process at a time may own (tsdpo label's preference file).

import { hostname } from "node:os";
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { TsdpoError } from "../errors.js";

export const LOCK_FILE = "train.lock";

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** Whether a process with this pid exists on this machine (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, but belongs to someone else
  }
}

function readLock(path: string): LockInfo | null {
  try {
    const j = JSON.parse(readFileSync(path, "utf8")) as Partial<LockInfo>;
    return typeof j.pid === "number" ? { pid: j.pid, host: String(j.host ?? ""), started: String(j.started ?? "") } : null;
  } catch {
    return null; // being written this instant, or damaged: treated as held by an unknown process
  }
}

function tryCreate(path: string, what: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new TsdpoError("io", `${path}: cannot create the ${what}'s lock file (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the folder is writable`);
  }
  try {
    writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }) + "\n");
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Takes the run folder's lock, or refuses with the holder's pid. `say` gets the notice when a dead holder's lock is
 * taken over. Returns the function that releases it.
 */
export function acquireRunLock(runDir: string, say: (line: string) => void): () => void {
  return acquireLock(join(runDir, LOCK_FILE), {
    what: "run",
    busy: `${runDir}: another tsdpo train is using this run folder`,
    advice: "choose another output_dir",
    lostRace: `${runDir}: another tsdpo train took this run folder's lock first`,
  }, say);
}

/** The words of one kind of lock: what it guards (for messages about the file), and what to say to a second holder. */
export interface LockWords {
  /** "run": "the run's lock file". */
  what: string;
  /** The refusal's opening, e.g. "runs/a: another tsdpo train is using this run folder". */
  busy: string;
  /** What else the user can do, e.g. "choose another output_dir". */
  advice: string;
  /** The refusal when another process took a dead holder's lock in the same instant. */
  lostRace: string;
}

/**
 * Takes the lock file `path` (O_EXCL), or refuses with the holder's pid; a lock whose local holder is dead is taken
 * over with a notice to `say`. Returns the function that releases it.
 */
export function acquireLock(path: string, words: LockWords, say: (line: string) => void): () => void {
  if (!tryCreate(path, words.what)) {
    const holder = readLock(path);
    // Another host's pid means nothing here (a shared file system): only a local dead process is provably gone.
    const dead = holder !== null && holder.host === hostname() && holder.pid !== process.pid && !alive(holder.pid);
    if (!dead)
      throw new TsdpoError(
        "config",
        words.busy +
          (holder ? ` (pid ${holder.pid} on ${holder.host}, since ${holder.started})` : ` (${path} exists)`) +
          `; wait for it to finish or stop it, or ${words.advice}. If no such process exists, delete ${path}`,
      );
    say(`${path}: taking over the lock of pid ${holder!.pid}, which is no longer running (the ${words.what} was killed or crashed)`);
    unlinkSync(path);
    // Two processes may both have seen the dead lock; O_EXCL lets exactly one of them create the new one.
    if (!tryCreate(path, words.what)) throw new TsdpoError("config", `${words.lostRace} (${path})`);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      if (readLock(path)?.pid === process.pid) unlinkSync(path);
    } catch {
      // already gone: nothing to release
    }
  };
}
