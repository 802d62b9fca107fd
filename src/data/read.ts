// Reading preference files into rows, before any interpretation of their fields.
//
// Formats: JSON Lines (.jsonl, .ndjson), JSON (.json: an array of row objects, or JSON Lines under a .json name as
// Hugging Face datasets often ship them), Parquet (.parquet, through hyparquet), CSV and TSV (.csv, .tsv, through
// csv-parse), and gzip of any of these. Gzip is recognised by its magic bytes (1f 8b), so a compressed file works
// whatever its name; the format comes from the name with any ".gz" removed, or, when the name says nothing, from the
// content (JSON and Parquet only: a CSV file needs its name).
//
// A bad JSON line is a problem of that row only (it can be skipped with skipInvalid); anything that spoils the
// whole file (unreadable, corrupt gzip, invalid UTF-8, a JSON array that does not parse, an unreadable Parquet
// footer, a CSV quote that is never closed, a CSV header naming a column twice) throws at once.
//
// CSV and TSV (RFC 4180 quoting, as pandas' to_csv and Python's csv module write it, for TSV with a tab between
// cells):
// - The first record is the header; it names the fields, so a row is {header[i]: cell[i]}. The same field mapping
//   (prompt_field, chosen_field, rejected_field) applies as for JSON.
// - Every cell is a string. An empty cell is the empty string "": CSV cannot tell a missing value from an empty one,
//   and pandas writes both the same way. An empty answer or prompt is then the same error as in JSON ("is an empty
//   cell"), never a silently skipped row.
// - A row's line is the physical line where its record starts; a quoted cell may span lines ("a\nb" written with a
//   real line break), and the rows after it keep their true line numbers. csv-parse's own line counter counts CRLF
//   line ends inside quoted cells twice, so the lines are counted here from the byte offsets it reports (info.bytes).
// - Blank lines (also whitespace-only ones) are not rows, as in JSON Lines. A row with more or fewer cells than the
//   header is a problem of that row (skippable): usually an unquoted comma.
// - A quote inside an unquoted cell (He said "hi") is kept as a character, as Python's csv module reads it.

import { readFileSync } from "node:fs";
import * as zlib from "node:zlib";
import { parquetMetadata, parquetSchema } from "hyparquet";
import { parse as parseCsv } from "csv-parse/sync";
import type { FileMetaData } from "hyparquet";
import { checkParquetSizes, readParquetObjects } from "./parquet.js";
import { TsdpoError, inputError, unsupportedError } from "../errors.js";
import type { FileFormat, SourcePos } from "./types.js";

export interface RawRow {
  readonly pos: SourcePos;
  /** The parsed row; undefined when parseError is set. */
  readonly value?: unknown;
  /**
   * Set when this row's text cannot be parsed: the JSON parser's complaint (JSONL), or for CSV/TSV what is wrong with
   * the record and how to fix it (a cell count that differs from the header's).
   */
  readonly parseError?: string;
}

export interface ReadResult {
  readonly format: FileFormat;
  readonly rows: RawRow[];
  /** Parquet, CSV, TSV: every column (top-level field) in the file, for messages about missing columns. */
  readonly columns?: string[];
}

export interface ReadOptions {
  /**
   * Parquet: read only these columns (those absent from the file are ignored; the caller reports them). JSON/JSONL
   * always parse whole rows. Also used to tell a one-row JSON Lines file from a single JSON object holding rows.
   */
  columns?: readonly string[];
  /**
   * Parquet: further columns to read, picked once the file's columns are known (loadPreferences reads the unmapped
   * columns when the prompt may be inferred, to check that none of them is the prompt under another name).
   */
  moreColumns?: (all: readonly string[]) => readonly string[];
}

export async function readRows(path: string, options: ReadOptions = {}): Promise<ReadResult> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new TsdpoError("io", `${path}: cannot read the preference file (${code}); check the path and permissions`);
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      throw inputError(
        `${path}: starts like gzip but does not decompress (${(e as Error).message}); the file is probably ` +
          `truncated or corrupt, so download or compress it again`,
      );
    }
  }
  const format = detectFormat(path, bytes);
  if (format === "parquet") return readParquet(path, bytes, options);
  const text = decodeUtf8(path, bytes);
  if (format === "csv" || format === "tsv") return readDelimited(path, text, format);
  if (format === "jsonl") return { format, rows: readJsonLines(path, text) };
  return readJson(path, text, options);
}

function detectFormat(path: string, bytes: Uint8Array): FileFormat {
  const name = path.toLowerCase().replace(/\.gz$/, "");
  if (name.endsWith(".jsonl") || name.endsWith(".ndjson")) return "jsonl";
  if (name.endsWith(".json")) return "json";
  if (name.endsWith(".parquet") || name.endsWith(".pq")) return "parquet";
  if (name.endsWith(".csv")) return "csv";
  if (name.endsWith(".tsv") || name.endsWith(".tab")) return "tsv";
  if (bytes.length >= 4 && String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!) === "PAR1") return "parquet";
  // Peek at the first non-space byte: '[' starts a JSON array, '{' a JSON Lines file.
  for (let i = 0; i < Math.min(bytes.length, 4096); i++) {
    const b = bytes[i]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0xef || b === 0xbb || b === 0xbf) continue;
    if (b === 0x5b) return "json";
    if (b === 0x7b) return "jsonl";
    break;
  }
  throw inputError(
    `${path}: cannot tell the file format from its name or content; name it .jsonl (one JSON object per line), ` +
      `.json (an array of objects), .parquet, .csv or .tsv (a header row, then one row per pair), optionally followed by .gz`,
  );
}

function decodeUtf8(path: string, bytes: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw inputError(`${path}: is not valid UTF-8 text; re-save it as UTF-8 (JSON files must be UTF-8; CSV from a spreadsheet: save as "CSV UTF-8")`);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function readJsonLines(path: string, text: string): RawRow[] {
  const rows: RawRow[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue; // blank lines (and the final newline) are not rows
    const pos: SourcePos = { file: path, format: "jsonl", line: i + 1, index: rows.length };
    try {
      rows.push({ pos, value: JSON.parse(line) });
    } catch (e) {
      rows.push({ pos, parseError: (e as Error).message });
    }
  }
  return rows;
}

function readJson(path: string, text: string, options: ReadOptions): ReadResult {
  const start = text.search(/\S/);
  if (start < 0) return { format: "json", rows: [] };
  if (text[start] !== "[") {
    // Many ".json" files on the Hub are JSON Lines. A text that parses as one object is either a single row
    // (possibly pretty-printed over many lines) or a wrapper such as {"data": [...]}, which gets its own message
    // rather than a misleading per-line one.
    let whole: unknown;
    try {
      whole = JSON.parse(text);
    } catch {
      return { format: "jsonl", rows: readJsonLines(path, text) };
    }
    const fields = options.columns ?? [];
    if (whole !== null && typeof whole === "object" && !Array.isArray(whole) && fields.length > 0 && !fields.some((f) => f in whole))
      throw inputError(
        `${path}: holds a single JSON object with keys ${listKeys(whole)}, not rows; tsdpo reads a JSON array of ` +
          `rows ([{...}, {...}]) or JSON Lines (one object per line), so extract the rows into one of those`,
      );
    const line = text.slice(0, start).split("\n").length;
    return { format: "jsonl", rows: [{ pos: { file: path, format: "jsonl", line, index: 0 }, value: whole }] };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw inputError(`${path}: is not valid JSON (${jsonErrorAt(text, (e as Error).message)}); fix the syntax or convert the file to JSON Lines, where a bad line only affects its own row`);
  }
  const items = parsed as unknown[];
  const lines = arrayItemLines(text, start);
  return {
    format: "json",
    rows: items.map((value, index) => ({ pos: { file: path, format: "json", line: lines[index] ?? null, index }, value })),
  };
}

/**
 * The 1-based line on which each top-level array item starts, found by scanning the (already validated) JSON text
 * with just enough state to skip strings and nested values.
 */
function arrayItemLines(text: string, open: number): number[] {
  const out: number[] = [];
  let line = 1;
  for (let i = 0; i < open; i++) if (text.charCodeAt(i) === 10) line++;
  let depth = 0;
  let inString = false;
  let expectItem = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\n") line++;
    if (inString) {
      if (c === "\\") i++; // an escaped character is never a newline in valid JSON
      else if (c === '"') inString = false;
      continue;
    }
    if (expectItem && !/\s/.test(c) && c !== "]") {
      out.push(line);
      expectItem = false;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      depth++;
      if (depth === 1) expectItem = true;
    } else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) expectItem = true;
  }
  return out;
}

function jsonErrorAt(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return message;
  const pos = Number(m[1]);
  let line = 1;
  let col = 1;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      col = 1;
    } else col++;
  }
  return `${message}, at line ${line} column ${col}`;
}

export function listKeys(v: object): string {
  return listNames(Object.keys(v));
}

/** '"a", "b", "c"', at most 12 names, for messages. */
export function listNames(keys: readonly string[]): string {
  if (keys.length === 0) return "(none)";
  const shown = keys.slice(0, 12).map((k) => JSON.stringify(k));
  return shown.join(", ") + (keys.length > 12 ? `, … (${keys.length} in all)` : "");
}

async function readParquet(path: string, bytes: Uint8Array, options: ReadOptions): Promise<ReadResult> {
  // hyparquet wants an ArrayBuffer holding exactly the file.
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let columns: string[];
  let metadata: FileMetaData;
  try {
    // GeoParquet columns mean nothing to tsdpo, and hyparquet's pass that marks them loops forever on a negative
    // num_children in the schema.
    metadata = parquetMetadata(file, { geoparquet: false });
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (e) {
    throw inputError(`${path}: is not a readable Parquet file (${(e as Error).message}); the file may be truncated, so download it again`);
  }
  checkParquetSizes(path, file, metadata);
  const more = options.moreColumns ? options.moreColumns(columns) : [];
  const wanted = options.columns ? [...new Set([...options.columns, ...more])].filter((c) => columns.includes(c)) : undefined;
  let objects: Record<string, unknown>[];
  try {
    objects = await readParquetObjects(path, file, wanted);
  } catch (e) {
    if (e instanceof TsdpoError) throw e;
    const msg = (e as Error).message;
    const codec = /unsupported compression codec: (\w+)/.exec(msg);
    if (codec)
      throw unsupportedError(
        `${path}: uses Parquet compression ${codec[1]}, which tsdpo cannot decompress on this Node ${process.version}; ` +
          `re-save the file with snappy, gzip or zstd (e.g. pandas df.to_parquet(path, compression="snappy")) or as JSON Lines`,
      );
    throw inputError(`${path}: cannot read the Parquet data (${msg}); the file may be corrupt, so download it again`);
  }
  return {
    format: "parquet",
    columns,
    rows: objects.map((value, index) => ({ pos: { file: path, format: "parquet", line: null, index }, value })),
  };
}

/**
 * CSV/TSV through csv-parse's sync API, as arrays of cells (the header is checked here, not by csv-parse, so that its
 * problems name the file and line). See the notes at the top of this file.
 */
function readDelimited(path: string, text: string, format: "csv" | "tsv"): ReadResult {
  const buf = Buffer.from(text, "utf8"); // csv-parse reports positions as byte offsets into this
  const lines = lineCounter(buf);
  let records: { record: string[]; info: { bytes: number } }[];
  try {
    records = parseCsv(buf, {
      delimiter: format === "csv" ? "," : "\t",
      info: true,
      relax_column_count: true, // checked per row below, so that one bad row can be skipped
      relax_quotes: true,
      skip_empty_lines: true,
    }) as unknown as { record: string[]; info: { bytes: number } }[];
  } catch (e) {
    const err = e as Error & { code?: string; bytes?: number };
    const line = lines.recordStart(err.bytes ?? 0);
    const what = err.message.replace(/ at line \d+/, "");
    throw inputError(
      err.code === "CSV_QUOTE_NOT_CLOSED"
        ? `${path}:${line}: a quoted cell starting in the record on this line is never closed, so the rest of the file ` +
            `would become one cell; close the quote, and double any quote inside a quoted cell ("say ""hi""")`
        : `${path}:${line}: is not valid ${format.toUpperCase()} (${what}); quote a cell that holds ` +
            `${format === "csv" ? "a comma" : "a tab"}, a quote or a line break with "...", and double any quote inside it`,
    );
  }
  const isBlank = (cells: string[]): boolean => cells.length === 1 && cells[0]!.trim() === "";
  let r = 0;
  while (r < records.length && isBlank(records[r]!.record)) lines.advanceTo(records[r++]!.info.bytes);
  if (r === records.length) return { format, rows: [], columns: [] };
  const headerLine = lines.recordStart(0);
  const header = records[r]!.record;
  lines.advanceTo(records[r++]!.info.bytes);
  const seen = new Map<string, number>();
  header.forEach((name, i) => {
    const first = seen.get(name);
    if (first !== undefined)
      throw inputError(
        `${path}:${headerLine}: the header names column ${JSON.stringify(name)} twice (columns ${first + 1} and ${i + 1}); ` +
          `rename one, so that each field has one meaning (the first line of a ${format.toUpperCase()} file names the fields)`,
      );
    seen.set(name, i);
  });
  const rows: RawRow[] = [];
  for (; r < records.length; r++) {
    const { record, info } = records[r]!;
    const line = lines.recordStart(0);
    lines.advanceTo(info.bytes);
    if (isBlank(record) && header.length > 1) continue; // a whitespace-only line, as blank lines in JSON Lines
    const pos: SourcePos = { file: path, format, line, index: rows.length };
    if (record.length !== header.length)
      rows.push({
        pos,
        parseError:
          `has ${record.length} cell${record.length === 1 ? "" : "s"} but the header has ${header.length} columns ` +
          `(${listNames(header)}); put every cell that holds ${format === "csv" ? "a comma" : "a tab"}, a quote or ` +
          `a line break in double quotes ("..."), so that each row has one cell per column`,
      });
    else rows.push({ pos, value: Object.fromEntries(header.map((h, i) => [h, record[i]!])) });
  }
  return { format, rows, columns: [...header] };
}

/**
 * Physical line numbers from byte offsets. csv-parse reports, for each record, the offset just past its record
 * delimiter; the next record starts after any empty lines it skipped. Line breaks are \n, \r\n or a lone \r.
 */
function lineCounter(buf: Uint8Array): { recordStart(from: number): number; advanceTo(end: number): void } {
  let pos = 0;
  let line = 1;
  const breakAt = (i: number): number => (buf[i] === 0x0a ? 1 : buf[i] === 0x0d ? (buf[i + 1] === 0x0a ? 2 : 1) : 0);
  return {
    /** The line of the next record: skips the empty lines after the current position (or after `from`, if later). */
    recordStart(from) {
      if (from > pos) this.advanceTo(from);
      for (let n = breakAt(pos); n > 0 && pos < buf.length; n = breakAt(pos)) (pos += n), line++;
      return line;
    },
    advanceTo(end) {
      while (pos < end && pos < buf.length) {
        const n = breakAt(pos);
        if (n > 0) (pos += n), line++;
        else pos++;
      }
    },
  };
}
