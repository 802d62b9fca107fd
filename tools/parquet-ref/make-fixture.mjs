// Writes test/fixtures/data/arrow-rs-standard.parquet and arrow-rs-conversational.parquet: the rows of
// standard.jsonl and conversational.jsonl, written by arrow-rs (the Rust Arrow/Parquet implementation, here compiled to
// WebAssembly as the npm package parquet-wasm) with its defaults: dictionary-encoded pages, ZSTD compression,
// Parquet 2 data pages. tsdpo reads Parquet with hyparquet, and its other fixtures were written by hyparquet-writer,
// from the same family; these are from another writer.
//
//   cd tools/parquet-ref && npm install && node make-fixture.mjs
// (made with parquet-wasm 0.6.1 and apache-arrow 21)

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tableFromArrays, tableToIPC, vectorFromArray, Field, List, Struct, Utf8, makeTable } from "apache-arrow";
import pqModule from "parquet-wasm/node";

const pq = pqModule;

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test", "fixtures", "data");
const rowsOf = (name) =>
  readFileSync(join(dir, name), "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));

function write(table, name) {
  const props = new pq.WriterPropertiesBuilder()
    .setCompression(pq.Compression.ZSTD)
    .setDictionaryEnabled(true)
    .setWriterVersion(pq.WriterVersion.V2)
    .build();
  const bytes = pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, "stream")), props);
  writeFileSync(join(dir, name), bytes);
  console.log(`${name}: ${bytes.length} bytes, ${table.numRows} rows`);
}

const standard = rowsOf("standard.jsonl");
write(tableFromArrays({
  prompt: standard.map((r) => r.prompt), chosen: standard.map((r) => r.chosen), rejected: standard.map((r) => r.rejected),
}), "arrow-rs-standard.parquet");

const conv = rowsOf("conversational.jsonl");
const message = new Struct([new Field("role", new Utf8(), true), new Field("content", new Utf8(), true)]);
const messages = new List(new Field("item", message, true));
const col = (key) => vectorFromArray(conv.map((r) => r[key]), messages);
write(makeTable({ prompt: col("prompt").data[0], chosen: col("chosen").data[0], rejected: col("rejected").data[0] }),
  "arrow-rs-conversational.parquet");
