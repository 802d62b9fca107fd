// Loads a model for tsdpo from a GGUF file or a Hugging Face folder (config.json + safetensors + tokenizer.json),
// checking every tensor's presence and shape against the config before any data is copied.

import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { describeJsonError, describeValue, inputError, unsupportedError } from "../errors.js";
import { type LlamaConfig, isBlockMatrix, paramSpecs } from "../model/config.js";
import { type FloatCtor, type Model, createModel } from "../model/decoder.js";
import { loadHfTokenizer } from "../tokenizer/hf.js";
import { tokenizerFromGguf } from "../tokenizer/gguf.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { BLOCK, GGML_TYPE_ID, type QuantType, dequantizeRow, rowBytes } from "../quant/ggml.js";
import { type QuantWeight, quantWeight } from "../model/weights.js";
import { type GgufFile, readGguf, readGgufHeader, readGgufTensor, readableGgufTensor } from "./gguf.js";
import { llamaConfigFromGguf } from "./ggufconfig.js";
import { isMultimodalGemma3, llamaConfigFromHf } from "./hfconfig.js";
import { fusedHfLayout } from "./hflayout.js";
import { type GgufLayout, ggufFusesQkv, ggufLayout } from "./gguflayout.js";
import { ggufNormShift, ggufQkPermuted, ggufShape, ggufToHfQkRows, hfTensorName } from "./names.js";
import { type SafetensorsFolder, openSafetensorsFolder, readFolderTensorF32 } from "./safetensors.js";

export interface LoadedModel {
  model: Model;
  tokenizer: Tokenizer;
  path: string;
  format: "gguf" | "hf";
  /** The raw config.json of an HF folder (kept so export can carry unknown keys over), null for GGUF. */
  hfConfig: Record<string, unknown> | null;
  /** A sequence-classification folder's score head, when loaded with `scoreHead: true` (see LoadOptions). */
  scoreHead?: ScoreHead;
}

/**
 * The head of a Hugging Face *ForSequenceClassification model (a reward model): `score.weight`, one row per label,
 * applied without a bias to the final-normed hidden state of the last token that is not `padId`.
 */
export interface ScoreHead {
  weight: Float32Array; // (labels, C)
  labels: number;
  /** config.json pad_token_id, or null when unset. */
  padId: number | null;
}

export interface LoadOptions {
  /**
   * Quantised GGUF matrices (Q8_0, Q4_K, …) become float32 parameters instead of staying frozen in their block
   * format: what full fine-tuning needs (`dequantize: true`). Default false.
   */
  dequantize?: boolean;
  /**
   * F16 and BF16 matrices (GGUF or safetensors) become float32 parameters instead of staying frozen as halves: what
   * full fine-tuning needs, where every weight is trained. Default false: inference, the reference and LoRA read
   * them as stored, at half the memory.
   */
  halvesAsFloat?: boolean;
  /**
   * Load a Hugging Face *ForSequenceClassification folder (a reward model): its `score.weight` head is read into
   * LoadedModel.scoreHead, and no `lm_head.weight` is read, since such a folder has none: the decoder's LM head is the
   * embedding table (the config is loaded as tied), which nothing of a reward model uses. GGUF files are refused.
   * Without this option such a folder is refused, since it has no LM head to train or sample from. Default false.
   */
  scoreHead?: boolean;
}

/** Whether an HF safetensors tensor stays in its stored halves (a frozen F16/BF16 matrix) under `opts`. */
function keepsHfHalves(dtype: string | undefined, shape: readonly number[], opts: LoadOptions): dtype is "F16" | "BF16" {
  return (dtype === "F16" || dtype === "BF16") && shape.length === 2 && opts.halvesAsFloat !== true;
}

/** Whether a matrix stored as `type` stays in its blocks (frozen) under `opts`. */
function keepsBlocks(type: QuantType, opts: LoadOptions): boolean {
  return type === "F16" || type === "BF16" ? opts.halvesAsFloat !== true : opts.dequantize !== true;
}

export function loadModel(path: string, ctor: FloatCtor = Float32Array, opts: LoadOptions = {}): LoadedModel {
  if (!existsSync(path)) throw inputError(`${path}: no such model file or folder (give a .gguf file or a Hugging Face model folder)`);
  if (statSync(path).isDirectory()) return loadHfFolder(path, ctor, opts);
  if (opts.scoreHead)
    throw unsupportedError(`${path}: a GGUF file has no score head (score.weight); a reward model is read from a Hugging Face *ForSequenceClassification folder`);
  return loadGgufModel(path, ctor, opts);
}

const shapeStr = (s: readonly number[]): string => `[${s.join(", ")}]`;
const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

function checkShape(path: string, tensor: string, got: readonly number[], want: readonly number[], cfg: LlamaConfig): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i]))
    throw inputError(
      `${path}: tensor ${tensor} has shape ${shapeStr(got)} but the config (C=${cfg.C}, NH=${cfg.NH}, NKV=${cfg.NKV}, ` +
        `HS=${cfg.HS}, FF=${cfg.FF}, V=${cfg.V}) implies ${shapeStr(want)}; the weights and the config do not belong together`,
    );
}

/**
 * The layer count bounds the parameter list the config implies (paramSpecs lists every tensor of every layer), so it
 * is checked against the tensors the file holds before that list is built: a corrupt block_count or
 * num_hidden_layers of 2^31 must be an error, not a hang.
 */
function checkLayerCount(path: string, cfg: LlamaConfig, tensorCount: number, key: string): void {
  if (cfg.L > tensorCount)
    throw inputError(
      `${path}: ${key} is ${cfg.L} but the weights hold only ${tensorCount} tensors (each layer needs several); ` +
        `the config is corrupt or belongs to another model`,
    );
}

/** The GGUF types whose blocks tsdpo reads (src/quant/ggml.ts), by ggml's type number. */
const QUANT_BY_ID = new Map(Object.entries(GGML_TYPE_ID).filter(([t]) => t !== "F16" && t !== "BF16").map(([t, id]) => [id, t as QuantType]));
/** The same with the halves, which the loader may also keep as stored. */
const BLOCKS_BY_ID = new Map(Object.entries(GGML_TYPE_ID).map(([t, id]) => [id, t as QuantType]));

/** Rows of a Q/K matrix from GGUF's interleaved order to Hugging Face's (see names.ts), as whole rows of blocks. */
function qkRowsToHf(data: Uint8Array, nHeads: number, HS: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(data.length);
  const half = HS / 2;
  for (let h = 0; h < nHeads; h++)
    for (let s = 0; s < 2; s++)
      for (let i = 0; i < half; i++) {
        const from = h * HS + 2 * i + s, to = h * HS + s * half + i;
        out.set(data.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
  return out;
}

/** Where a quantised matrix's blocks lie in the file, checked against its size before anything is read. */
function quantExtent(f: GgufFile, name: string, type: QuantType, rows: number, cols: number): { start: number; rb: number } {
  if (cols % BLOCK[type].elems !== 0)
    throw inputError(`${f.path}: tensor ${name} is ${type} with rows of ${cols}, not a multiple of its ${BLOCK[type].elems}-element blocks; the file is corrupt`);
  const rb = rowBytes(type, cols);
  const start = f.dataOffset + f.tensors.get(name)!.offset;
  if (start + rows * rb > f.buffer.length)
    throw inputError(`${f.path}: GGUF file is truncated: tensor ${name} (${type}) ends at byte ${start + rows * rb} but the file has ${f.buffer.length} bytes`);
  return { start, rb };
}

/**
 * The tensor layout of a GGUF file: as llama.cpp's converter writes the family (io/gguflayout.ts), except that a phi3
 * file may hold q, k and v as separate attn_q / attn_k / attn_v, which llama.cpp accepts as well.
 */
function fileLayout(f: GgufFile, cfg: LlamaConfig): GgufLayout {
  return ggufLayout(cfg, cfg.family === "phi3" ? f.tensors.has("blk.0.attn_qkv.weight") : ggufFusesQkv(cfg));
}

/**
 * The quantised matrices of a GGUF, kept in their blocks (views into the file's buffer, no copy except for the
 * Q/K row reorder; a part of a fused tensor is a view of its rows). Everything else, and everything under
 * `dequantize`, goes through the float arena.
 */
function ggufQuantWeights(f: GgufFile, cfg: LlamaConfig, opts: LoadOptions): Map<string, QuantWeight> {
  const out = new Map<string, QuantWeight>();
  const permuted = ggufQkPermuted(cfg.family);
  const layout = fileLayout(f, cfg);
  const rowsOf = new Map(layout.tensors.map((t) => [t.name, t.shape[0]!]));
  for (const spec of paramSpecs(cfg)) {
    const { tensor, row0 } = layout.where.get(spec.name)!;
    const type = BLOCKS_BY_ID.get(f.tensors.get(tensor)?.type ?? -1);
    if (!type || !isBlockMatrix(spec.name, spec.shape) || !keepsBlocks(type, opts)) continue;
    const [rows, cols] = spec.shape as [number, number];
    const { start, rb } = quantExtent(f, tensor, type, rowsOf.get(tensor)!, cols);
    let data: Uint8Array = f.buffer.subarray(start + row0 * rb, start + (row0 + rows) * rb);
    if (permuted && /\.(wq|wk)$/.test(spec.name)) data = qkRowsToHf(data, spec.name.endsWith("wq") ? cfg.NH : cfg.NKV, cfg.HS, rb);
    out.set(spec.name, quantWeight(type, data, rows, cols));
  }
  return out;
}

/** Rows row0..row0+rows of a quantised matrix of `total` rows, read as float32 (the `dequantize` path), row by row. */
function dequantizedRows(f: GgufFile, name: string, type: QuantType, total: number, cols: number, row0: number, rows: number): Float32Array {
  const { start, rb } = quantExtent(f, name, type, total, cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) dequantizeRow(type, f.buffer, start + (row0 + r) * rb, out, r * cols, cols);
  return out;
}

export function loadGgufModel(path: string, ctor: FloatCtor = Float32Array, opts: LoadOptions = {}): LoadedModel {
  const f = readGguf(path);
  const cfg = llamaConfigFromGguf(f);
  const tokenizer = tokenizerFromGguf(f);
  // Every tensor is checked (present, the config's shape, a type we read) before the parameter arena is allocated,
  // so the sizes in the metadata cannot make us allocate more than the file's tensors hold.
  checkLayerCount(path, cfg, f.tensors.size, `${cfg.family}.block_count`);
  const layout = fileLayout(f, cfg);
  for (const t of layout.tensors) {
    const info = f.tensors.get(t.name);
    if (!info) throw inputError(`${path}: tensor ${t.name} is missing (the ${cfg.family} architecture with this config needs it)`);
    checkShape(path, t.name, ggufShape(info.dims), t.shape, cfg);
    if (!(QUANT_BY_ID.has(info.type) && t.shape.length === 2)) readableGgufTensor(f, t.name);
  }
  const model = createModel(cfg, ctor, ctor === Float32Array ? ggufQuantWeights(f, cfg, opts) : new Map());
  const permuted = ggufQkPermuted(cfg.family);
  const rowsOf = new Map(layout.tensors.map((t) => [t.name, t.shape[0]!]));
  let last = null as { name: string; data: Float32Array } | null; // a fused tensor is read once for all its parts
  for (const e of model.entries) {
    const { tensor, row0 } = layout.where.get(e.name)!;
    const rows = e.shape[0]!, cols = e.shape.length === 2 ? e.shape[1]! : 1;
    const qt = QUANT_BY_ID.get(f.tensors.get(tensor)!.type);
    let data: Float32Array;
    if (qt && e.shape.length === 2) data = dequantizedRows(f, tensor, qt, rowsOf.get(tensor)!, cols, row0, rows);
    else {
      if (last?.name !== tensor) last = { name: tensor, data: readGgufTensor(f, tensor) };
      data = last.data.subarray(row0 * cols, (row0 + rows) * cols);
    }
    if (permuted && /\.(wq|wk|bq|bk)$/.test(e.name)) {
      const heads = /\.(wq|bq)$/.test(e.name) ? cfg.NH : cfg.NKV;
      data = ggufToHfQkRows(data, heads, cfg.HS, cols);
    }
    model.params.set(data, e.offset);
    const shift = ggufNormShift(cfg.family, e.name); // Gemma's GGUF norms hold 1 + w
    if (shift !== 0) for (let i = e.offset; i < e.offset + e.size; i++) model.params[i]! -= shift;
  }
  return { model, tokenizer, path, format: "gguf", hfConfig: null };
}

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw inputError(`${path}: cannot read the file`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw inputError(`${path}: not valid JSON (${describeJsonError(text, e)})`);
  }
}

export function loadHfFolder(folder: string, ctor: FloatCtor = Float32Array, opts: LoadOptions = {}): LoadedModel {
  const configPath = join(folder, "config.json");
  if (!existsSync(configPath)) throw inputError(`${folder}: no config.json; a Hugging Face model folder needs config.json, safetensors weights and tokenizer.json`);
  const hfConfig = readJsonFile(configPath);
  const classifier = sequenceClassifier(hfConfig, configPath, opts.scoreHead === true);
  // a classifier has no lm_head: its LM head is the embedding table, which no reward computation reads
  const cfg = classifier ? { ...llamaConfigFromHf(hfConfig, configPath), tiedEmbeddings: true } : llamaConfigFromHf(hfConfig, configPath);
  if (classifier && !["llama", "mistral", "qwen2", "qwen3"].includes(cfg.family))
    throw unsupportedError(`${configPath}: model_type ${cfg.family} is not supported as a reward model; tsdpo reads ${[...SEQUENCE_CLASSIFIERS].join(", ")}`);
  const tokenizer = loadHfTokenizer(folder);
  // More token ids than embedding rows would crash the forward pass on the first such id; fewer is normal (V is
  // often padded). llamaConfigFromGguf checks the same for GGUF.
  if (tokenizer.vocabSize > cfg.V)
    throw inputError(
      `${join(folder, "tokenizer.json")}: has token ids up to ${tokenizer.vocabSize - 1} but ${configPath} says ` +
        `vocab_size ${cfg.V}; the tokenizer does not belong to these weights (copy the model's own tokenizer.json)`,
    );
  const st = openSafetensorsFolder(folder);
  // As for GGUF: every tensor is checked before the arena that config.json sizes is allocated.
  checkLayerCount(configPath, cfg, st.entries.size, cfg.family === "gpt2" ? "n_layer" : "num_hidden_layers");
  const fused = fusedHfLayout(cfg);
  if (fused) {
    // fused (Phi-3) or transposed (GPT-2) projections are split (io/hflayout.ts), all into the float arena
    for (const s of fused.specs(cfg)) {
      const entry = st.entries.get(s.name);
      if (!entry) throw inputError(`${folder}: tensor ${s.name} is missing from the safetensors weights`);
      checkShape(folder, s.name, entry.shape, s.shape, cfg);
      if (!FLOAT_DTYPES.has(entry.dtype))
        throw inputError(`${folder}: tensor ${s.name} is ${entry.dtype}, expected a floating-point weight (F32, F16, BF16 or F64)`);
    }
    const model = createModel(cfg, ctor);
    const params = fused.fromHf(cfg, (name) => readFolderTensorF32(st, name));
    for (const e of model.entries) model.params.set(params.get(e.name)!, e.offset);
    return { model, tokenizer, path: folder, format: "hf", hfConfig: hfConfig as Record<string, unknown> };
  }
  const hfName = hfNamer(folder, st, cfg, hfConfig);
  for (const s of paramSpecs(cfg)) {
    const name = hfName(s.name);
    const entry = st.entries.get(name);
    if (!entry) throw inputError(`${folder}: tensor ${name} is missing from the safetensors weights`);
    checkShape(folder, name, entry.shape, s.shape, cfg);
    if (!FLOAT_DTYPES.has(entry.dtype))
      throw inputError(`${folder}: tensor ${name} is ${entry.dtype}, expected a floating-point weight (F32, F16, BF16 or F64)`);
  }
  // bf16/f16 matrices stay as stored (frozen), byte for byte: a safetensors half is a one-element GGML block
  const halves = new Map<string, QuantWeight>();
  if (ctor === Float32Array)
    for (const s of paramSpecs(cfg)) {
      const t = st.tensors.get(hfName(s.name))!;
      if (!keepsHfHalves(t.entry.dtype, s.shape, opts)) continue;
      const bytes = readBytes(t.file.path, t.file.dataStart + t.entry.begin, t.entry.end - t.entry.begin);
      halves.set(s.name, quantWeight(t.entry.dtype, bytes, s.shape[0]!, s.shape[1]!));
    }
  const scoreHead = classifier ? readScoreHead(folder, st, cfg, hfConfig as Record<string, unknown>, configPath) : undefined;
  const model = createModel(cfg, ctor, halves);
  for (const e of model.entries) model.params.set(readFolderTensorF32(st, hfName(e.name)), e.offset);
  return { model, tokenizer, path: folder, format: "hf", hfConfig: hfConfig as Record<string, unknown>, ...(scoreHead ? { scoreHead } : {}) };
}

/** The sequence-classification architectures whose trunk is a causal LM tsdpo runs (same tensor names, no LM head). */
const SEQUENCE_CLASSIFIERS = new Set(["LlamaForSequenceClassification", "MistralForSequenceClassification", "Qwen2ForSequenceClassification", "Qwen3ForSequenceClassification"]);

/**
 * Whether config.json declares a *ForSequenceClassification model, checked against what the caller wants: a reward
 * model (`wanted`) must be one tsdpo runs, and a folder loaded as a causal LM must not be one (it has no LM head; a
 * tied one would silently train its embeddings as an LM head).
 */
function sequenceClassifier(configJson: unknown, configPath: string, wanted: boolean): boolean {
  const archs = (configJson as Record<string, unknown> | null)?.["architectures"];
  const names = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === "string") : [];
  const classifier = names.find((a) => a.endsWith("ForSequenceClassification"));
  if (!wanted) {
    if (classifier)
      throw unsupportedError(
        `${configPath}: architectures is ${classifier}, a sequence-classification (reward) model: it has no LM head to ` +
          `train or sample from; use it as a judge (judge "reward:<folder>") or give a *ForCausalLM model`,
      );
    return false;
  }
  if (classifier && !SEQUENCE_CLASSIFIERS.has(classifier))
    throw unsupportedError(`${configPath}: architectures ${classifier} is not supported as a reward model; tsdpo reads ${[...SEQUENCE_CLASSIFIERS].join(", ")}`);
  if (!classifier && names.length > 0)
    throw inputError(
      `${configPath}: architectures is ${describeValue(archs)}, not a *ForSequenceClassification model, so the folder has no score head ` +
        `(score.weight); a reward model is a Hugging Face LlamaForSequenceClassification or Qwen2ForSequenceClassification folder`,
    );
  return true;
}

/** score.weight (labels, C), checked against the config; config.json's pad_token_id says which token is padding. */
function readScoreHead(folder: string, st: SafetensorsFolder, cfg: LlamaConfig, configJson: Record<string, unknown>, configPath: string): ScoreHead {
  const entry = st.entries.get("score.weight");
  if (!entry)
    throw inputError(`${folder}: has no score head (score.weight) in its safetensors weights; a reward model is a *ForSequenceClassification checkpoint with a score head on top of its decoder`);
  if (entry.shape.length !== 2 || entry.shape[1] !== cfg.C || !(entry.shape[0]! >= 1))
    throw inputError(`${folder}: tensor score.weight has shape ${shapeStr(entry.shape)} but the config's hidden_size ${cfg.C} implies [num_labels, ${cfg.C}]`);
  if (!FLOAT_DTYPES.has(entry.dtype))
    throw inputError(`${folder}: tensor score.weight is ${entry.dtype}, expected a floating-point weight (F32, F16, BF16 or F64)`);
  const pad = configJson["pad_token_id"];
  if (pad !== undefined && pad !== null && !(typeof pad === "number" && Number.isSafeInteger(pad) && pad >= 0))
    throw inputError(`${configPath}: key "pad_token_id" must be a token id or null, got ${describeValue(pad)}; fix config.json`);
  return { weight: readFolderTensorF32(st, "score.weight"), labels: entry.shape[0]!, padId: typeof pad === "number" ? pad : null };
}

/**
 * tsdpo name -> the folder's tensor name. A multimodal Gemma 3 (Gemma3ForConditionalGeneration) keeps its language
 * model under model.language_model. (transformers ≥ 4.52) or language_model.model. (before); its vision tower and
 * projector are not loaded, which is said once on stderr.
 */
function hfNamer(folder: string, st: SafetensorsFolder, cfg: LlamaConfig, configJson: unknown, quiet = false): (name: string) => string {
  const plain = (name: string): string => hfTensorName(name, cfg.family);
  if (!isMultimodalGemma3(configJson)) return plain;
  const prefix = ["model.language_model.", "language_model.model.", "model."].find((p) => st.entries.has(`${p}embed_tokens.weight`));
  if (!prefix) throw inputError(`${folder}: a gemma3 checkpoint but no language-model embeddings (model.language_model.embed_tokens.weight) in its safetensors`);
  const skipped = [...st.entries.keys()].filter((n) => !n.startsWith(prefix) && !/(^|\.)lm_head\.weight$/.test(n)).length;
  if (skipped > 0 && !quiet) process.stderr.write(`${folder}: gemma3 is multimodal; loading its text model only (${skipped} vision tensors skipped)\n`);
  return (name) => prefix + plain(name).slice("model.".length);
}

/** `length` bytes of a file from `offset` (the header was checked against the file's size already). */
function readBytes(path: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const fd = openSync(path, "r");
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw inputError(`${path}: the file ended while reading ${length} bytes at offset ${offset}; it is truncated`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** What a model file says about itself without its weights being read: enough to tokenise data and plan memory. */
export interface ModelHeader {
  path: string;
  format: "gguf" | "hf";
  cfg: LlamaConfig;
  tokenizer: Tokenizer;
  /** Per parameter (tsdpo names): the storage it will have once loaded with `opts` ("F32": the float arena). */
  storage: Map<string, "F32" | QuantType>;
  /** A GGUF's size when its buffer stays in memory while loading (it is read whole; quantised matrices view it). */
  fileBuffer: number;
  /** Bytes of the loader's own copies of frozen blocks (a Llama-family GGUF's Q/K rows, reordered). */
  loaderCopies: number;
  /** Whether frozen blocks are views into the file buffer (GGUF) rather than allocations of their own (HF halves). */
  blocksInFile: boolean;
  /** The largest float32 tensor the loader materialises before copying it into the arena (HF), bytes. */
  loaderTransient: number;
}

/**
 * The header of a GGUF (metadata and tensor infos, from a prefix of the file) or of an HF folder (config.json,
 * tokenizer.json, safetensors headers), and the storage each parameter will get under `opts`, as the loaders decide.
 */
export function readModelHeader(path: string, opts: LoadOptions = {}): ModelHeader {
  if (!existsSync(path)) throw inputError(`${path}: no such model file or folder (give a .gguf file or a Hugging Face model folder)`);
  const storage = new Map<string, "F32" | QuantType>();
  if (statSync(path).isDirectory()) {
    const configPath = join(path, "config.json");
    if (!existsSync(configPath)) throw inputError(`${path}: no config.json; a Hugging Face model folder needs config.json, safetensors weights and tokenizer.json`);
    const configJson = readJsonFile(configPath);
    const cfg = llamaConfigFromHf(configJson, configPath);
    const tokenizer = loadHfTokenizer(path);
    const st = openSafetensorsFolder(path);
    let loaderTransient = 0;
    const fused = fusedHfLayout(cfg);
    if (fused) {
      for (const s of paramSpecs(cfg)) storage.set(s.name, "F32");
      for (const s of fused.specs(cfg)) loaderTransient = Math.max(loaderTransient, 4 * s.shape.reduce((a, b) => a * b, 1));
      return { path, format: "hf", cfg, tokenizer, storage, fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient };
    }
    const hfName = hfNamer(path, st, cfg, configJson, true);
    for (const s of paramSpecs(cfg)) {
      const dtype = st.entries.get(hfName(s.name))?.dtype;
      const half = keepsHfHalves(dtype, s.shape, opts);
      storage.set(s.name, half ? dtype : "F32");
      if (!half) loaderTransient = Math.max(loaderTransient, 4 * s.shape.reduce((a, b) => a * b, 1));
    }
    return { path, format: "hf", cfg, tokenizer, storage, fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient };
  }
  const f = readGgufHeader(path);
  const cfg = llamaConfigFromGguf(f);
  const tokenizer = tokenizerFromGguf(f);
  const permuted = ggufQkPermuted(cfg.family);
  const layout = fileLayout(f, cfg);
  let loaderCopies = 0;
  for (const s of paramSpecs(cfg)) {
    const type = BLOCKS_BY_ID.get(f.tensors.get(layout.where.get(s.name)!.tensor)?.type ?? -1);
    const kept = type !== undefined && isBlockMatrix(s.name, s.shape) && keepsBlocks(type, opts) && s.shape[1]! % BLOCK[type].elems === 0;
    storage.set(s.name, kept ? type : "F32");
    if (kept && permuted && /\.(wq|wk)$/.test(s.name)) loaderCopies += s.shape[0]! * rowBytes(type, s.shape[1]!);
  }
  return { path, format: "gguf", cfg, tokenizer, storage, fileBuffer: statSync(path).size, loaderCopies, blocksInFile: true, loaderTransient: 0 };
}
