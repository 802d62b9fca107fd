// CSV and TSV preference files (csv-parse): a header row names the fields, quoted cells may hold the delimiter, quotes
// and line breaks, every row is named by the physical line where it starts, empty cells are empty strings, and
// malformed rows and files give the file:line (and field) with what to do.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";


import { gzipSync } from "node:zlib";

import type { Tokenizer } from "../src/tokenizer/types.js";
import { loadPreferenceData, loadPreferences } from "../src/data/index.js";

import { fixture } from "./helpers.js";
import { rejectsWith, scratchFiles, triples } from "./data-helpers.js";

const tmpFile = scratchFiles("data-csv");

// quoted.csv: record 1 spans lines 2-3 (a quoted comma and line break), record 2 has doubled quotes, line 5 is blank.
const QUOTED = [
  ["Write a list: apples, pears", " apples,\npears", " no"],
  ['He said "hi". Reply.', " Hi!", " Go away."],
  ["Say hi.", " Hi!", " No."],
];

test("CSV and TSV (and their gzip, and CRLF line ends): header names the fields, quoted cells keep commas, quotes and line breaks", async () => {
  const csv = fixture("data", "quoted.csv");
  const tsv = fixture("data", "quoted.tsv");
  const cases: [string, string, string[][]][] = [
    [csv, "csv", QUOTED],
    [tsv, "tsv", [["Write a list:\tapples, pears", ...QUOTED[0]!.slice(1)], ...QUOTED.slice(1)]],
    [tmpFile("quoted.csv.gz", gzipSync(readFileSync(csv))), "csv", QUOTED],
    [tmpFile("quoted.tsv.gz", gzipSync(readFileSync(tsv))), "tsv", [["Write a list:\tapples, pears", ...QUOTED[0]!.slice(1)], ...QUOTED.slice(1)]],
    // CRLF: the line break inside the quoted cell is kept as written; the rows keep their lines.
    [tmpFile("crlf.csv", readFileSync(csv, "utf8").replace(/\n/g, "\r\n")), "csv", [["Write a list: apples, pears", " apples,\r\npears", " no"], ...QUOTED.slice(1)]],
    // A BOM (Excel's "CSV UTF-8") is not part of the first column's name.
    [tmpFile("bom.csv", "\ufeff" + readFileSync(csv, "utf8")), "csv", QUOTED],
  ];
  for (const [path, format, want] of cases) {
    const loaded = await loadPreferences(path);
    assert.equal(loaded.format, format, path);
    assert.deepEqual(triples(loaded.pairs), want, path);
    assert.equal(loaded.rows, 3);
    assert.deepEqual(loaded.pairs.map((p) => p.source.line), [2, 4, 6], path); // the line where each record starts
    assert.deepEqual(loaded.pairs.map((p) => p.source.index), [0, 1, 2]);
    assert.ok(loaded.pairs.every((p) => p.shape === "standard" && p.source.file === path));
  }
  // Renamed columns map as in JSON, and the loader for every command reads CSV too.
  const mapped = tmpFile("mapped.csv", "question,good,bad\nQ?, yes, no\n");
  assert.deepEqual(triples((await loadPreferences(mapped, { promptField: "question", chosenField: "good", rejectedField: "bad" })).pairs), [["Q?", " yes", " no"]]);
  const tok: Tokenizer = {
    vocabSize: 260, bosId: null, eosId: 2, addBos: false, stopIds: [], chatTemplate: null,
    encode: (s) => [...Buffer.from(s)].map((b) => b + 4), encodeWithSpecials: (s) => [...Buffer.from(s)].map((b) => b + 4),
    decode: (ids) => Buffer.from(ids.map((i) => i - 4)).toString(), idToToken: (id) => String(id),
  };
  const d = await loadPreferenceData(csv, tok);
  assert.deepEqual([...d.pairs[0]!.chosenIds], [...[...Buffer.from(" apples,\npears")].map((b) => b + 4), 2]);
  assert.equal(d.stats.format, "csv");
});

test("a bad CSV row gives file:line: field: reason (an empty cell, a wrong cell count), and skip_invalid skips it", async () => {
  // bad.csv: line 2 good; lines 3-4 one record with an empty chosen cell; line 5 has 4 cells; line 6 good.
  const path = fixture("data", "bad.csv");
  await rejectsWith(loadPreferences(path), `${path}:3: chosen: is an empty cell; an empty answer cannot be scored, so fill it in or remove the row`);
  const loaded = await loadPreferences(path, { skipInvalid: true });
  assert.deepEqual(triples(loaded.pairs), [["Q1", " a", " b"], ["Q4", " d", " e"]]);
  assert.deepEqual(loaded.pairs.map((p) => p.source.line), [2, 6]);
  assert.deepEqual(loaded.invalid.map((i) => [i.where, i.field, i.reason]), [
    [`${path}:3`, "chosen", "is an empty cell; an empty answer cannot be scored, so fill it in or remove the row"],
    [`${path}:5`, "row", 'has 4 cells but the header has 3 columns ("prompt", "chosen", "rejected"); put every cell that holds a comma, a quote or a line break in double quotes ("..."), so that each row has one cell per column'],
  ]);
  assert.equal(loaded.rows, 4);

  const emptyPrompt = tmpFile("p.csv", "prompt,chosen,rejected\n, a, b\n");
  await rejectsWith(loadPreferences(emptyPrompt), `${emptyPrompt}:2: prompt: is an empty cell; give the prompt text, or set prompt_field to null to infer it from chosen and rejected`);
  const tsv = tmpFile("few.tsv", "prompt\tchosen\trejected\nQ\t a\n");
  await rejectsWith(loadPreferences(tsv), `${tsv}:2: row: has 2 cells but the header has 3 columns ("prompt", "chosen", "rejected"); put every cell that holds a tab, a quote or a line break in double quotes ("..."), so that each row has one cell per column`);
  // Whitespace-only lines are blank lines, not rows.
  const blank = tmpFile("blank.csv", "prompt,chosen,rejected\n   \nQ, a, b\n");
  assert.deepEqual((await loadPreferences(blank)).pairs.map((p) => p.source.line), [3]);
});

test("problems with a whole CSV file name the file (and line) and say what to do", async () => {
  const open = tmpFile("open.csv", 'prompt,chosen,rejected\nQ1, a, b\n\n"Q2, never closed, x\nQ3, c, d\n');
  await rejectsWith(
    loadPreferences(open),
    `${open}:4: a quoted cell starting in the record on this line is never closed, so the rest of the file would become one cell; close the quote, and double any quote inside a quoted cell ("say ""hi""")`,
  );
  const dup = tmpFile("dup.csv", "prompt,chosen,chosen\nQ, a, b\n");
  await rejectsWith(
    loadPreferences(dup),
    `${dup}:1: the header names column "chosen" twice (columns 2 and 3); rename one, so that each field has one meaning (the first line of a CSV file names the fields)`,
  );
  const noCol = tmpFile("nocol.csv", "prompt,good,rejected\nQ, a, b\n");
  await rejectsWith(
    loadPreferences(noCol),
    `${noCol}: header has no column "chosen" (columns: "prompt", "good", "rejected"); set chosen_field to the column that holds it (now: prompt_field unset → prompt, chosen_field unset → chosen, rejected_field unset → rejected)`,
  );
  const headerOnly = tmpFile("header.csv", "prompt,chosen,rejected\n");
  await rejectsWith(loadPreferences(headerOnly), `${headerOnly}: holds no rows; a preference file needs at least one {"prompt", "chosen", "rejected"} row`);
  // The prompt would be inferred, but the file has a "question" column: refused at the first data row's line.
  const implicit = tmpFile("implicit.csv", "\nquestion,chosen,rejected\nQ?,A: yes,A: no\n");
  await rejectsWith(
    loadPreferences(implicit),
    `${implicit}:3: the prompt would be inferred from the answers' shared start, but the row also has "question"; set prompt_field=question, or set prompt_field=null to infer the prompt on purpose (now: prompt_field unset → inferred, chosen_field unset → chosen, rejected_field unset → rejected)`,
    "config",
  );
  // pandas' index column (an empty header name) and a numeric score column are not the prompt.
  const pandas = tmpFile("pandas.csv", ",chosen,rejected,score\n0,A: yes,A: no,1.5\n");
  assert.deepEqual(triples((await loadPreferences(pandas)).pairs), [["A:", " yes", " no"]]);
});
