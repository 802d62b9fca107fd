// What the data tests share: scratch files in a per-file temporary folder, the TsdpoError matcher, and the
// (prompt, chosen, rejected) view of loaded pairs.

import { after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import type { PreferencePair } from "../src/data/types.js";

/** A writer of numbered scratch files in a fresh temporary folder (`.dir`), removed when the test file ends. */
export function scratchFiles(prefix: string): ((name: string, content: string | Uint8Array) => string) & { dir: string } {
  const dir = mkdtempSync(join(tmpdir(), `tsdpo-${prefix}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let counter = 0;
  const write = (name: string, content: string | Uint8Array): string => {
    const p = join(dir, `${counter++}-${name}`);
    writeFileSync(p, content);
    return p;
  };
  return Object.assign(write, { dir });
}

/** Asserts that `p` rejects with a TsdpoError of `kind` whose message equals (or matches) `message`; returns it. */
export async function rejectsWith(p: Promise<unknown>, message: string | RegExp, kind = "input"): Promise<TsdpoError> {
  let caught: TsdpoError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TsdpoError, `expected a TsdpoError, got ${String(e)}`);
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.equal(e.kind, kind);
    caught = e;
    return true;
  });
  return caught!;
}

export const triples = (pairs: readonly PreferencePair[]): string[][] => pairs.map((p) => [p.prompt, p.chosen, p.rejected]);
