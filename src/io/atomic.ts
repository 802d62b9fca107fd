// Crash-safe file writes, used by every writer in tsdpo (checkpoints, exports, run logs' snapshots).
//
// A reader must only ever see the old file or the complete new one: we write a temporary file in the same folder
// (rename is only atomic within one file system), fsync it so its bytes are on disk before its name is, rename it
// over the target, then fsync the folder so the rename itself survives a power cut.

import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
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

function writeAll(fd: number, chunk: Uint8Array): void {
  // writeSync may write fewer bytes than asked (large buffers, some file systems), so loop until done.
  let off = 0;
  while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
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
      if (typeof data === "string") writeAll(fd, Buffer.from(data, "utf8"));
      else if (data instanceof Uint8Array) writeAll(fd, data);
      else for (const chunk of data) writeAll(fd, chunk);
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
