// The readers under fuzz: for each, a seed corpus (the repo's small files, or small valid files built with tsdpo's
// own writers), a mutator that turns a seed into a case, and the public entry points a case is run through.
//
// A case passes when every entry point either accepts the input or throws a TsdpoError. Each entry point is a
// separate step, so a TsdpoError from one (say the tokenizer) does not keep the input from the others (the tensors).

import { gunzipSync, gzipSync } from "node:zlib";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { TsdpoError } from "../../src/errors.js";
import { readGguf, readGgufTensor } from "../../src/io/gguf.js";
import { llamaConfigFromGguf } from "../../src/io/ggufconfig.js";
import { ggufChunks, gv, readGgufMetadataTyped, type GgufMetaValue } from "../../src/io/ggufwriter.js";
import { readHfConfig } from "../../src/io/hfconfig.js";
import { loadModel } from "../../src/io/load.js";
import { ggufShape, ggufTensorName, hfTensorName } from "../../src/io/names.js";
import { encodeSafetensors, readSafetensors, readSafetensorsFolder, type TensorToWrite } from "../../src/io/safetensors.js";
import { type LlamaConfig, paramSpecs } from "../../src/model/config.js";
import { readRows } from "../../src/data/read.js";
import { type ChatMessage, renderChat } from "../../src/tokenizer/chat.js";
import { tokenizerFromGguf } from "../../src/tokenizer/gguf.js";
import { loadHfTokenizer } from "../../src/tokenizer/hf.js";
import type { Tokenizer } from "../../src/tokenizer/types.js";
import { parquetMetadata } from "hyparquet";
import { parquetHeader } from "hyparquet/src/column.js";
import type { Rng } from "../../src/rng.js";
import {
  type ByteSeed, type Field, chance, ggufFields, mutateBytes, mutateJson, mutateTemplate, mutateText, pick, thriftFields,
} from "./mutate.js";

const here = new URL(".", import.meta.url).pathname; // dist/test/fuzz/
const repo = join(here, "..", "..", "..");
const fixture = (...p: string[]): string => join(repo, "test", "fixtures", ...p);

/** A case: file name (relative to the case folder) -> bytes. The first file is the one the reader is given. */
export type CaseFiles = Map<string, Uint8Array>;

export interface Target {
  name: string;
  /** The seed corpus, built once per process. */
  seeds(): CaseFiles[];
  mutate(rng: Rng, seeds: CaseFiles[]): CaseFiles;
  /** Runs the entry points on the case written to `dir`. */
  run(dir: string, files: CaseFiles, steps: Steps): Promise<void>;
}

/** An entry point that threw something other than a TsdpoError: a crash. */
export class StepFailure extends Error {
  constructor(readonly step: string, override readonly cause: unknown) {
    const e = cause instanceof Error ? cause : new Error(String(cause));
    super(`${step}: ${e.name}: ${e.message}`);
  }
}

/** Runs entry points, counting TsdpoErrors and turning anything else into a StepFailure. */
export class Steps {
  tsdpoErrors = 0;
  async run<T>(name: string, fn: () => T | Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof TsdpoError && typeof e.message === "string" && e.message.length > 0) {
        this.tsdpoErrors++;
        return undefined;
      }
      throw new StepFailure(name, e);
    }
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (b: Uint8Array): string => dec.decode(b);
// Files are kept as plain Uint8Array copies: a Buffer's slice() is a view, and a mutator writing through one would
// change the seed.
const one = (name: string, bytes: Uint8Array): CaseFiles => new Map([[name, new Uint8Array(bytes)]]);

/** Replaces one file of a seed. */
function withFile(seed: CaseFiles, name: string, bytes: Uint8Array): CaseFiles {
  const out = new Map(seed);
  out.set(name, new Uint8Array(bytes));
  return out;
}

// Text the tokenizers are run on: spaces, a tab, digits, accents, an emoji (a surrogate pair, and bytes outside
// every small vocabulary), and the special-token strings of the seed vocabularies.
const SAMPLE = "Hello world!  Ünïcödé 😀\t12345 <s> [INST] hi [/INST] </s> <|im_start|>user\nhi<|im_end|>\n";

async function exerciseTokenizer(steps: Steps, tok: Tokenizer, where: string): Promise<void> {
  const ids = await steps.run(`${where} encode`, () => tok.encode(SAMPLE));
  await steps.run(`${where} encode continuation`, () => tok.encode(SAMPLE, { continuation: true }));
  const special = await steps.run(`${where} encodeWithSpecials`, () => tok.encodeWithSpecials(SAMPLE));
  if (ids) await steps.run(`${where} decode`, () => tok.decode(ids));
  if (special) await steps.run(`${where} decode keepSpecial`, () => tok.decode(special, { keepSpecial: true }));
  await steps.run(`${where} addBos`, () => tok.addBos);
  // As chatRendererFor does: the token strings of BOS and EOS.
  for (const id of [tok.bosId, tok.eosId]) if (id !== null) await steps.run(`${where} idToToken`, () => tok.idToToken(id));
}

// ---------------------------------------------------------------------------------------------------------------
// Seeds built in code

/** Deterministic weights (sin of the index), as the style guide's test models. */
function weights(n: number, phase: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 0.1 * Math.sin(i + phase);
  return a;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function tinyConfig(family: LlamaConfig["family"], V: number): LlamaConfig {
  return {
    family, V, C: 8, L: 1, NH: 2, NKV: 1, HS: 4, FF: 16, ropeTheta: 10000, ropeScaling: { type: "none" }, rmsEps: 1e-5,
    tiedEmbeddings: false, qkvBias: family === "qwen2", qkNorm: false, maxSeqLen: 64, slidingWindow: null,
  };
}

/** GPT-2's bytes_to_unicode (the printable stand-in of every byte), as byte-level BPE vocabularies list them. */
function byteChars(): string[] {
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out.push(String.fromCharCode(printable ? b : 256 + extra++));
  }
  return out;
}

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function ggufSeed(family: "llama" | "qwen2", dtype: "F32" | "F16"): Uint8Array {
  let metadata: [string, GgufMetaValue][];
  let V: number;
  if (family === "llama") {
    // stories260K's SentencePiece vocabulary (512 tokens) with a model shrunk to one small layer.
    const sizes: Record<string, number> = {
      "llama.context_length": 64, "llama.embedding_length": 8, "llama.feed_forward_length": 16,
      "llama.attention.head_count": 2, "llama.attention.head_count_kv": 1, "llama.block_count": 1,
      "llama.rope.dimension_count": 4,
    };
    metadata = readGgufMetadataTyped(join(repo, "assets", "models", "stories260K", "stories260K.gguf")).map(
      ([k, v]): [string, GgufMetaValue] => [k, k in sizes ? gv.u32(sizes[k]!) : v],
    );
    V = 512;
  } else {
    const bytes = byteChars();
    const merged = ["Ġt", "he", "Ġthe", "in", "Ġa", "er", "on", "Ġw", "ll", "Ġhe"];
    const merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ w", "l l", "Ġ he"];
    const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    const tokens = [...bytes, ...merged, ...specials];
    V = tokens.length;
    metadata = [
      ["general.architecture", gv.str("qwen2")],
      ["general.alignment", gv.u32(32)],
      ["qwen2.context_length", gv.u32(64)],
      ["qwen2.embedding_length", gv.u32(8)],
      ["qwen2.block_count", gv.u32(1)],
      ["qwen2.feed_forward_length", gv.u32(16)],
      ["qwen2.attention.head_count", gv.u32(2)],
      ["qwen2.attention.head_count_kv", gv.u32(1)],
      ["qwen2.rope.freq_base", gv.f32(1000000)],
      ["qwen2.attention.layer_norm_rms_epsilon", gv.f32(1e-6)],
      ["tokenizer.ggml.model", gv.str("gpt2")],
      ["tokenizer.ggml.pre", gv.str("qwen2")],
      ["tokenizer.ggml.tokens", gv.strings(tokens)],
      ["tokenizer.ggml.token_type", gv.i32s(tokens.map((_, i) => (i < bytes.length + merged.length ? 1 : 3)))],
      ["tokenizer.ggml.merges", gv.strings(merges)],
      ["tokenizer.ggml.eos_token_id", gv.u32(V - 1)],
      ["tokenizer.ggml.padding_token_id", gv.u32(V - 3)],
      ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
      ["tokenizer.chat_template", gv.str(CHATML)],
    ];
  }
  const cfg = tinyConfig(family, V);
  const tensors = paramSpecs(cfg).map((s, i) => ({
    name: ggufTensorName(s.name),
    dims: ggufShape(s.shape),
    type: s.shape.length === 1 ? ("F32" as const) : dtype,
    data: weights(numel(s.shape), i),
  }));
  return Buffer.concat(ggufChunks({ metadata, tensors }));
}

function safetensorsBytes(tensors: TensorToWrite[], opts: Parameters<typeof encodeSafetensors>[1] = {}): Uint8Array {
  return new Uint8Array(Buffer.concat(encodeSafetensors(tensors, opts)));
}

/** A safetensors file with the dtypes encodeSafetensors does not write (I64, I32, F64, U8, BOOL), built by hand. */
function rawSafetensors(entries: { name: string; dtype: string; shape: number[]; bytes: number }[]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes] };
    offset += e.bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, "latin1");
  for (let i = 8 + json.length; i < out.length; i++) out[i] = (i * 37) & 0xff;
  return out;
}

/** A tokenizer.json cut down to its first `keep` ids (and the merges among them), added tokens renumbered after. */
function trimTokenizer(path: string, keep: number): Record<string, unknown> {
  const j = JSON.parse(readFileSync(path, "utf8")) as Record<string, any>;
  const vocab: Record<string, number> = {};
  for (const [tok, id] of Object.entries(j.model.vocab as Record<string, number>)) if (id < keep) vocab[tok] = id;
  const merges = (j.model.merges as (string | string[])[]).filter((m) => {
    const [a, b] = typeof m === "string" ? [m.slice(0, m.indexOf(" ", 1)), m.slice(m.indexOf(" ", 1) + 1)] : m;
    return a! in vocab && b! in vocab && a! + b! in vocab;
  });
  let next = keep;
  const added = (j.added_tokens as { id: number }[]).map((t) => ({ ...t, id: t.id < keep ? t.id : next++ }));
  return { ...j, added_tokens: added, model: { ...j.model, vocab, merges } };
}

function tokenizerConfig(path: string, dropTemplate: boolean): Record<string, unknown> {
  const c = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  delete c["added_tokens_decoder"];
  if (dropTemplate) delete c["chat_template"];
  return c;
}

const jsonBytes = (v: unknown, pretty = false): Uint8Array => enc.encode(pretty ? JSON.stringify(v, null, 2) : JSON.stringify(v));

let tokenizerSeedCache: { mistral: CaseFiles; qwen3: CaseFiles } | null = null;
function tokenizerSeeds(): { mistral: CaseFiles; qwen3: CaseFiles } {
  tokenizerSeedCache ??= {
    mistral: new Map([
      ["tokenizer.json", jsonBytes(trimTokenizer(fixture("tokenizers", "mistral-7b", "tokenizer.json"), 400), true)],
      ["tokenizer_config.json", jsonBytes(tokenizerConfig(fixture("tokenizers", "mistral-7b", "tokenizer_config.json"), true), true)],
    ]),
    qwen3: new Map([
      ["tokenizer.json", jsonBytes(trimTokenizer(fixture("tokenizers", "qwen3", "tokenizer.json"), 400), true)],
      ["tokenizer_config.json", jsonBytes(tokenizerConfig(fixture("tokenizers", "qwen3", "tokenizer_config.json"), true), true)],
    ]),
  };
  return tokenizerSeedCache;
}

function hfModelSeed(family: "llama" | "qwen2"): CaseFiles {
  const tok = tokenizerSeeds()[family === "llama" ? "mistral" : "qwen3"];
  const V = family === "llama" ? 400 : 432;
  const cfg = tinyConfig(family, V);
  const config = {
    architectures: [family === "llama" ? "LlamaForCausalLM" : "Qwen2ForCausalLM"], model_type: family, vocab_size: V,
    hidden_size: cfg.C, intermediate_size: cfg.FF, num_hidden_layers: cfg.L, num_attention_heads: cfg.NH,
    num_key_value_heads: cfg.NKV, max_position_embeddings: cfg.maxSeqLen, rms_norm_eps: cfg.rmsEps,
    rope_theta: cfg.ropeTheta, rope_scaling: null, tie_word_embeddings: false, hidden_act: "silu",
    ...(family === "qwen2" ? { use_sliding_window: false, sliding_window: null, max_window_layers: 1 } : {}),
  };
  const tensors = paramSpecs(cfg).map((s, i) => ({ name: hfTensorName(s.name, cfg.family), shape: s.shape, data: weights(numel(s.shape), i) }));
  return new Map([
    ["config.json", jsonBytes(config, true)],
    ["model.safetensors", safetensorsBytes(tensors, { dtype: family === "llama" ? "F32" : "BF16" })],
    ...tok,
  ]);
}

// ---------------------------------------------------------------------------------------------------------------
// Mutating the formats

/** A safetensors file: its header JSON mutated (length recomputed, mostly), or its bytes with the header length. */
function mutateSafetensors(rng: Rng, bytes: Uint8Array, donors: Uint8Array[]): Uint8Array {
  const n = bytes.length >= 8 ? Number(Buffer.from(bytes).readBigUInt64LE(0)) : 0;
  if (n > 0 && 8 + n <= bytes.length && chance(rng, 0.5)) {
    const header = enc.encode(mutateJson(rng, text(bytes.subarray(8, 8 + n))));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(chance(rng, 0.85) ? header.length : n));
    return Buffer.concat([len, header, bytes.subarray(8 + n)]);
  }
  const fields: Field[] = [{ pos: 0, kind: "u64", len: 8, cls: "header length" }];
  return mutateBytes(rng, { bytes, fields, focus: [[0, 8 + Math.min(n, bytes.length)]] }, donors);
}

/** Where a Parquet file's footer and page headers are, and their integer fields (from the seed, which is valid). */
function parquetSeed(bytes: Uint8Array): ByteSeed {
  const fields: Field[] = [];
  const focus: [number, number][] = [];
  const size = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const footerLen = dv.getUint32(size - 8, true);
  const footerStart = size - 8 - footerLen;
  fields.push({ pos: size - 8, kind: "u32", len: 4, cls: "footer length" });
  thriftFields(bytes, footerStart, fields, "footer");
  focus.push([footerStart, size]);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + size) as ArrayBuffer;
  for (const group of parquetMetadata(file).row_groups)
    for (const chunk of group.columns) {
      const m = chunk.meta_data!;
      const start = Number(m.dictionary_page_offset || m.data_page_offset);
      const end = start + Number(m.total_compressed_size);
      const reader = { view: new DataView(file, start, end - start), offset: 0 };
      while (reader.offset < end - start - 1) {
        const at = start + reader.offset;
        const h = parquetHeader(reader);
        thriftFields(bytes, at, fields, "page header");
        focus.push([at, start + reader.offset]);
        reader.offset += h.compressed_page_size;
      }
    }
  // A footer field that changed length moves the footer's end: patch the length before "PAR1" to match.
  const fixup = (out: Uint8Array, pos: number, delta: number): void => {
    if (pos < footerStart) return;
    const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
    v.setUint32(out.length - 8, v.getUint32(out.length - 8, true) + delta, true);
  };
  return { bytes, fields, focus, fixup };
}

/** A JSON Lines or JSON text: one line (or the whole) mutated structurally, or its bytes. */
function mutateDataText(rng: Rng, name: string, content: string, donors: string[]): string {
  if (chance(rng, 0.35)) return mutateText(rng, content, donors);
  if (name.includes(".jsonl")) {
    const lines = content.split("\n");
    const i = rng.int(lines.length);
    if (chance(rng, 0.15)) lines.splice(i, 0, ...Array(1 + rng.int(3)).fill(lines[i] ?? ""));
    else lines[i] = mutateJson(rng, lines[i] ?? "");
    return lines.join("\n");
  }
  return mutateJson(rng, content, { pretty: chance(rng, 0.5) });
}

// ---------------------------------------------------------------------------------------------------------------
// The targets

const CONVERSATIONS: ChatMessage[][] = [
  [{ role: "user", content: "Hi there" }, { role: "assistant", content: "Hello! How can I help?" }],
  [{ role: "system", content: "Be brief." }, { role: "user", content: "What is 2+2?" }],
  [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "user", content: " c\n" }],
];

async function exerciseTemplate(steps: Steps, template: string, where: string): Promise<void> {
  for (const [i, messages] of CONVERSATIONS.entries())
    await steps.run(`${where} renderChat #${i}`, () =>
      renderChat(template, messages, { addGenerationPrompt: i !== 0, bosToken: "<s>", eosToken: "</s>", source: where }),
    );
}

const gguf: Target = {
  name: "gguf",
  seeds: () => [
    one("model.gguf", ggufSeed("llama", "F32")),
    one("model.gguf", ggufSeed("llama", "F16")),
    one("model.gguf", ggufSeed("qwen2", "F16")),
  ],
  mutate(rng, seeds) {
    const seed = pick(rng, seeds).get("model.gguf")!;
    const { fields, headerEnd } = ggufFields(seed);
    const donors = seeds.map((s) => s.get("model.gguf")!);
    return one("model.gguf", mutateBytes(rng, { bytes: seed, fields, focus: [[0, headerEnd]] }, donors));
  },
  async run(dir, _files, steps) {
    const path = join(dir, "model.gguf");
    const f = await steps.run("readGguf", () => readGguf(path));
    if (!f) return;
    await steps.run("llamaConfigFromGguf", () => llamaConfigFromGguf(f));
    const tok = await steps.run("tokenizerFromGguf", () => tokenizerFromGguf(f));
    if (tok) {
      await exerciseTokenizer(steps, tok, "GGUF tokenizer");
      if (tok.chatTemplate) await exerciseTemplate(steps, tok.chatTemplate, "tokenizer.chat_template");
    }
    for (const name of f.tensors.keys()) await steps.run(`readGgufTensor ${name}`, () => readGgufTensor(f, name));
    await steps.run("loadModel", () => loadModel(path));
  },
};

const safetensors: Target = {
  name: "safetensors",
  seeds() {
    const t = (name: string, shape: number[], phase: number): TensorToWrite => ({ name, shape, data: weights(numel(shape), phase) });
    const set = [t("a.weight", [2, 3], 0), t("b", [], 1), t("c.empty", [0, 4], 2), t("d.bias", [5], 3)];
    const shard = (tensors: TensorToWrite[]): Uint8Array => safetensorsBytes(tensors, { dtype: "BF16" });
    const index = {
      metadata: { total_size: 40 },
      weight_map: { "a.weight": "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", "d.bias": "model-00002-of-00002.safetensors" },
    };
    return [
      one("model.safetensors", safetensorsBytes(set)),
      one("model.safetensors", safetensorsBytes(set, { dtype: "F16", metadata: { note: "fuzz seed" } })),
      one("model.safetensors", rawSafetensors([
        { name: "i64", dtype: "I64", shape: [3], bytes: 24 }, { name: "f64", dtype: "F64", shape: [2, 1], bytes: 16 },
        { name: "i32", dtype: "I32", shape: [1], bytes: 4 }, { name: "u8", dtype: "U8", shape: [3], bytes: 3 },
        { name: "bool", dtype: "BOOL", shape: [1], bytes: 1 },
      ])),
      new Map([
        ["model.safetensors.index.json", jsonBytes(index, true)],
        ["model-00001-of-00002.safetensors", shard(set.slice(0, 2))],
        ["model-00002-of-00002.safetensors", shard(set.slice(3))],
      ]),
    ];
  },
  mutate(rng, seeds) {
    const seed = pick(rng, seeds);
    const name = pick(rng, [...seed.keys()]);
    const bytes = seed.get(name)!;
    if (name.endsWith(".json"))
      return withFile(seed, name, enc.encode(chance(rng, 0.7) ? mutateJson(rng, text(bytes), { pretty: true }) : mutateText(rng, text(bytes))));
    const donors = seeds.flatMap((s) => [...s.entries()].filter(([n]) => n.endsWith(".safetensors")).map(([, b]) => b));
    return withFile(seed, name, mutateSafetensors(rng, bytes, donors));
  },
  async run(dir, files, steps) {
    for (const name of [...files.keys()].filter((n) => n.endsWith(".safetensors")).sort())
      await steps.run(`readSafetensors ${name}`, () => readSafetensors(join(dir, name)));
    await steps.run("readSafetensorsFolder", () => readSafetensorsFolder(dir));
  },
};

const hfModel: Target = {
  name: "hf-model",
  seeds: () => [hfModelSeed("llama"), hfModelSeed("qwen2")],
  mutate(rng, seeds) {
    const seed = pick(rng, seeds);
    const name = pick(rng, ["config.json", "config.json", "config.json", "model.safetensors", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const bytes = seed.get(name)!;
    if (name === "model.safetensors") return withFile(seed, name, mutateSafetensors(rng, bytes, []));
    return withFile(seed, name, enc.encode(chance(rng, 0.8) ? mutateJson(rng, text(bytes), { pretty: true }) : mutateText(rng, text(bytes))));
  },
  async run(dir, _files, steps) {
    await steps.run("readHfConfig", () => readHfConfig(join(dir, "config.json")));
    const m = await steps.run("loadModel", () => loadModel(dir));
    if (m) await exerciseTokenizer(steps, m.tokenizer, "HF tokenizer");
  },
};

const parquet: Target = {
  name: "parquet",
  seeds: () =>
    readdirSync(fixture("data"))
      .filter((n) => n.endsWith(".parquet"))
      .sort()
      .map((n) => one(n, readFileSync(fixture("data", n)))),
  mutate(rng, seeds) {
    const seed = pick(rng, seeds);
    const [name, bytes] = [...seed][0]!;
    const donors = seeds.map((s) => [...s.values()][0]!);
    return one(name, mutateBytes(rng, parquetSeed(bytes), donors));
  },
  async run(dir, files, steps) {
    // One read (every column): each decodes in a worker of its own, whose start-up the time limit includes.
    await steps.run("readRows", () => readRows(join(dir, [...files.keys()][0]!)));
  },
};

const json: Target = {
  name: "json",
  seeds: () => [
    ...readdirSync(fixture("data"))
      .filter((n) => /\.(jsonl|json)(\.gz)?$/.test(n))
      .sort()
      .map((n) => one(n, readFileSync(fixture("data", n)))),
    one("pairs.jsonl", readFileSync(fixture("train", "pairs.jsonl"))),
  ],
  mutate(rng, seeds) {
    const seed = pick(rng, seeds);
    const [name, bytes] = [...seed][0]!;
    const donors = seeds.map((s) => [...s.values()][0]!).filter((b) => b[0] !== 0x1f).map(text);
    if (name.endsWith(".gz")) {
      if (chance(rng, 0.25)) return one(name, mutateBytes(rng, { bytes, focus: [[0, 10], [bytes.length - 8, bytes.length]] }));
      const inner = enc.encode(mutateDataText(rng, name, text(gunzipSync(bytes)), donors));
      return one(name, gzipSync(inner));
    }
    return one(name, enc.encode(mutateDataText(rng, name, text(bytes), donors)));
  },
  async run(dir, files, steps) {
    const path = join(dir, [...files.keys()][0]!);
    await steps.run("readRows", () => readRows(path));
    await steps.run("readRows columns", () => readRows(path, { columns: ["prompt", "chosen", "rejected"] }));
  },
};

const tokenizer: Target = {
  name: "tokenizer.json",
  seeds: () => [tokenizerSeeds().mistral, tokenizerSeeds().qwen3],
  mutate(rng, seeds) {
    const seed = pick(rng, seeds);
    const name = chance(rng, 0.8) ? "tokenizer.json" : "tokenizer_config.json";
    const t = text(seed.get(name)!);
    return withFile(seed, name, enc.encode(chance(rng, 0.75) ? mutateJson(rng, t, { pretty: true }) : mutateText(rng, t)));
  },
  async run(dir, _files, steps) {
    const tok = await steps.run("loadHfTokenizer", () => loadHfTokenizer(dir));
    if (tok) await exerciseTokenizer(steps, tok, "HF tokenizer");
  },
};

// Public chat templates (short forms of the ones the models ship) plus Qwen3's from the fixture.
const TEMPLATES: readonly string[] = [
  CHATML,
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + " +
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}" +
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}" +
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == " +
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are " +
    "supported!') }}{% endif %}{% endfor %}",
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n" +
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif " +
    "message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n" +
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}" +
    "{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + " +
    "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
  "{%- macro render(m) -%}{{ m.role|upper }}: {{ m.content|trim|indent(2) }}{%- endmacro -%}{% set ns = namespace(n=0) %}" +
    "{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ render(m) }}\n{% endfor %}{{ ns.n }} {{ messages|tojson(indent=2) }}" +
    "{% for i in range(messages|length) %}{{ i }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}",
];

const chatTemplate: Target = {
  name: "chat-template",
  seeds: () => {
    const qwen3 = JSON.parse(readFileSync(fixture("tokenizers", "qwen3", "tokenizer_config.json"), "utf8")).chat_template as string;
    return [...TEMPLATES, qwen3].map((t) => one("chat_template.jinja", enc.encode(t)));
  },
  mutate(rng, seeds) {
    const all = seeds.map((s) => text(s.get("chat_template.jinja")!));
    let t = pick(rng, all);
    for (let i = 0, n = 1 + (chance(rng, 0.4) ? rng.int(3) : 0); i < n; i++) t = mutateTemplate(rng, t, all);
    return one("chat_template.jinja", enc.encode(t));
  },
  async run(dir, files, steps) {
    await exerciseTemplate(steps, text(files.get("chat_template.jinja")!), join(dir, "chat_template.jinja"));
  },
};

export const TARGETS: readonly Target[] = [gguf, safetensors, hfModel, parquet, json, tokenizer, chatTemplate];

/**
 * Not a reader: a target whose case i does what i % 5 says (accept, a TsdpoError, a TypeError, a hang, a 160 MB
 * allocation), so the suite can check that the harness tells each apart.
 */
export const harnessCheck: Target = {
  name: "harness-check",
  seeds: () => [one("x", new Uint8Array(1))],
  mutate: (rng) => one("x", Uint8Array.of(rng.int(256))),
  async run(dir, _files, steps) {
    const i = Number(/case-(\d+)$/.exec(dir)![1]) % 5;
    await steps.run("behaviour", () => {
      if (i === 1) throw new TsdpoError("input", "a clean refusal");
      if (i === 2) throw new TypeError("a crash");
      if (i === 3) for (;;);
      if (i === 4) return new Float64Array(20_000_000).length;
      return 0;
    });
  },
};

export const targetByName = (name: string): Target => {
  const t = [...TARGETS, harnessCheck].find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target ${name} (there are ${TARGETS.map((x) => x.name).join(", ")})`);
  return t;
};

const seedCache = new Map<string, CaseFiles[]>();
/** The target's seeds, built once per process (worker). */
export function seedsOf(t: Target): CaseFiles[] {
  let s = seedCache.get(t.name);
  if (!s) seedCache.set(t.name, (s = t.seeds()));
  return s;
}
