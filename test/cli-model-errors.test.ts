// End-to-end: the built CLI (dist/src/cli/main.js) on broken model files and bad usage. For every case the process
// must exit with the documented code (1 for bad input, 2 for bad usage/config), print exactly one `error:` line on
// stderr that names the offending file and the specific problem (tensor, key, value), print no stack trace and
// write nothing to stdout or to --out. The broken inputs are derived from the shipped stories260K.gguf by patching
// bytes whose offsets this file finds with its own GGUF header walker (independent of src/io/gguf.ts), and from an
// HF folder written by `tsdpo export`.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/io/load.js";
import {
  INDEX_FILE, SINGLE_FILE, readSafetensors, readSafetensorsHeader, writeSafetensors, writeSafetensorsSharded,
  type TensorToWrite,
} from "../src/io/safetensors.js";
import { generate } from "../src/sample/generate.js";
import { fixture, repoRoot, storiesGguf, testBackend } from "./helpers.js";

const cli = join(repoRoot, "dist", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-cli-errors-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number | null; stdout: string; stderr: string }

function run(...args: string[]): Run {
  const env = { ...process.env };
  delete env["TSDPO_DEBUG"]; // would add stacks on purpose
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code, one `error:` line containing every fragment, no stack, nothing on stdout. Returns the message. */
function assertUserError(r: Run, code: 1 | 2, ...fragments: string[]): string {
  const show = `\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`;
  assert.equal(r.code, code, `exit code${show}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `stack trace printed${show}`);
  assert.doesNotMatch(r.stderr, /internal error/, `not reported as a user error${show}`);
  assert.match(r.stderr, /^error: [^\n]+\n$/, `expected exactly one "error: ..." line${show}`);
  for (const f of fragments) assert.ok(r.stderr.includes(f), `stderr lacks ${JSON.stringify(f)}${show}`);
  assert.equal(r.stdout, "", `stdout should be empty${show}`);
  return r.stderr;
}

let caseCount = 0;
const tmpPath = (name: string): string => join(tmp, `${caseCount++}-${name}`);

// ---------------------------------------------------------------------------------------------------------------
// A GGUF header walker that records where each field lives, so tests can patch one field without guessing offsets.

interface TensorFields { name: string; nameAt: number; dimsAt: number[]; dims: number[]; typeAt: number; offset: number }
interface GgufLayout {
  tensorCountAt: number;
  keyAt: Map<string, number>; // offset of each key's string bytes (after its u64 length)
  valueAt: Map<string, number>; // offset of each value (after its u32 type)
  tensors: TensorFields[];
  dataStart: number;
}

function walkGguf(b: Buffer): GgufLayout {
  let p = 8; // magic, version
  const u32 = (): number => { const v = b.readUInt32LE(p); p += 4; return v; };
  const u64 = (): number => { const v = Number(b.readBigUInt64LE(p)); p += 8; return v; };
  const str = (): string => { const n = u64(); const s = b.toString("utf8", p, p + n); p += n; return s; };
  const scalarBytes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      const item = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skip(item);
    } else p += scalarBytes[type]!;
  };
  const tensorCountAt = p;
  const nTensors = u64();
  const nKv = u64();
  const keyAt = new Map<string, number>();
  const valueAt = new Map<string, number>();
  for (let i = 0; i < nKv; i++) {
    const at = p + 8;
    const key = str();
    keyAt.set(key, at);
    const type = u32();
    valueAt.set(key, p);
    skip(type);
  }
  const tensors: TensorFields[] = [];
  for (let i = 0; i < nTensors; i++) {
    const nameAt = p + 8;
    const name = str();
    const nDims = u32();
    const dimsAt: number[] = [];
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) { dimsAt.push(p); dims.push(u64()); }
    const typeAt = p;
    u32();
    tensors.push({ name, nameAt, dimsAt, dims, typeAt, offset: u64() });
  }
  return { tensorCountAt, keyAt, valueAt, tensors, dataStart: Math.ceil(p / 32) * 32 };
}

const gguf = readFileSync(storiesGguf);
const layout = walkGguf(gguf);
const tensorField = (name: string): TensorFields => {
  const t = layout.tensors.find((x) => x.name === name);
  assert.ok(t, `stories260K has no tensor ${name}`);
  return t;
};

/** Writes a patched copy of stories260K.gguf and returns its path. */
function patchedGguf(name: string, patch: (b: Buffer) => Buffer | void): string {
  const b = Buffer.from(gguf);
  const out = patch(b) ?? b;
  const path = tmpPath(name);
  writeFileSync(path, out);
  return path;
}

const PROMPT = "Once upon a time";

describe("CLI on a broken GGUF", () => {
  test("sanity: the walker agrees with the file (3 + 5·9 tensors, data last)", () => {
    assert.equal(layout.tensors.length, 48);
    assert.equal(layout.tensors[0]!.name, "token_embd.weight");
    assert.deepEqual(tensorField("blk.0.ffn_up.weight").dims, [64, 172]);
    const last = layout.tensors.at(-1)!;
    assert.equal(layout.dataStart + last.offset + last.dims.reduce((a, x) => a * x, 4), gguf.length);
  });

  test("truncated inside the metadata names the key being read", () => {
    const cut = layout.valueAt.get("tokenizer.ggml.scores")! + 100;
    const path = patchedGguf("trunc-meta.gguf", (b) => b.subarray(0, cut));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "truncated", "tokenizer.ggml.scores", `file has ${cut}`);
  });

  test("truncated inside the tensor infos names the tensor being read", () => {
    const t = tensorField("blk.1.attn_q.weight");
    const path = patchedGguf("trunc-infos.gguf", (b) => b.subarray(0, t.dimsAt[1]! + 3));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "truncated", "dim 1 of blk.1.attn_q.weight");
  });

  test("truncated in the tensor data names the first tensor cut short; export writes nothing", () => {
    const cut = gguf.length - 20_000;
    const first = layout.tensors.find((t) => layout.dataStart + t.offset + t.dims.reduce((a, x) => a * x, 4) > cut)!;
    assert.equal(first.name, "blk.4.ffn_up.weight"); // ffn_up (44 KB) then ffn_norm (256 B) end the file
    const path = patchedGguf("trunc-data.gguf", (b) => b.subarray(0, cut));
    const out = tmpPath("export-out");
    assertUserError(run("export", "--model", path, "--format", "hf", "--out", out), 1,
      path, "truncated", `tensor ${first.name} ends at byte`, `${cut} bytes`);
    assert.equal(existsSync(out), false, "export created its output folder for a model it could not load");
  });

  test("wrong magic", () => {
    const path = patchedGguf("magic.gguf", (b) => void b.write("GGML", 0, "latin1"));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1, path, "not a GGUF file");
  });

  test("unsupported version", () => {
    const path = patchedGguf("version.gguf", (b) => void b.writeUInt32LE(4, 4));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1, path, "GGUF version 4", "2 and 3");
  });

  test("a huge tensor count is reported as corrupt, not as a truncation somewhere later", () => {
    const path = patchedGguf("count.gguf", (b) => void b.writeBigUInt64LE(1n << 40n, layout.tensorCountAt));
    const msg = assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "tensor count 1099511627776", "corrupt");
    assert.doesNotMatch(msg, /truncated/);
  });

  test("a quantised type tsdpo does not read (Q2_K) is refused by name with what to do", () => {
    const t = tensorField("blk.0.attn_q.weight");
    const path = patchedGguf("q2k.gguf", (b) => void b.writeUInt32LE(10, t.typeAt));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "tensor blk.0.attn_q.weight is Q2_K", "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K", "Q4_K_M");
  });

  test("a tensor with the wrong shape names the tensor, both shapes and the config", () => {
    const t = tensorField("blk.1.ffn_up.weight");
    const path = patchedGguf("shape.gguf", (b) => void b.writeBigUInt64LE(171n, t.dimsAt[1]!));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "tensor blk.1.ffn_up.weight has shape [171, 64]", "implies [172, 64]", "FF=172");
  });

  test("a missing tensor is named (renamed in the header to a same-length name)", () => {
    const t = tensorField("blk.2.attn_v.weight");
    const path = patchedGguf("missing.gguf", (b) => void b.write("blk.2.attn_x.weight", t.nameAt, "utf8"));
    // logprobs fails on the model before it reads the (nonexistent) data file
    assertUserError(run("logprobs", "--model", path, "--data", join(tmp, "never-read.jsonl")), 1,
      path, "tensor blk.2.attn_v.weight is missing");
  });

  test("a vocabulary larger than the embedding table", () => {
    const path = patchedGguf("vocab.gguf", (b) => {
      for (const name of ["token_embd.weight", "output.weight"]) b.writeBigUInt64LE(511n, tensorField(name).dimsAt[1]!);
    });
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "tokenizer.ggml.tokens has 512 tokens but token_embd.weight has only 511 rows");
  });

  test("a GGUF without a vocabulary says so and what to use instead", () => {
    const at = layout.keyAt.get("tokenizer.ggml.model")!;
    const path = patchedGguf("novocab.gguf", (b) => void b.write("tokenizer.ggml.xxxxx", at, "utf8"));
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1,
      path, "no tokenizer vocabulary", "tokenizer.ggml.model");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// HF folders, from `tsdpo export` of stories260K.

let goodHf = "";
let goodTensors: TensorToWrite[] = [];

// One export serves the HF cases and the --json cross-check below.
before(() => {
  goodHf = join(tmp, "good-hf");
  const r = run("export", "--model", storiesGguf, "--format", "hf", "--out", goodHf);
  assert.equal(r.code, 0, `export failed:\n${r.stderr}`);
  for (const f of ["config.json", SINGLE_FILE, "tokenizer.json"])
    assert.ok(existsSync(join(goodHf, f)), `export did not write ${f}`);
  const st = readSafetensors(join(goodHf, SINGLE_FILE));
  goodTensors = [...st.tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data as Float32Array }));
});

function copyGood(name: string): string {
  const dir = tmpPath(name);
  cpSync(goodHf, dir, { recursive: true });
  return dir;
}

function rewriteConfig(dir: string, edit: (cfg: Record<string, unknown>) => void): string {
  const path = join(dir, "config.json");
  const cfg = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(path, JSON.stringify(cfg, null, 2) + "\n");
  return path;
}

describe("CLI on a broken Hugging Face folder", () => {
  test("truncated model.safetensors names the tensor that runs past the end", () => {
    const dir = copyGood("hf-trunc");
    const file = join(dir, SINGLE_FILE);
    const h = readSafetensorsHeader(file);
    const cut = h.fileSize - 5000;
    truncateSync(file, cut);
    // The header is checked entry by entry in file order; the first entry past the new end is the one named.
    const first = [...h.tensors.values()].find((e) => h.dataStart + e.end > cut)!;
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      file, `tensor ${JSON.stringify(first.name)}`, "truncated");
  });

  test("a corrupt header JSON in model.safetensors", () => {
    const dir = copyGood("hf-header");
    const file = join(dir, SINGLE_FILE);
    const b = readFileSync(file);
    const at = b.indexOf('"dtype"', 8, "latin1");
    b.write("!", at + 7, "latin1"); // the ':' after "dtype"
    writeFileSync(file, b);
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1, file, "header is not valid UTF-8 JSON");
  });

  test("config.json with an unknown model_type", () => {
    const dir = copyGood("hf-gptneox");
    const cfg = rewriteConfig(dir, (c) => { c["model_type"] = "gpt_neox"; });
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      cfg, 'model_type "gpt_neox" is not supported', "llama");
  });

  test("config.json with a wrong-typed key", () => {
    const dir = copyGood("hf-type");
    const cfg = rewriteConfig(dir, (c) => { c["hidden_size"] = "64"; });
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      cfg, '"hidden_size" must be a positive integer, got "64"');
  });

  test("invalid JSON in config.json (a doubled comma) is located by line and column", () => {
    const dir = copyGood("hf-json");
    const path = join(dir, "config.json");
    const text = readFileSync(path, "utf8").replace(/("hidden_size": \d+,)/, "$1,");
    writeFileSync(path, text);
    const lines = text.split("\n");
    const line = lines.findIndex((l) => l.includes('"hidden_size"'));
    const column = lines[line]!.indexOf(",,") + 2; // the second comma, 1-based
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      path, "not valid JSON", `at line ${line + 1} column ${column}`);
  });

  test("invalid JSON whose parser message quotes several lines is still printed as one line", () => {
    const dir = copyGood("hf-json2");
    const path = join(dir, "config.json");
    writeFileSync(path, readFileSync(path, "utf8").replace(/("hidden_size": )\d+/, "$1"));
    // V8 quotes the text around the error ('..."en_size": , "inter"...') without a position; the CLI keeps it.
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1, path, "not valid JSON");
  });

  test("a tokenizer.json with more tokens than the embedding has rows", () => {
    const dir = copyGood("hf-vocab");
    cpSync(fixture("tokenizers", "mistral-7b", "tokenizer.json"), join(dir, "tokenizer.json"));
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      join(dir, "tokenizer.json"), "token ids up to 31999", "vocab_size 512");
  });

  test("missing tokenizer.json", () => {
    const dir = copyGood("hf-notok");
    unlinkSync(join(dir, "tokenizer.json"));
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1, dir, "no tokenizer.json");
  });

  test("a tensor with the wrong shape names the tensor and both shapes", () => {
    const dir = copyGood("hf-shape");
    const name = "model.layers.1.mlp.up_proj.weight";
    const tensors = goodTensors.map((t) => (t.name === name ? { ...t, shape: [...t.shape].reverse() } : t));
    assert.deepEqual(goodTensors.find((t) => t.name === name)!.shape, [172, 64]);
    writeSafetensors(join(dir, SINGLE_FILE), tensors);
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      dir, `tensor ${name} has shape [64, 172]`, "implies [172, 64]");
  });

  test("a missing tensor is named; export writes nothing", () => {
    const dir = copyGood("hf-missing");
    const name = "model.layers.2.self_attn.v_proj.weight";
    writeSafetensors(join(dir, SINGLE_FILE), goodTensors.filter((t) => t.name !== name));
    const out = tmpPath("export-out");
    assertUserError(run("export", "--model", dir, "--format", "hf", "--out", out), 1, dir, `tensor ${name} is missing`);
    assert.equal(existsSync(out), false, "export created its output folder for a model it could not load");
  });

  test("a shard listed in model.safetensors.index.json is missing", () => {
    const dir = copyGood("hf-shard");
    unlinkSync(join(dir, SINGLE_FILE));
    const files = writeSafetensorsSharded(dir, goodTensors, { maxShardBytes: 300_000 });
    assert.ok(files.includes(INDEX_FILE) && files.length >= 4, `expected several shards, got ${files.join(", ")}`);
    const gone = files[1]!;
    unlinkSync(join(dir, gone));
    assertUserError(run("generate", "--model", dir, "--prompt", PROMPT), 1,
      join(dir, INDEX_FILE), `shard ${gone}`, "is missing");
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("CLI usage errors", () => {
  test("unknown command", () => {
    assertUserError(run("frobnicate"), 2, 'unknown command "frobnicate"', "--help");
  });
  test("unknown option", () => {
    assertUserError(run("generate", "--prompt", PROMPT, "--temprature", "0.5"), 2, "generate", "--temprature");
  });
  test("missing --prompt", () => {
    assertUserError(run("generate", "--model", storiesGguf), 2, "--prompt is required");
  });
  test("bad --temperature value", () => {
    assertUserError(run("generate", "--prompt", PROMPT, "--temperature", "hot"), 2, "--temperature hot", "a number ≥ 0");
  });
  test("nonexistent model path", () => {
    const path = join(tmp, "no-such-model.gguf");
    assertUserError(run("generate", "--model", path, "--prompt", PROMPT), 1, path, "no such model file or folder");
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("generate --json on the good model", () => {
  const N = 24;
  test("prints parseable {ids, text} equal to the library's greedy generation, from GGUF and the exported folder", () => {
    const r = run("generate", "--model", storiesGguf, "--prompt", PROMPT, "--max-new-tokens", String(N), "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const lines = r.stdout.split("\n");
    assert.equal(lines.length, 2, "one JSON line then a newline");
    assert.equal(lines[1], "");
    const out = JSON.parse(lines[0]!) as { ids: number[]; text: string; prompt_ids: number[] };
    assert.ok(Array.isArray(out.ids) && out.ids.every((x) => Number.isInteger(x)), "ids is a list of integers");
    assert.equal(typeof out.text, "string");

    const { model, tokenizer } = loadModel(storiesGguf);
    const promptIds = [tokenizer.bosId!, ...tokenizer.encode(PROMPT)];
    assert.deepEqual(out.prompt_ids, promptIds);
    const want = generate(testBackend(), model, promptIds, [tokenizer.eosId!], {
      maxNewTokens: N, temperature: 0, topK: 0, topP: 1, seed: 0,
    });
    assert.deepEqual(out.ids, want.ids);
    assert.equal(out.text, tokenizer.decode(out.ids));
    // The ids continue the prompt's text: decoding prompt + continuation in one go gives prompt text + text.
    assert.equal(tokenizer.decode([...promptIds, ...out.ids]), PROMPT + out.text);
    assert.ok(out.text.trim().length > 10, `expected some story text, got ${JSON.stringify(out.text)}`);

    // The exported folder goes through other code (safetensors, Q/K un-permutation, tokenizer.json through
    // @huggingface/tokenizers) and must produce the same continuation.
    const hf = run("generate", "--model", goodHf, "--prompt", PROMPT, "--max-new-tokens", String(N), "--json");
    assert.equal(hf.code, 0, hf.stderr);
    const hfOut = JSON.parse(hf.stdout) as { ids: number[]; text: string; prompt_ids: number[] };
    assert.deepEqual(hfOut.prompt_ids, promptIds);
    assert.deepEqual(hfOut.ids, out.ids);
    assert.equal(hfOut.text, out.text);
  });
});
