// Reading preference files into rows, before any interpretation of their fields.
//
// Formats: JSON Lines (.jsonl, .ndjson), JSON (.json: an array of row objects, or JSON Lines under a .json name as
// Hugging Face datasets often ship them), Parquet (.parquet, through hyparquet), and gzip of any of these. Gzip is
// recognised by its magic bytes (1f 8b), so a compressed file works whatever its name; the format comes from the
// name with any ".gz" removed, or, when the name says nothing, from the content.
//
// A bad JSON line is a problem of that row only (it can be skipped with skipInvalid); anything that spoils the
// whole file (unreadable, corrupt gzip, invalid UTF-8, a JSON array that does not parse, an unreadable Parquet
// footer) throws at once.

import { decompress as fzstdDecompress } from "fzstd";
import { readFileSync } from "node:fs";
import * as zlib from "node:zlib";
import { parquetMetadata, parquetReadObjects, parquetSchema } from "hyparquet";
import type { Compressors } from "hyparquet";
import { TsdpoError, inputError, unsupportedError } from "../errors.js";
import type { FileFormat, SourcePos } from "./types.js";

export interface RawRow {
  readonly pos: SourcePos;
  /** The parsed row; undefined when parseError is set. */
  readonly value?: unknown;
  /** Set when this row's text is not valid JSON (JSONL only). */
  readonly parseError?: string;
}

export interface ReadResult {
  readonly format: FileFormat;
  readonly rows: RawRow[];
  /** Parquet only: every top-level column in the file, for messages about missing columns. */
  readonly columns?: string[];
}

export interface ReadOptions {
  /**
   * Parquet: read only these columns (those absent from the file are ignored; the caller reports them). JSON/JSONL
   * always parse whole rows. Also used to tell a one-row JSON Lines file from a single JSON object holding rows.
   */
  columns?: readonly string[];
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
  if (format === "jsonl") return { format, rows: readJsonLines(path, text) };
  return readJson(path, text, options);
}

function detectFormat(path: string, bytes: Uint8Array): FileFormat {
  const name = path.toLowerCase().replace(/\.gz$/, "");
  if (name.endsWith(".jsonl") || name.endsWith(".ndjson")) return "jsonl";
  if (name.endsWith(".json")) return "json";
  if (name.endsWith(".parquet") || name.endsWith(".pq")) return "parquet";
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
      `.json (an array of objects) or .parquet, optionally followed by .gz`,
  );
}

function decodeUtf8(path: string, bytes: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw inputError(`${path}: is not valid UTF-8 text; re-save it as UTF-8 (JSON files must be UTF-8)`);
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
  const keys = Object.keys(v);
  if (keys.length === 0) return "(none)";
  const shown = keys.slice(0, 12).map((k) => JSON.stringify(k));
  return shown.join(", ") + (keys.length > 12 ? `, … (${keys.length} in all)` : "");
}

/**
 * hyparquet decodes uncompressed and Snappy pages itself; node:zlib covers GZIP and BROTLI, and ZSTD (the default of
 * Polars and of many dataset exports) through zlib.zstdDecompressSync where this Node has it (>= 22.15), else through
 * fzstd, a pure-JS decoder. LZ4 and LZO remain unsupported and get a clear message.
 */
function parquetCompressors(): Compressors {
  const nodeZstd = (zlib as unknown as Record<string, unknown>)["zstdDecompressSync"];
  return {
    GZIP: (input) => zlib.gunzipSync(input),
    BROTLI: (input) => zlib.brotliDecompressSync(input),
    ZSTD: typeof nodeZstd === "function" ? (input) => (nodeZstd as (b: Uint8Array) => Uint8Array)(input) : (input) => fzstdDecompress(input),
  };
}

async function readParquet(path: string, bytes: Uint8Array, options: ReadOptions): Promise<ReadResult> {
  // hyparquet wants an ArrayBuffer holding exactly the file.
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let columns: string[];
  try {
    const metadata = parquetMetadata(file);
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (e) {
    throw inputError(`${path}: is not a readable Parquet file (${(e as Error).message}); the file may be truncated, so download it again`);
  }
  const wanted = options.columns ? options.columns.filter((c) => columns.includes(c)) : undefined;
  let objects: Record<string, unknown>[];
  try {
    objects = await parquetReadObjects({ file, columns: wanted, compressors: parquetCompressors() });
  } catch (e) {
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
