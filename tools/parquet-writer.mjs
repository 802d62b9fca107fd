// What the Parquet fixture generators share: hyparquet-writer, which is not a dependency of tsdpo, loaded from the
// path in HYPARQUET_WRITER (see the generators' headers for how to install it), and JSON Lines rows read back.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** hyparquet-writer's parquetWriteBuffer; exits with the instructions when HYPARQUET_WRITER is not set. */
export async function parquetWriter() {
  const writerPath = process.env.HYPARQUET_WRITER;
  if (!writerPath) {
    console.error("set HYPARQUET_WRITER to hyparquet-writer's src/index.js (see the comment at the top of this file)");
    process.exit(1);
  }
  return (await import(pathToFileURL(writerPath).href)).parquetWriteBuffer;
}

/** The rows of a JSON Lines file in `dir`, blank lines skipped. */
export const rowsOf = (dir, name) =>
  readFileSync(join(dir, name), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));
