// Small pieces shared by the GGUF tokenizers (spm.ts, bpe.ts) and the Hugging Face wrapper (hf.ts).

/** llama.cpp's token types, as stored in GGUF `tokenizer.ggml.token_type`. */
export const TokenType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

/**
 * Token texts that end a turn in common chat formats. llama.cpp's vocabulary loader marks the same texts as
 * end-of-generation; we report them as Tokenizer.stopIds so a sampler stops on them as well as on EOS.
 */
export const END_OF_TURN_TEXTS: readonly string[] = [
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<|end_of_text|>",
  "<|eom_id|>",
  "<EOT>",
];

/** Binary heap; `before(a, b)` is true when a must be popped before b. */
export class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

export type Fragment = { text: string } | { id: number };

/**
 * Splits text at occurrences of fixed strings (special or user-defined token texts), scanning left to right and
 * taking the longest string that starts at each position, as Hugging Face's added-token splitter does.
 * (llama.cpp instead takes the tokens one at a time, longest first, over the whole text; the two agree unless
 * two token texts overlap in the input.)
 */
export class LiteralSplitter {
  private readonly byFirstChar = new Map<string, { text: string; id: number }[]>();

  constructor(entries: Iterable<{ text: string; id: number }>) {
    for (const e of entries) {
      if (e.text.length === 0) continue;
      const key = e.text[0]!;
      let list = this.byFirstChar.get(key);
      if (!list) this.byFirstChar.set(key, (list = []));
      list.push(e);
    }
    for (const list of this.byFirstChar.values()) list.sort((a, b) => b.text.length - a.text.length);
  }

  get empty(): boolean {
    return this.byFirstChar.size === 0;
  }

  split(text: string): Fragment[] {
    if (this.empty) return text.length > 0 ? [{ text }] : [];
    const out: Fragment[] = [];
    let plainStart = 0;
    let i = 0;
    while (i < text.length) {
      const candidates = this.byFirstChar.get(text[i]!);
      const hit = candidates?.find((c) => text.startsWith(c.text, i));
      if (!hit) {
        i++;
        continue;
      }
      if (i > plainStart) out.push({ text: text.slice(plainStart, i) });
      out.push({ id: hit.id });
      i += hit.text.length;
      plainStart = i;
    }
    if (plainStart < text.length) out.push({ text: text.slice(plainStart) });
    return out;
  }
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }); // keep a leading U+FEFF, as llama.cpp does

export function utf8Bytes(s: string): Uint8Array {
  return utf8.encode(s);
}

/** Accumulates bytes from token pieces and decodes them once, so a character split over byte tokens survives. */
export class ByteSink {
  private buf = new Uint8Array(256);
  private n = 0;

  push(bytes: ArrayLike<number>): void {
    if (this.n + bytes.length > this.buf.length) {
      const next = new Uint8Array(Math.max(2 * this.buf.length, this.n + bytes.length));
      next.set(this.buf.subarray(0, this.n));
      this.buf = next;
    }
    for (let i = 0; i < bytes.length; i++) this.buf[this.n++] = bytes[i]!;
  }

  /** Invalid UTF-8 (e.g. a character cut in half at the end) becomes U+FFFD, as in llama.cpp and HF. */
  text(): string {
    return utf8Decoder.decode(this.buf.subarray(0, this.n));
  }
}

/** A GGUF/HF id field: null when absent, negative or out of range (GGUF writes u32 -1 for "none"). */
export function validId(id: number | undefined | null, vocabSize: number): number | null {
  if (id === undefined || id === null || !Number.isInteger(id) || id < 0 || id >= vocabSize) return null;
  return id;
}

export function checkId(id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
    throw new RangeError(`token id ${id} is outside the vocabulary (size ${vocabSize})`);
}
