// Regenerates the derived fixtures in test/fixtures/data/ from the handmade ones there:
//   standard.jsonl.gz, standard.json.gz     gzip of the handmade files (mtime 0, so the bytes are reproducible)
//   standard.parquet                        the standard.jsonl rows + an extra "score" column, Snappy pages
//   standard-gzip.parquet                   the same rows with GZIP-compressed pages
//   conversational.parquet                  conversational.jsonl's rows as list<struct<role, content>> columns
//   renamed-prompt.parquet                  renamed-prompt.jsonl's rows (the prompt under "question", no "prompt")
//   sft.parquet                             sft.jsonl's rows: a "messages" column only (an SFT file, not pairs)
//
// hyparquet-writer is not a dependency of tsdpo, so install it somewhere temporary and point at it:
//   npm install --prefix /tmp/pqw hyparquet-writer
//   HYPARQUET_WRITER=/tmp/pqw/node_modules/hyparquet-writer/src/index.js node tools/make-data-fixtures.mjs
// (made with hyparquet-writer 0.17.0)

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { parquetWriter, rowsOf as rowsOfIn } from "./parquet-writer.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "data");
const parquetWriteBuffer = await parquetWriter();
const rowsOf = (name) => rowsOfIn(dir, name);

for (const name of ["standard.jsonl", "standard.json"]) {
  writeFileSync(join(dir, `${name}.gz`), gzipSync(readFileSync(join(dir, name)), { level: 9 }));
}

const standard = rowsOf("standard.jsonl");
const standardColumns = () => [
  { name: "prompt", data: standard.map((r) => r.prompt), type: "STRING" },
  { name: "chosen", data: standard.map((r) => r.chosen), type: "STRING" },
  { name: "rejected", data: standard.map((r) => r.rejected), type: "STRING" },
  { name: "score", data: standard.map((_, i) => i + 1), type: "INT32" },
];
writeFileSync(join(dir, "standard.parquet"), new Uint8Array(parquetWriteBuffer({ columnData: standardColumns() })));
writeFileSync(
  join(dir, "standard-gzip.parquet"),
  new Uint8Array(parquetWriteBuffer({ columnData: standardColumns(), codec: "GZIP", compressors: { GZIP: (b) => gzipSync(b) } })),
);

// list<struct<role: string, content: string>>, the layout Hugging Face datasets write for chat columns.
const messageList = (name) => [
  { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
  { name: "role", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  { name: "content", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
];
const conv = rowsOf("conversational.jsonl");
writeFileSync(
  join(dir, "conversational.parquet"),
  new Uint8Array(
    parquetWriteBuffer({
      columnData: ["prompt", "chosen", "rejected"].map((name) => ({ name, data: conv.map((r) => r[name]) })),
      schema: [{ name: "root", num_children: 3 }, ...messageList("prompt"), ...messageList("chosen"), ...messageList("rejected")],
    }),
  ),
);
const renamed = rowsOf("renamed-prompt.jsonl");
writeFileSync(
  join(dir, "renamed-prompt.parquet"),
  new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: "id", data: renamed.map((r) => r.id), type: "INT32" },
        ...["question", "answer_good", "answer_bad"].map((name) => ({ name, data: renamed.map((r) => r[name]), type: "STRING" })),
        ...["score_chosen", "score_rejected"].map((name) => ({ name, data: renamed.map((r) => r[name]), type: "DOUBLE" })),
      ],
    }),
  ),
);
const sft = rowsOf("sft.jsonl");
writeFileSync(
  join(dir, "sft.parquet"),
  new Uint8Array(
    parquetWriteBuffer({
      columnData: [{ name: "messages", data: sft.map((r) => r.messages) }],
      schema: [{ name: "root", num_children: 1 }, ...messageList("messages")],
    }),
  ),
);
console.log(`wrote fixtures in ${dir}`);
