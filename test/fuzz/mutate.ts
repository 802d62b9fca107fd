// Mutators for the fuzzer: byte-level ones for every format (flip, set, truncate, duplicate, delete, insert, splice
// from another seed), field-level ones that set a located header field to an extreme value (GGUF counts, lengths,
// dims and offsets; the safetensors header length; Parquet thrift integers and the footer length), and structural
// ones for text formats (a JSON node replaced by an extreme number, a wrong type, deep nesting or a long string; a
// Jinja template given a huge range, a runaway loop or a deep expression).
//
// Everything draws from one seeded Rng, so a case is reproduced from (reader, base seed, case index) alone.

import { Rng } from "../../src/rng.js";

/** A case's random stream: FNV-1a of a key (reader, base seed, index) seeds xoshiro128**. */
export function caseRng(key: string): Rng {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return new Rng(h);
}

export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;
export const chance = (rng: Rng, p: number): boolean => rng.next() < p;

// ---------------------------------------------------------------------------------------------------------------
// Located fields of binary formats

/** A header field at `pos`: fixed-width little-endian, or a (thrift) LEB128 varint of `len` bytes. */
export interface Field {
  pos: number;
  kind: "u32" | "u64" | "varint";
  len: number;
  /** Which sort of field (e.g. "dim", "string length"), so that the many token-string lengths do not crowd out the
   * few counts: a mutation picks a class first, then a field of it. */
  cls: string;
}

export const U32_EXTREMES: readonly bigint[] = [0n, 1n, 2n, 0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn];
export const U64_EXTREMES: readonly bigint[] = [
  0n, 1n, 2n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n + 1n, 2n ** 63n - 1n,
  2n ** 63n, 2n ** 64n - 1n,
];
// Signed values for thrift's zigzag integers.
const I64_EXTREMES: readonly bigint[] = [
  0n, 1n, -1n, 2n, 0x7fffffffn, -0x80000000n, 0xffffffffn, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n),
];

function readLE(buf: Uint8Array, pos: number, width: number): bigint {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[pos + i] ?? 0);
  return v;
}
function writeLE(buf: Uint8Array, pos: number, width: number, v: bigint): void {
  for (let i = 0; i < width && pos + i < buf.length; i++) buf[pos + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

function readVarint(buf: Uint8Array, pos: number): { value: bigint; len: number } {
  let v = 0n;
  let shift = 0n;
  let len = 0;
  for (;;) {
    const b = buf[pos + len];
    if (b === undefined) throw new Error("varint runs off the end");
    len++;
    v |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value: v, len };
    shift += 7n;
  }
}
function encodeVarint(v: bigint, minLen = 1): Uint8Array {
  const out: number[] = [];
  do {
    out.push(Number(v & 0x7fn));
    v >>= 7n;
  } while (v > 0n);
  while (out.length < minLen) out.push(0); // redundant zero groups keep the field's length, and the layout
  for (let i = 0; i < out.length - 1; i++) out[i]! |= 0x80;
  return Uint8Array.from(out);
}
const zigzag = (v: bigint): bigint => (v >= 0n ? v << 1n : ((-v) << 1n) - 1n);
const unzigzag = (v: bigint): bigint => ((v & 1n) === 0n ? v >> 1n : -((v + 1n) >> 1n));

/** Sets one located field to an extreme (or nearby) value. Returns the new bytes and how much the length changed. */
export function setField(rng: Rng, buf: Uint8Array, f: Field): { out: Uint8Array; delta: number } {
  if (f.kind !== "varint") {
    const width = f.kind === "u32" ? 4 : 8;
    const old = readLE(buf, f.pos, width);
    const near = [old + 1n, old - 1n, old * 2n, old + 8n, old ^ (1n << BigInt(rng.int(width * 8)))];
    const v = chance(rng, 0.75) ? pick(rng, f.kind === "u32" ? U32_EXTREMES : U64_EXTREMES) : pick(rng, near);
    const out = new Uint8Array(buf);
    writeLE(out, f.pos, width, BigInt.asUintN(width * 8, v));
    return { out, delta: 0 };
  }
  const old = unzigzag(readVarint(buf, f.pos).value);
  const v = chance(rng, 0.75) ? pick(rng, I64_EXTREMES) : pick(rng, [old + 1n, old - 1n, old * 2n, -old]);
  const enc = encodeVarint(zigzag(v), chance(rng, 0.8) ? f.len : 1);
  const out = new Uint8Array(buf.length - f.len + enc.length);
  out.set(buf.subarray(0, f.pos));
  out.set(enc, f.pos);
  out.set(buf.subarray(f.pos + f.len), f.pos + enc.length);
  return { out, delta: enc.length - f.len };
}

/** A field chosen class first (so that each kind of field is hit about equally often). */
export function pickField(rng: Rng, fields: readonly Field[]): Field | undefined {
  if (fields.length === 0) return undefined;
  const classes = [...new Set(fields.map((f) => f.cls))];
  const cls = pick(rng, classes);
  return pick(rng, fields.filter((f) => f.cls === cls));
}

/** The header fields of a (valid) GGUF file, and where its tensor data starts. */
export function ggufFields(buf: Uint8Array): { fields: Field[]; headerEnd: number } {
  const fields: Field[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 4;
  const u32 = (cls: string): number => {
    fields.push({ pos, kind: "u32", len: 4, cls });
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (cls: string): number => {
    fields.push({ pos, kind: "u64", len: 8, cls });
    const v = Number(dv.getBigUint64(pos, true));
    pos += 8;
    return v;
  };
  const str = (cls: string): void => {
    const n = u64(cls); // before `pos +=` reads pos, as u64 moves it
    pos += n;
  };
  const SIZES = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
  const value = (type: number, cls: string): void => {
    if (type === 8) return str(`${cls} string length`);
    if (type === 9) {
      const item = u32("array item type");
      const n = u64("array length");
      for (let i = 0; i < n; i++) value(item, "array item");
      return;
    }
    const size = SIZES[type]!;
    if (size === 4) u32(`${cls} value`);
    else if (size === 8) u64(`${cls} value`);
    else pos += size;
  };
  u32("version");
  const nTensors = u64("tensor count");
  const nKv = u64("metadata count");
  for (let i = 0; i < nKv; i++) {
    str("key length");
    value(u32("value type"), "metadata");
  }
  for (let i = 0; i < nTensors; i++) {
    str("tensor name length");
    const nDims = u32("dim count");
    for (let d = 0; d < nDims; d++) u64("dim");
    u32("tensor type");
    u64("tensor offset");
  }
  return { fields, headerEnd: pos };
}

/**
 * The integer fields of a thrift compact-protocol struct at `pos` (Parquet's footer and page headers): i16/i32/i64
 * values, binary lengths and long list sizes, as varints. Returns the position after the struct.
 */
export function thriftFields(buf: Uint8Array, pos: number, fields: Field[], cls: string, depth = 0): number {
  const varint = (what: string): bigint => {
    const { value, len } = readVarint(buf, pos);
    fields.push({ pos, kind: "varint", len, cls: `${cls} ${what}` });
    pos += len;
    return value;
  };
  const element = (type: number): void => {
    switch (type) {
      case 1: case 2: return; // booleans live in the field header
      case 3: pos += 1; return;
      case 4: case 5: case 6: varint("int"); return;
      case 7: pos += 8; return;
      case 8: {
        const n = Number(varint("length")); // read before `pos +=` takes pos, as varint moves it
        pos += n;
        return;
      }
      case 9: case 10: {
        const h = buf[pos++]!;
        const elem = h & 0x0f;
        let n = h >> 4;
        if (n === 15) n = Number(varint("list size"));
        for (let i = 0; i < n; i++) {
          if (elem === 1 || elem === 2) pos += 1;
          else element(elem);
        }
        return;
      }
      case 12: pos = thriftFields(buf, pos, fields, cls, depth + 1); return;
      default: throw new Error(`thrift type ${type} not walked`);
    }
  };
  if (depth > 32) throw new Error("thrift nesting too deep");
  while (pos < buf.length) {
    const h = buf[pos++]!;
    if (h === 0) return pos;
    if (h >> 4 === 0) pos += readVarint(buf, pos).len; // a long-form field id
    element(h & 0x0f);
  }
  return pos;
}

// ---------------------------------------------------------------------------------------------------------------
// Byte-level mutation

export interface ByteSeed {
  bytes: Uint8Array;
  /** Where most byte positions are drawn from (the header, not the tensor data). */
  focus?: readonly [number, number][];
  fields?: readonly Field[];
  /** Called after a field changed length by `delta` at `pos`, to patch a length that covers it (Parquet footer). */
  fixup?: (out: Uint8Array, pos: number, delta: number) => void;
}

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x5b, 0x7b, 0x5c];

/** One to four byte/field mutations of `seed`; `donors` are other inputs of the same format to splice from. */
export function mutateBytes(rng: Rng, seed: ByteSeed, donors: readonly Uint8Array[] = []): Uint8Array {
  // A copy as a plain Uint8Array: Buffer's slice() is a view, and the ops below write in place.
  let buf: Uint8Array = new Uint8Array(seed.bytes);
  let fields = seed.fields ?? [];
  const rounds = 1 + (chance(rng, 0.5) ? rng.int(4) : 0);
  for (let r = 0; r < rounds; r++) {
    const position = (): number => {
      const focus = seed.focus;
      if (focus && focus.length > 0 && chance(rng, 0.8)) {
        const [a, b] = pick(rng, focus);
        return Math.min(buf.length, a + rng.int(Math.max(1, b - a)));
      }
      return rng.int(buf.length + 1);
    };
    const op = rng.int(fields.length > 0 ? 10 : 8);
    switch (op) {
      case 0: { // flip one bit
        if (buf.length === 0) break;
        const p = Math.min(position(), buf.length - 1);
        buf[p]! ^= 1 << rng.int(8);
        break;
      }
      case 1: { // set a few bytes
        const p = position();
        for (let i = 0, n = 1 + rng.int(4); i < n && p + i < buf.length; i++)
          buf[p + i] = chance(rng, 0.6) ? pick(rng, INTERESTING_BYTES) : rng.int(256);
        break;
      }
      case 2: { // a little-endian word at any position set to an extreme
        const p = position();
        const wide = chance(rng, 0.5);
        writeLE(buf, p, wide ? 8 : 4, pick(rng, wide ? U64_EXTREMES : U32_EXTREMES));
        fields = [];
        break;
      }
      case 3: // truncate
        buf = buf.slice(0, position());
        fields = [];
        break;
      case 4: { // duplicate a range
        const a = position();
        const n = Math.min(buf.length - a, 1 + rng.int(chance(rng, 0.8) ? 64 : 4096));
        buf = splice(buf, position(), 0, buf.slice(a, a + Math.max(0, n)));
        fields = [];
        break;
      }
      case 5: { // delete a range
        const a = position();
        buf = splice(buf, a, 1 + rng.int(chance(rng, 0.8) ? 16 : 1024), new Uint8Array(0));
        fields = [];
        break;
      }
      case 6: { // insert random bytes
        const n = 1 + rng.int(16);
        const ins = new Uint8Array(n);
        for (let i = 0; i < n; i++) ins[i] = chance(rng, 0.5) ? pick(rng, INTERESTING_BYTES) : rng.int(256);
        buf = splice(buf, position(), 0, ins);
        fields = [];
        break;
      }
      case 7: { // splice a piece of another input over or into this one
        const donor = donors.length > 0 ? pick(rng, donors) : buf;
        if (donor.length === 0) break;
        const a = rng.int(donor.length);
        const piece = donor.slice(a, a + 1 + rng.int(256));
        const p = position();
        buf = chance(rng, 0.5) ? splice(buf, p, piece.length, piece) : splice(buf, p, 0, piece);
        fields = [];
        break;
      }
      default: { // a located header field set to an extreme value (only while the layout is still the seed's)
        const f = pickField(rng, fields)!;
        const { out, delta } = setField(rng, buf, f);
        if (delta !== 0) {
          if (seed.fixup && chance(rng, 0.8)) seed.fixup(out, f.pos, delta);
          fields = [];
        }
        buf = out;
      }
    }
  }
  return buf;
}

export function splice(buf: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  at = Math.min(at, buf.length);
  remove = Math.min(remove, buf.length - at);
  const out = new Uint8Array(buf.length - remove + insert.length);
  out.set(buf.subarray(0, at));
  out.set(insert, at);
  out.set(buf.subarray(at + remove), at + insert.length);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON

const RAW_VALUES: readonly string[] = [
  "0", "-1", "1", "2", "-0", "0.5", "1e-400", "2147483647", "2147483648", "-2147483648", "4294967295", "4294967296",
  "9007199254740991", "9007199254740993", "9223372036854775807", "18446744073709551615", "1e308", "1e999", "-1e999",
  "123456789012345678901234567890", "null", "true", "false", '""', '"x"', "[]", "{}", "[null]", '{"":0}',
  '"\\ud800"', '"\\u0000"', '"<s>"', '"\\u2581"',
];

/** A JSON value's text: an extreme number, a wrong type, a long string or a deep nest. */
function rawValue(rng: Rng): string {
  const r = rng.int(10);
  if (r < 7) return pick(rng, RAW_VALUES);
  if (r === 7) return JSON.stringify(pick(rng, ["a", "\u2581", "é", "<0x41>", " "]).repeat(pick(rng, [1000, 1 << 16, 1 << 20])));
  const depth = pick(rng, [64, 1000, 10_000, 100_000]);
  return chance(rng, 0.5) ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "0" + "}".repeat(depth);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Slot {
  parent: Json[] | { [k: string]: Json } | null;
  key: string | number;
  value: Json;
}

/** Up to `limit` nodes of a parsed JSON value (breadth first, so a big vocab does not hide the structure). */
function slots(root: Json, limit: number): Slot[] {
  const out: Slot[] = [{ parent: null, key: "", value: root }];
  for (let i = 0; i < out.length && out.length < limit; i++) {
    const v = out[i]!.value;
    if (Array.isArray(v)) v.forEach((x, k) => out.length < limit && out.push({ parent: v, key: k, value: x }));
    else if (v !== null && typeof v === "object")
      for (const [k, x] of Object.entries(v)) if (out.length < limit) out.push({ parent: v, key: k, value: x });
  }
  return out;
}

/** One structural mutation of a JSON text (or a byte mutation when it does not parse). */
export function mutateJson(rng: Rng, text: string, opts: { pretty?: boolean } = {}): string {
  let root: Json;
  try {
    root = JSON.parse(text) as Json;
  } catch {
    return mutateText(rng, text);
  }
  const all = slots(root, 20_000);
  // A node near the top half of the time: the structure matters more than the 400th vocabulary entry.
  const s = chance(rng, 0.5) ? all[rng.int(Math.min(all.length, 64))]! : pick(rng, all);
  const RAW = "\u0000FUZZRAW\u0000";
  let raw: string | null = null;
  const set = (v: Json): void => {
    if (s.parent === null) root = v;
    else if (Array.isArray(s.parent)) s.parent[s.key as number] = v;
    else s.parent[s.key as string] = v;
  };
  switch (rng.int(8)) {
    case 0: case 1: case 2: // an extreme or wrong-typed value
      raw = rawValue(rng);
      set(RAW);
      break;
    case 3: // a nearby number, or a number where a string was
      if (typeof s.value === "number") set(pick(rng, [s.value + 1, s.value - 1, -s.value, s.value * 2, s.value * 1e6, s.value + 0.5]));
      else if (typeof s.value === "string") set(chance(rng, 0.5) ? s.value.slice(0, rng.int(s.value.length + 1)) : s.value.length);
      else raw = rawValue(rng), set(RAW);
      break;
    case 4: // delete
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
      else if (s.parent) delete s.parent[s.key as string];
      break;
    case 5: { // duplicate an array element, or copy another node here
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 0, ...Array(1 + rng.int(3)).fill(s.value));
      else set(structuredClone(pick(rng, all).value));
      break;
    }
    case 6: // rename a key
      if (s.parent && !Array.isArray(s.parent)) {
        const k = s.key as string;
        delete s.parent[k];
        s.parent[k.length > 0 && chance(rng, 0.7) ? k.slice(0, -1) : k + pick(rng, ["_", "x", "\u0000", " "])] = s.value;
      } else raw = rawValue(rng), set(RAW);
      break;
    default: // wrap in an array or object
      set(chance(rng, 0.5) ? [s.value] : { value: s.value });
  }
  let out = opts.pretty ? JSON.stringify(root, null, 2) : JSON.stringify(root);
  if (raw !== null) out = out.replace(JSON.stringify(RAW), () => raw!);
  return out;
}

/** Byte mutations of a text, decoded back (invalid UTF-8 becomes U+FFFD, as a reader's decoder would see it). */
export function mutateText(rng: Rng, text: string, donors: readonly string[] = []): string {
  const enc = new TextEncoder();
  const bytes = mutateBytes(rng, { bytes: enc.encode(text) }, donors.map((d) => enc.encode(d)));
  return new TextDecoder().decode(bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// Jinja chat templates

/** Snippets that a bounded renderer must stop, or that exercise odd corners of the engine. */
export const JINJA_SNIPPETS: readonly string[] = [
  "{% for i in range(2147483647) %}x{% endfor %}",
  "{% for i in range(4294967295) %}{% endfor %}",
  "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
  "{% for i in range(3000) %}{% for j in range(3000) %}{{ j }}{% endfor %}{% endfor %}",
  "{{ range(9007199254740993)|length }}",
  "{{ range(0, 2147483647, 1)|list|length }}",
  "{{ range(1, 10, 0) }}",
  "{{ range(1e308) }}",
  "{{ range('a') }}",
  "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
  "{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a|length }}",
  "{{ 'x'|indent(536870000, true) }}",
  "{{ 'x\ny'|indent(2147483647, true) }}",
  "{{ messages|tojson(indent=400000000) }}",
  "{{ messages|tojson(indent=2147483647) }}",
  "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
  "{{ 10 ** 400 }}",
  "{{ 2 ** 62 * 4 }}",
  "{{ messages[2147483647] }}",
  "{{ messages[-9007199254740993] }}",
  "{{ messages[0]['content'][::-1] }}",
  "{{ messages[0].content[0:4294967295:2147483647] }}",
  "{{ 'abc'|list|length }}",
  "{{ 'ab'.split('b', 2147483647) }}",
  "{{ 'x'|replace('', 'yy') }}",
  "{{ messages|map(attribute='content')|join(', ') }}",
  "{% for m in messages|selectattr('role', 'equalto', 'user') %}{{ m.content }}{% endfor %}",
  "{{ raise_exception('fuzz') }}",
  "{{ strftime_now('%Y-%m-%d %B %%') }}",
  "{{ undefined_name.attr }}",
  "{{ none + 1 }}",
  "{% for a, b in messages %}{% endfor %}",
  "{% if %}",
  "{% endfor %}",
  "{{ (" + "(".repeat(5000) + "1" + ")".repeat(5000) + ") }}",
  "{{ " + "[".repeat(20_000) + "]".repeat(20_000) + " }}",
  "{% if true %}".repeat(3000) + "{% endif %}".repeat(3000),
  "{{ messages|tojson }}",
  "{% set x = messages %}{% for i in range(20) %}{% set x = x + x %}{% endfor %}{{ x|length }}",
  "{{ '%s'|format(1) }}",
  "{{ loop.index }}",
  "{% generation %}x{% endgeneration %}",
  "{% call f() %}x{% endcall %}",
];

const NUMBER_RE = /\b\d+\b/g;
const HUGE_NUMBERS = ["0", "1", "2147483647", "4294967295", "9007199254740993", "1000000000", "100000", "-1", "1e308"];

/** One mutation of a chat template: a number made extreme, a snippet inserted, a piece duplicated or cut, bytes. */
export function mutateTemplate(rng: Rng, template: string, donors: readonly string[]): string {
  const boundaries: number[] = [0, template.length];
  for (const m of template.matchAll(/%\}|\}\}/g)) boundaries.push(m.index + 2);
  const at = (): number => (chance(rng, 0.7) ? pick(rng, boundaries) : rng.int(template.length + 1));
  switch (rng.int(6)) {
    case 0: { // a number literal set to an extreme value
      const nums = [...template.matchAll(NUMBER_RE)];
      if (nums.length === 0) break;
      const m = pick(rng, nums);
      return template.slice(0, m.index) + pick(rng, HUGE_NUMBERS) + template.slice(m.index + m[0].length);
    }
    case 1: case 2: { // a snippet inserted between tags
      const p = at();
      return template.slice(0, p) + pick(rng, JINJA_SNIPPETS) + template.slice(p);
    }
    case 3: { // a piece between two tag boundaries duplicated (a loop body twice, nested loops)
      const a = pick(rng, boundaries);
      const b = pick(rng, boundaries);
      const [lo, hi] = a < b ? [a, b] : [b, a];
      const p = at();
      return template.slice(0, p) + template.slice(lo, hi) + template.slice(p);
    }
    case 4: { // a piece cut out
      const a = at();
      return template.slice(0, a) + template.slice(Math.min(template.length, a + 1 + rng.int(64)));
    }
  }
  return mutateText(rng, template, donors);
}
