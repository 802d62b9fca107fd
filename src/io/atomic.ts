// Crash-safe file writes, used by every writer in tsdpo (checkpoints, exports, run logs' snapshots).
//
// A reader must only ever see the old file or the complete new one: we write a temporary file in the same folder
// (rename is only atomic within one file system), fsync it so its bytes are on disk before its name is, rename it
// over the target, then fsync the folder so the rename itself survives a power cut.
//
// Fault injection (tests only): TSDPO_FAULT_INJECT="<path part>:<n>:<errno code>" makes the n-th write (counted from
// 1, per process) to a path containing <path part> fail half-way with that code, e.g.
// "optimizer.safetensors:2:ENOSPC" fills the disk while the second checkpoint's optimizer state is being written.
// It is how the tests prove that a failed write leaves the previous checkpoint intact and nothing half-written.
// The code SLOW instead stalls that write for 5 s and lets it succeed: a slow disk, during which a test can act.

import { appendFileSync, closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { TsdpoError } from "../errors.js";

export type AtomicData = Buffer | string | Uint8Array | readonly Uint8Array[];

function ioError(path: string, what: string, err: unknown): TsdpoError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const reason = err instanceof Error ? err.message : String(err);
  const hint =
    code === "ENOENT" ? "; create the folder first"
    : code === "EACCES" || code === "EPERM" ? "; check the folder's permissions"
    : code === "ENOSPC" ? "; free some disk space"
    : "";
  return new TsdpoError("io", `${path}: could not ${what} (${reason})${hint}`);
}

function writeAll(fd: number, chunk: Uint8Array, fault: NodeJS.ErrnoException | null): void {
  // writeSync may write fewer bytes than asked (large buffers, some file systems), so loop until done.
  let off = 0;
  if (fault) {
    // An injected failure writes half the bytes first, as a disk that fills up mid-file does.
    const half = chunk.byteLength >> 1;
    while (off < half) off += writeSync(fd, chunk, off, half - off);
    throw fault;
  }
  while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
}

let faultSpec: { part: string; n: number; code: string } | null | undefined;
const faultCounts = new Map<string, number>();

/** The injected failure for this write of `path`, if TSDPO_FAULT_INJECT asks for one (see the top of the file). */
function injectedFault(path: string): NodeJS.ErrnoException | null {
  if (faultSpec === undefined) {
    const m = /^(.+):(\d+):([A-Z]+)$/.exec(process.env.TSDPO_FAULT_INJECT ?? "");
    faultSpec = m ? { part: m[1]!, n: Number(m[2]), code: m[3]! } : null;
  }
  if (!faultSpec || !path.includes(faultSpec.part)) return null;
  const count = (faultCounts.get(faultSpec.part) ?? 0) + 1;
  faultCounts.set(faultSpec.part, count);
  if (count !== faultSpec.n) return null;
  if (faultSpec.code === "SLOW") {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5000); // a synchronous sleep, as a stalled write is
    return null;
  }
  const messages: Record<string, string> = { ENOSPC: "no space left on device", EIO: "i/o error", EDQUOT: "disk quota exceeded" };
  const err = new Error(`${faultSpec.code}: ${messages[faultSpec.code] ?? "injected failure"}, write (injected by TSDPO_FAULT_INJECT)`) as NodeJS.ErrnoException;
  err.code = faultSpec.code;
  return err;
}

/** Appends to a line-oriented log (metrics.jsonl). Not atomic by design: its readers skip a torn last line. */
export function appendFileLogged(path: string, text: string): void {
  try {
    const fault = injectedFault(path);
    if (fault) throw fault;
    appendFileSync(path, text);
  } catch (err) {
    throw ioError(path, "append to the file", err);
  }
}

/**
 * Appends `text` to a log and fsyncs it before returning, so that a kill -9 or a power cut afterwards cannot lose
 * it (the label studio's action log: an action counts as saved only once this has returned). The first append,
 * which creates the file, also fsyncs the folder so that the file's name is durable too. A write that fails (a full
 * disk) is cut off again, so the next append does not land on half a line; a crash during the write can leave a
 * torn last line, never a damaged earlier one, and readers drop a torn last line. One writer at a time (a lock).
 */
export function appendFileSynced(path: string, text: string): void {
  let fd: number;
  let created = false;
  try {
    try {
      fd = openSync(path, "ax", 0o644);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      fd = openSync(path, "a");
    }
  } catch (err) {
    throw ioError(path, "open the log for appending", err);
  }
  try {
    const size = fstatSync(fd).size;
    try {
      writeAll(fd, Buffer.from(text, "utf8"), injectedFault(path));
      fsyncSync(fd);
    } catch (err) {
      try {
        ftruncateSync(fd, size);
        fsyncSync(fd);
      } catch {
        // the original error is the one to report; a reader still drops a torn last line
      }
      throw err;
    }
  } catch (err) {
    throw ioError(path, "append to the log", err);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDir(dirname(path));
}

/** Writes `data` (one buffer, a string as UTF-8, or a list of chunks written back to back) to `path` atomically. */
export function writeFileAtomic(path: string, data: AtomicData): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  let fd: number;
  try {
    fd = openSync(tmp, "wx", 0o644);
  } catch (err) {
    throw ioError(path, `create a temporary file in ${dir}`, err);
  }
  try {
    try {
      const fault = injectedFault(path);
      if (typeof data === "string") writeAll(fd, Buffer.from(data, "utf8"), fault);
      else if (data instanceof Uint8Array) writeAll(fd, data, fault);
      else for (const chunk of data) writeAll(fd, chunk, fault);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temporary file may already be gone; the original error is the one to report
    }
    throw err instanceof TsdpoError ? err : ioError(path, "write the file", err);
  }
  fsyncDir(dir);
}

/** fsyncs a folder so renames and deletions in it are durable. Some platforms (Windows) cannot open a folder: skip. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, "r");
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // EISDIR/EINVAL on file systems that do not support syncing folders; nothing more we can do
  } finally {
    closeSync(fd);
  }
}
