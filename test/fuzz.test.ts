// Fuzzing the readers (test/fuzz/): a fixed 500-case slice per reader of the seeded mutational fuzzer, the harness
// checked against a target that hangs, crashes and over-allocates on purpose, and what the fuzzer found, rebuilt
// here as regression tests that each expect the clean TsdpoError (each input is the fuzzer's case cut down to the
// bytes or keys that matter). bench/fuzz.mjs runs 10,000 cases per reader.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { readGguf, readGgufTensor } from "../src/io/gguf.js";
import { type GgufMetaValue, ggufChunks, gv, readGgufMetadataTyped } from "../src/io/ggufwriter.js";
import { readHfConfig } from "../src/io/hfconfig.js";
import { loadModel } from "../src/io/load.js";
import { openSafetensorsFolder, readSafetensorsHeader } from "../src/io/safetensors.js";
import { readRows } from "../src/data/read.js";
import { renderChat } from "../src/tokenizer/chat.js";
import { Template } from "@huggingface/jinja";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { fuzzTarget } from "./fuzz/harness.js";
import { ggufFields } from "./fuzz/mutate.js";
import { type CaseFiles, TARGETS, seedsOf, targetByName } from "./fuzz/targets.js";
import { fixture } from "./helpers.js";

// The suite's slice: seed 1, cases 0..499, the first 500 of bench/fuzz.mjs's run.
const SEED = 1;
const CASES = 500;

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-fuzz-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/** Writes `files` into a fresh folder and returns its path. */
function folder(files: CaseFiles | Map<string, Uint8Array | string>): string {
  const dir = join(tmp, `case-${dirs++}`);
  mkdirSync(dir);
  for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
  return dir;
}

/** Expects `f` to throw (or reject with) a TsdpoError whose one-line message matches `pattern`. */
async function refuses(f: () => unknown, pattern: RegExp): Promise<void> {
  let result: unknown;
  try {
    result = await f();
  } catch (e) {
    assert.ok(e instanceof TsdpoError, `expected a TsdpoError, got ${e instanceof Error ? e.stack : String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(e.message.length < 800, `the message runs to ${e.message.length} characters`);
    return;
  }
  assert.fail(`expected a TsdpoError matching ${pattern}, got a result: ${String(result).slice(0, 200)}`);
}

const deepArray = (depth: number): string => "[".repeat(depth) + "]".repeat(depth);
const json = (v: unknown): string => JSON.stringify(v, null, 2);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

test("the harness tells a clean refusal from a crash, a hang and an oversized allocation", async () => {
  const s = await fuzzTarget("harness-check", { seed: SEED, cases: 10, timeoutMs: 500 });
  assert.equal(s.cases, 10);
  assert.equal(s.accepted, 2);
  assert.equal(s.tsdpoErrors, 2);
  const kinds = s.failures.map((f) => `${f.index % 5} ${f.kind}`).sort();
  assert.deepEqual(kinds, ["2 crash", "2 crash", "3 timeout", "3 timeout", "4 allocation", "4 allocation"]);
  assert.match(s.failures.find((f) => f.kind === "crash")!.detail, /TypeError: a crash/);
});

for (const t of TARGETS)
  test(`fuzz ${t.name}: ${CASES} mutated inputs give only TsdpoErrors or results, within 2 s and bounded allocations`, async () => {
    const s = await fuzzTarget(t.name, { seed: SEED, cases: CASES });
    const report = s.failures.map((f) => `  ${f.key} (node bench/fuzz.mjs --readers ${t.name} saves it) ${f.kind}: ${f.detail}`);
    assert.equal(s.failures.length, 0, `${s.failures.length} failing cases:\n${report.join("\n")}`);
    assert.equal(s.cases, CASES);
    // The mutators must reach both outcomes, or the slice proves little.
    assert.ok(s.tsdpoErrors > 0, "no case was refused: the mutations do not reach the reader");
    assert.ok(s.accepted > 0, "no case was accepted: the mutations destroy every input");
  });

describe("what the fuzzer found: GGUF", () => {
  const seed = seedsOf(targetByName("gguf"))[0]!.get("model.gguf")!; // a tiny llama with stories260K's vocabulary
  const seedPath = join(folder(new Map([["seed.gguf", seed]])), "seed.gguf");

  /** The seed with metadata keys changed, rewritten by the writer (so the file is well-formed). */
  function ggufWith(changes: Record<string, GgufMetaValue>, extra: [string, GgufMetaValue][] = []): string {
    const f = readGguf(seedPath);
    const metadata = readGgufMetadataTyped(seedPath).map(([k, v]): [string, GgufMetaValue] => [k, changes[k] ?? v]);
    const tensors = [...f.tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: "F32" as const, data: readGgufTensor(f, t.name) }));
    const bytes = Buffer.concat(ggufChunks({ metadata: [...metadata, ...extra], tensors }));
    return join(folder(new Map([["model.gguf", bytes]])), "model.gguf");
  }

  /** The seed with one header field (the first of its class, see ggufFields) set to `value`. */
  function ggufPatched(cls: string, value: bigint): Buffer {
    const bytes = Buffer.from(seed);
    const f = ggufFields(bytes).fields.find((x) => x.cls === cls)!;
    if (f.kind === "u32") bytes.writeUInt32LE(Number(value), f.pos);
    else bytes.writeBigUInt64LE(value, f.pos);
    return bytes;
  }

  test("a quantised tensor's dims are never trusted for an allocation (was: RangeError, Invalid typed array length)", async () => {
    // token_embd.weight made Q4_0 (ggml type 2) of 2^40 x 2^12 elements: readGguf cannot size-check a quantised type
    const b = Buffer.from(seed);
    const fields = ggufFields(b).fields;
    b.writeUInt32LE(2, fields.find((x) => x.cls === "tensor type")!.pos);
    const [d0, d1] = fields.filter((x) => x.cls === "dim");
    b.writeBigUInt64LE(2n ** 40n, d0!.pos);
    b.writeBigUInt64LE(2n ** 12n, d1!.pos);
    const f = readGguf("quantised.gguf", b);
    await refuses(() => readGgufTensor(f, "token_embd.weight"), /token_embd\.weight is Q4_0; tsdpo reads F32, F16 and BF16/);
    await refuses(() => loadModel(join(folder(new Map([["m.gguf", b]])), "m.gguf")), /token_embd\.weight has dims \[1099511627776, 4096\]/);
  });

  test("general.alignment 0 is refused (was: every offset NaN, and NaN passes every bounds check)", async () => {
    // written as 32 (the writer refuses anything else that is not a multiple of 8), then the u32 after the key and
    // its type set to 0 and to 24
    const path = ggufWith({}, [["general.alignment", gv.u32(32)]]);
    const at = readFileSync(path).indexOf("general.alignment") + "general.alignment".length + 4;
    for (const value of [0, 24]) {
      const b = readFileSync(path);
      assert.equal(b.readUInt32LE(at), 32);
      b.writeUInt32LE(value, at);
      await refuses(() => readGguf("aligned.gguf", b), new RegExp(`general\\.alignment is ${value}, not a power of two`));
    }
  });

  test("an array count the rest of the file cannot hold, and arrays nested 20 deep, are refused", async () => {
    // the first array's count (tokenizer.ggml.tokens, 512 strings) set to 2^32 - 1
    await refuses(() => readGguf("count.gguf", ggufPatched("array length", 0xffffffffn)), /truncated or corrupt: array tokenizer\.ggml\.tokens \(at offset \d+\) claims 4294967295 items of string/);
    // the first array's item type set to 99 (no such type) and its count to 2^53 - 1 (was: RangeError, Invalid array
    // length: a count of an unknown type was not checked)
    const b = Buffer.from(seed);
    const fields = ggufFields(b).fields;
    b.writeUInt32LE(99, fields.find((x) => x.cls === "array item type")!.pos);
    b.writeBigUInt64LE(2n ** 53n - 1n, fields.find((x) => x.cls === "array length")!.pos);
    await refuses(() => readGguf("unknown.gguf", b), /claims 9007199254740991 items of type 99/);
    let nested: GgufMetaValue = { type: "array", itemType: "u8", value: [1] };
    for (let i = 0; i < 20; i++) nested = { type: "array", itemType: "array", value: [nested] } as GgufMetaValue;
    await refuses(() => readGguf(ggufWith({}, [["fuzz.nested", nested]])), /nests arrays more than 16 deep/);
  });

  test("tensors whose data overlap are refused (a small file could otherwise declare any number of full-size tensors)", async () => {
    // every tensor's offset set to 0
    const b = Buffer.from(seed);
    for (const f of ggufFields(b).fields.filter((x) => x.cls === "tensor offset")) b.writeBigUInt64LE(0n, f.pos);
    await refuses(() => readGguf("overlap.gguf", b), /tensors .* and .* overlap/);
  });

  test("sizes in the metadata are checked against the tensors before the model is allocated (was: a hang, or RangeError)", async () => {
    await refuses(() => loadModel(ggufWith({ "llama.block_count": gv.u32(0xffffffff) })), /block_count is 4294967295 but the weights hold only \d+ tensors/);
    await refuses(() => loadModel(ggufWith({ "llama.feed_forward_length": gv.u32(0x7fffffff) })), /has shape .* but the config .* implies/);
  });
});

describe("what the fuzzer found: Hugging Face folders and safetensors", () => {
  const seed = seedsOf(targetByName("hf-model"))[0]!; // config.json, model.safetensors, tokenizer.json of a tiny llama
  const config = JSON.parse(text(seed.get("config.json")!)) as Record<string, unknown>;
  const withConfig = (changes: Record<string, unknown>): string =>
    folder(new Map([...seed, ["config.json", enc(json({ ...config, ...changes }))]]));
  const withRawConfig = (key: string, raw: string): string =>
    folder(new Map([...seed, ["config.json", enc(json({ ...config, [key]: "RAW" }).replace('"RAW"', raw))]]));

  test("config.json sizes are checked against the weights before the model is allocated (was: a hang, or RangeError)", async () => {
    await refuses(() => loadModel(withConfig({ num_hidden_layers: 2 ** 53 - 1 })), /num_hidden_layers is 9007199254740991 but the weights hold only \d+ tensors/);
    await refuses(() => loadModel(withConfig({ intermediate_size: 2 ** 31 - 1 })), /has shape .* but the config .* implies/);
  });

  test("a value nested 100,000 deep gets a short message (was: RangeError, Maximum call stack size exceeded)", async () => {
    const dir = withRawConfig("hidden_size", deepArray(100_000));
    await refuses(() => readHfConfig(join(dir, "config.json")), /key "hidden_size" must be a positive integer, got \[\[\[\[.*…; fix config.json/);
    await refuses(() => loadModel(dir), /hidden_size/);
  });

  test("a safetensors header or index nested 100,000 deep gets a short message (was: RangeError, Maximum call stack size exceeded)", async () => {
    const header = `{"a":{"dtype":"F32","shape":${deepArray(100_000)},"data_offsets":[0,0]}}`;
    const st = Buffer.concat([Buffer.alloc(8), Buffer.from(header)]);
    st.writeBigUInt64LE(BigInt(header.length));
    await refuses(() => readSafetensorsHeader(join(folder(new Map([["model.safetensors", st]])), "model.safetensors")), /"shape" must be a list of non-negative integers, got \[\[\[.*…/);
    const index = `{"weight_map": {"a": ${deepArray(100_000)}}}`;
    await refuses(() => openSafetensorsFolder(folder(new Map([["model.safetensors.index.json", index]]))), /weight_map maps tensor "a" to \[\[\[.*…, which is not a file name/);
  });
});

describe("what the fuzzer found: tokenizer.json", () => {
  const seed = seedsOf(targetByName("tokenizer.json"))[0]!; // Mistral's tokenizer.json cut to 400 ids
  const tok = JSON.parse(text(seed.get("tokenizer.json")!)) as Record<string, any>;
  const withTokenizer = (edit: (j: Record<string, any>) => void): string => {
    const j = structuredClone(tok);
    edit(j);
    return folder(new Map([...seed, ["tokenizer.json", enc(json(j))]]));
  };

  test("vocabulary ids that are not token ids are refused at load (was: RangeError in decode, for ids like \"29\")", async () => {
    await refuses(() => loadHfTokenizer(withTokenizer((j) => (j.model.vocab["▁t"] = "29"))), /model\.vocab gives token "▁t" the id "29", not a token id/);
    await refuses(() => loadHfTokenizer(withTokenizer((j) => (j.added_tokens[1].id = 1.5))), /added_tokens\[1\] needs a token id/);
    await refuses(() => loadHfTokenizer(withTokenizer((j) => (j.model.vocab = false))), /model\.vocab is false, not a vocabulary/);
  });

  test("ids the library produces outside the vocabulary are refused (was: RangeError, token id undefined)", async () => {
    // no byte-fallback tokens and no "<unk>" in the vocabulary: the library has no id for "é"
    const dir = withTokenizer((j) => {
      for (const k of Object.keys(j.model.vocab)) if (k.startsWith("<0x") || k === "<unk>") delete j.model.vocab[k];
      j.added_tokens = j.added_tokens.filter((t: { content: string }) => t.content !== "<unk>");
    });
    await refuses(() => loadHfTokenizer(dir).encode("é"), /produced the token id undefined, which is not among the \d+ ids/);
  });

  test("the library's own failures are reported against the file (was: TypeError)", async () => {
    const badTemplate = withTokenizer((j) => (j.post_processor.single[0] = 0));
    await refuses(() => loadHfTokenizer(badTemplate).encodeWithSpecials("hi"), /@huggingface\/tokenizers failed to encode \(Cannot use 'in' operator/);
  });

  test("setting strings and added tokens of 64k and 1M characters are refused at load (was: a second per encode; SyntaxError)", async () => {
    await refuses(
      () => loadHfTokenizer(withTokenizer((j) => (j.model.end_of_word_suffix = "\u2581".repeat(1 << 16)))),
      /model\.end_of_word_suffix is a string of 65536 characters/,
    );
    // an added token of 1M characters: the library built its added-token matcher for a second at every start
    await refuses(
      () => loadHfTokenizer(withTokenizer((j) => (j.added_tokens[1].content = "a".repeat(1 << 20)))),
      /added_tokens\[1\] has a "content" of 1048576 characters/,
    );
    // the library turns a Replace pattern into a RegExp, which V8 refuses as too large (at the first decode)
    await refuses(
      () => loadHfTokenizer(withTokenizer((j) => (j.decoder.decoders[0].pattern.String = "é".repeat(1 << 20)))),
      /decoder\.decoders\[0\]\.pattern\.String is a string of 1048576 characters/,
    );
  });
});

describe("what the fuzzer found: chat templates", () => {
  const messages = [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }];
  const runaway = [
    "{% for i in range(2147483647) %}x{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(3000) %}{% for j in range(3000) %}{{ j }}{% endfor %}{% endfor %}",
    "{% set xs = range(40000) %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}{% endfor %}",
    "{{ 'x'|indent(536870000, true) }}",
    "{{ messages|tojson(indent=400000000) }}",
  ];
  for (const template of runaway)
    test(`${template.slice(0, 60)}… stops with a config error (was: a hang, or the memory filled)`, async () => {
      const t0 = performance.now();
      await refuses(() => renderChat(template, messages, { addGenerationPrompt: true }), /the chat template is too expensive to render/);
      assert.ok(performance.now() - t0 < 1500, `took ${(performance.now() - t0).toFixed(0)} ms`);
    });

  test("templates within the bounds render exactly as the engine's own Template.render does", () => {
    const seeds = seedsOf(targetByName("chat-template")).map((f) => text(f.get("chat_template.jinja")!));
    const conversations = [messages, [{ role: "system", content: "Be brief." }, ...messages, { role: "user", content: " a\nb " }]];
    let rendered = 0;
    for (const template of seeds)
      for (const msgs of conversations)
        for (const addGenerationPrompt of [false, true]) {
          const vars = { messages: msgs, add_generation_prompt: addGenerationPrompt, bos_token: "<s>", eos_token: "</s>" };
          let want: string;
          try {
            want = new Template(template).render(vars);
          } catch {
            continue; // a template that refuses this conversation (e.g. a system message) is not the point here
          }
          assert.equal(renderChat(template, msgs, { addGenerationPrompt, bosToken: "<s>", eosToken: "</s>" }), want);
          rendered++;
        }
    assert.ok(rendered >= 20, `only ${rendered} renderings compared`);
  });
});

describe("what the fuzzer found: Parquet", () => {
  /** A fixture with some bytes changed, as the fuzzer's case had them. */
  function patched(name: string, bytes: Record<number, number>): string {
    const b = readFileSync(fixture("data", name));
    for (const [at, v] of Object.entries(bytes)) b[Number(at)] = v;
    return join(folder(new Map([[name, b]])), name);
  }

  test("a run-length run far longer than its page stops at the time limit (was: hyparquet looped for minutes)", async () => {
    // byte 45 is in the definition levels of the first data page: a bit-packed run header 0x84 of width 0
    await refuses(() => readRows(patched("renamed-prompt.parquet", { 45: 0x84 })), /decoding the Parquet data did not finish within 0\.5 s/);
  });

  test("a schema whose num_children goes backwards is refused (was: hyparquet's GeoParquet pass looped forever in-process)", async () => {
    // byte 167 of sft.parquet is in the footer's schema: a list's num_children (zigzag 2) becomes -1
    await refuses(() => readRows(patched("sft.parquet", { 167: 1 })), /cannot read the Parquet data|not a readable Parquet file|corrupt/);
  });

  test("a page header without its size is refused (was: hyparquet read the page at offset NaN, i.e. 0, forever)", async () => {
    await refuses(() => readRows(patched("renamed-prompt.parquet", { 39: 103, 40: 255, 41: 255 })), /does not give the page's size/);
    await refuses(() => readRows(patched("arrow-rs-standard.parquet", { 88: 1, 89: 0, 91: 0 })), /the Parquet file is corrupt|not a readable Parquet file/);
  });

  test("a page that claims to expand a thousandfold beyond MB-sized pages is refused before hyparquet allocates it", async () => {
    // the first page header of standard.parquet starts 0x15 <type> 0x15 <uncompressed size>; set that size to 2^30
    const b = readFileSync(fixture("data", "standard.parquet"));
    let at = 4 + 1;
    while (b[at]! & 0x80) at++;
    at++;
    assert.equal(b[at], 0x15);
    let end = at + 1;
    while (b[end]! & 0x80) end++;
    const huge = [0x80, 0x80, 0x80, 0x80, 0x08]; // zigzag(2^30) = 2^31 as a varint
    const file = Buffer.concat([b.subarray(0, at + 1), Buffer.from(huge), b.subarray(end + 1)]);
    const path = join(folder(new Map([["big.parquet", file]])), "big.parquet");
    await refuses(() => readRows(path), /claims to expand from \d+ to 1073741824 bytes/);
  });
});
