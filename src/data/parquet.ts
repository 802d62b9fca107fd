// Reading a Parquet file's data safely: hyparquet trusts the sizes a file declares and its decoders trust the data,
// so a corrupt or hostile file of a few hundred bytes could ask for gigabytes or loop for hours. read.ts parses the
// footer, then calls checkParquetSizes and readParquetObjects from here.
//
// checkParquetSizes, before any data is read. hyparquet builds one row object per declared row (row group
// num_rows), an array per page of the declared num_values, and a buffer of the declared uncompressed_page_size
// before it decompresses a Snappy page. The bounds:
// - rows (per row group and in all) and values (per column chunk, summed over its pages): at most the file's size in
//   bytes, or MIN_COUNT for small files. Every row of a preference file holds two distinct answers, so a real file
//   has far fewer rows than bytes; dictionary encoding with one distinct value (0 bits per value) is what lets a
//   value take less than a byte, and MIN_COUNT leaves room for such columns in small files.
// - a page's uncompressed size: at most MAX_RATIO times its compressed size, plus MIN_PAGE_BYTES. 1032 is deflate's
//   largest expansion; writers cut pages at about 1 MB uncompressed (pyarrow, parquet-mr, polars), so MIN_PAGE_BYTES
//   covers the highly compressible pages of zstd and brotli, which may expand further.
// - every column chunk and every page inside the file (between the leading "PAR1" and the footer).
//
// readParquetObjects decodes in a worker thread under a time limit. hyparquet's run-length decoder repeats a run as
// often as its header says, without comparing that with the page (a 5-byte header can ask for 2^31 values, and a
// bit-packed run of width 0 for endless ones), and checking every run before hyparquet would mean decoding every
// page twice. A synchronous loop cannot be interrupted in-process; a worker can be terminated.

import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import * as zlib from "node:zlib";
import { decompress as fzstdDecompress } from "fzstd";
import { parquetReadObjects } from "hyparquet";
import type { Compressors, FileMetaData } from "hyparquet";
import { parquetHeader } from "hyparquet/src/column.js";
import { inputError } from "../errors.js";

const MIN_COUNT = 1 << 20;
const MAX_RATIO = 1032;
const MIN_PAGE_BYTES = 16 << 20;

export function checkParquetSizes(path: string, file: ArrayBuffer, metadata: FileMetaData): void {
  const size = file.byteLength;
  const maxCount = Math.max(MIN_COUNT, size);
  const corrupt = (what: string): Error =>
    inputError(`${path}: ${what}; the Parquet file is corrupt or truncated, so download it again`);
  const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

  let totalRows = 0;
  metadata.row_groups.forEach((group, g) => {
    const rows = Number(group.num_rows);
    totalRows += rows;
    if (!isCount(rows)) throw corrupt(`row group ${g} has the row count ${group.num_rows}`);
    if (totalRows > maxCount)
      throw corrupt(`row group ${g} declares ${rows} rows (${totalRows} so far), more than a file of ${size} bytes can hold`);
    for (const chunk of group.columns) {
      const meta = chunk.meta_data;
      if (!meta) continue; // hyparquet refuses it with its own message
      const column = `column ${meta.path_in_schema.join(".")} of row group ${g}`;
      const start = Number(meta.dictionary_page_offset || meta.data_page_offset);
      const length = Number(meta.total_compressed_size);
      if (!isCount(length)) throw corrupt(`${column} has the size ${meta.total_compressed_size}`);
      if (!isCount(start) || start < 4 || start + length > size - 8)
        throw corrupt(`${column} claims bytes ${meta.dictionary_page_offset || meta.data_page_offset} to ` +
          `${start + length}, outside the data of a ${size}-byte file`);
      if (!isCount(Number(meta.num_values)) || Number(meta.num_values) > maxCount)
        throw corrupt(`${column} declares ${meta.num_values} values, where a file of ${size} bytes holds at most ${maxCount}`);
      // The pages, read as hyparquet reads them: headers back to back until the chunk ends.
      const reader = { view: new DataView(file, start, length), offset: 0 };
      let values = 0;
      while (reader.offset < length - 1) {
        const at = start + reader.offset;
        let header: ReturnType<typeof parquetHeader>;
        try {
          header = parquetHeader(reader);
        } catch (e) {
          throw corrupt(`the page header at byte ${at} (${column}) does not parse (${(e as Error).message})`);
        }
        const packed = header.compressed_page_size;
        const unpacked = header.uncompressed_page_size;
        // Without its size, hyparquet would move to offset NaN, which a DataView reads as 0: an endless loop.
        if (packed === undefined || unpacked === undefined)
          throw corrupt(`the page header at byte ${at} (${column}) does not give the page's size`);
        if (!isCount(packed) || !isCount(unpacked) || unpacked > MIN_PAGE_BYTES + MAX_RATIO * packed)
          throw corrupt(`the page at byte ${at} (${column}) claims to expand from ${packed} to ${unpacked} bytes`);
        if (reader.offset + packed > length)
          throw corrupt(`the page at byte ${at} (${column}) claims ${packed} bytes, past the end of its column chunk`);
        const n = Number(
          header.data_page_header?.num_values ??
            header.data_page_header_v2?.num_values ??
            header.dictionary_page_header?.num_values ??
            0,
        );
        values += n;
        if (!isCount(n)) throw corrupt(`the page at byte ${at} (${column}) declares ${n} values`);
        if (values > maxCount)
          throw corrupt(`the page at byte ${at} (${column}) brings the column's values to ${values}, more than a file of ${size} bytes can hold`);
        reader.offset += packed;
      }
    }
  });
}

/**
 * hyparquet decodes uncompressed and Snappy pages itself; node:zlib covers GZIP and BROTLI, and ZSTD (the default of
 * Polars and of many dataset exports) through zlib.zstdDecompressSync where this Node has it (>= 22.15), else through
 * fzstd, a pure-JS decoder. LZ4 and LZO remain unsupported and get a clear message.
 *
 * Output is capped at the page's declared size (checkParquetSizes bounds it): a corrupt stream must not grow past
 * it, and fzstd would otherwise allocate whatever the zstd frame header declares (up to 2 GB); given a buffer it
 * writes into it and fails when the data does not fit.
 */
function parquetCompressors(): Compressors {
  const nodeZstd = (zlib as unknown as Record<string, unknown>)["zstdDecompressSync"];
  const cap = (n: number): zlib.ZlibOptions => ({ maxOutputLength: Math.max(1, n) });
  return {
    GZIP: (input, n) => zlib.gunzipSync(input, cap(n)),
    BROTLI: (input, n) => zlib.brotliDecompressSync(input, cap(n)),
    ZSTD: typeof nodeZstd === "function"
      ? (input, n) => (nodeZstd as (b: Uint8Array, o: zlib.ZlibOptions) => Uint8Array)(input, cap(n))
      : (input, n) => fzstdDecompress(input, new Uint8Array(n)),
  };
}

const JOB = "tsdpo-parquet-read";
interface Job {
  kind: typeof JOB;
  file: ArrayBuffer;
  columns: string[] | undefined;
}
type Reply = { t: "ready" } | { t: "rows"; rows: Record<string, unknown>[] } | { t: "error"; message: string };

/** Decoding time allowed after the worker has started: generous for real files (hyparquet reads tens of MB/s). */
const timeLimitMs = (bytes: number): number => 500 + bytes / 1000;

/**
 * The rows of a Parquet file whose footer parsed and passed checkParquetSizes, decoded by hyparquet in a worker.
 * `file` is transferred to the worker (it is unusable here afterwards). A hyparquet error is thrown as a plain Error
 * with hyparquet's message, for read.ts to word; a decoder that does not finish is a TsdpoError.
 */
export function readParquetObjects(path: string, file: ArrayBuffer, columns: string[] | undefined): Promise<Record<string, unknown>[]> {
  const limit = timeLimitMs(file.byteLength);
  return new Promise((resolve, reject) => {
    const job: Job = { kind: JOB, file, columns };
    const worker = new Worker(new URL(import.meta.url), { workerData: job, transferList: [file] });
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      f();
    };
    worker.on("message", (m: Reply) => {
      if (m.t === "ready")
        timer = setTimeout(
          () =>
            settle(() =>
              reject(
                inputError(
                  `${path}: decoding the Parquet data did not finish within ${(limit / 1000).toFixed(1)} s; the file is ` +
                    `corrupt (a page whose run-length data claims far more values than it holds), so download it again`,
                ),
              ),
            ),
          limit,
        );
      else if (m.t === "rows") settle(() => resolve(m.rows));
      else settle(() => reject(new Error(m.message)));
    });
    worker.on("error", (e) => settle(() => reject(e)));
    worker.on("exit", (code) => settle(() => reject(new Error(`the decoding worker exited with code ${code}`))));
  });
}

// The worker side: this module, started by readParquetObjects.
if (!isMainThread && (workerData as Job | undefined)?.kind === JOB) {
  const job = workerData as Job;
  const post = (m: Reply): void => parentPort!.postMessage(m);
  post({ t: "ready" });
  parquetReadObjects({ file: job.file, columns: job.columns, compressors: parquetCompressors(), geoparquet: false }).then(
    (rows) => post({ t: "rows", rows }),
    (e: unknown) => post({ t: "error", message: e instanceof Error ? e.message : String(e) }),
  );
}
