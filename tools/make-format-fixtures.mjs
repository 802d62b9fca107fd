// Writes the derived fixtures in test/fixtures/data/formats/ from the handmade rows there, in the file formats the
// public datasets ship in:
//   chatbot-arena.parquet   chatbot-arena.jsonl's rows with lmsys/chatbot_arena_conversations' Parquet schema:
//                           question_id, model_a, model_b, winner, judge (string); conversation_a, conversation_b
//                           (list<struct<content: string, role: string>>); turn (int64); anony (bool); language
//                           (string); tstamp (double); openai_moderation (struct of categories: struct of 11 bools,
//                           category_scores: struct of 11 doubles, flagged: bool); toxic_chat_tag (struct of
//                           roberta-large: {flagged, probability}, t5-large: {flagged, score}); Snappy pages, as
//                           Hugging Face datasets (pyarrow) writes them
//   hh-rlhf.jsonl.gz        hh-rlhf.jsonl gzipped (mtime 0, so the bytes are reproducible), as Anthropic/hh-rlhf
//                           ships its splits (harmless-base/train.jsonl.gz, …)
// webgpt-comparisons.jsonl is used as written: openai/webgpt_comparisons ships one JSON Lines file.
//
// hyparquet-writer is not a dependency of tsdpo, so install it somewhere temporary and point at it:
//   npm install --prefix /tmp/pqw hyparquet-writer
//   HYPARQUET_WRITER=/tmp/pqw/node_modules/hyparquet-writer/src/index.js node tools/make-format-fixtures.mjs
// (made with hyparquet-writer 0.17.0)

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { parquetWriter, rowsOf as rowsOfIn } from "./parquet-writer.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "data", "formats");
const parquetWriteBuffer = await parquetWriter();
const rowsOf = (name) => rowsOfIn(dir, name);

writeFileSync(join(dir, "hh-rlhf.jsonl.gz"), gzipSync(readFileSync(join(dir, "hh-rlhf.jsonl")), { level: 9 }));

const arena = rowsOf("chatbot-arena.jsonl");
const CATEGORIES = Object.keys(arena[0].openai_moderation.categories);

const leaf = (name, type) =>
  type === "STRING"
    ? { name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" }
    : { name, type, repetition_type: "OPTIONAL" };
const group = (name, children) => [{ name, repetition_type: "OPTIONAL", num_children: children.length }, ...children.flat()];
// list<struct<content, role>>: the layout Hugging Face datasets write for chat columns (field order as on the card).
const messageList = (name) => [
  { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
  leaf("content", "STRING"),
  leaf("role", "STRING"),
];
// A group's children are counted as schema subtrees, so build each subtree as a list of elements.
const struct = (name, children) => [{ name, repetition_type: "OPTIONAL", num_children: children.length }, ...children.flat()];

const columns = [
  ["question_id", [leaf("question_id", "STRING")]],
  ["model_a", [leaf("model_a", "STRING")]],
  ["model_b", [leaf("model_b", "STRING")]],
  ["winner", [leaf("winner", "STRING")]],
  ["judge", [leaf("judge", "STRING")]],
  ["conversation_a", messageList("conversation_a")],
  ["conversation_b", messageList("conversation_b")],
  ["turn", [leaf("turn", "INT64")]],
  ["anony", [leaf("anony", "BOOLEAN")]],
  ["language", [leaf("language", "STRING")]],
  ["tstamp", [leaf("tstamp", "DOUBLE")]],
  [
    "openai_moderation",
    struct("openai_moderation", [
      group("categories", CATEGORIES.map((c) => [leaf(c, "BOOLEAN")])),
      group("category_scores", CATEGORIES.map((c) => [leaf(c, "DOUBLE")])),
      [leaf("flagged", "BOOLEAN")],
    ]),
  ],
  [
    "toxic_chat_tag",
    struct("toxic_chat_tag", [
      group("roberta-large", [[leaf("flagged", "BOOLEAN")], [leaf("probability", "DOUBLE")]]),
      group("t5-large", [[leaf("flagged", "BOOLEAN")], [leaf("score", "DOUBLE")]]),
    ]),
  ],
];
const value = (name, v) => (name === "turn" ? BigInt(v) : v);
writeFileSync(
  join(dir, "chatbot-arena.parquet"),
  new Uint8Array(
    parquetWriteBuffer({
      columnData: columns.map(([name]) => ({ name, data: arena.map((r) => value(name, r[name])) })),
      schema: [{ name: "schema", num_children: columns.length }, ...columns.flatMap(([, s]) => s)],
      codec: "SNAPPY",
    }),
  ),
);
console.log(`wrote fixtures in ${dir}`);
