// A Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json, optional chat_template.jinja /
// chat_template.json / generation_config.json) behind tsdpo's Tokenizer contract. The encoding itself is done by
// @huggingface/tokenizers; this file adapts three things the library does not offer directly:
//   - plain-text encoding: the library always matches added tokens in the text, so encode() uses a second
//     instance whose added-token list holds only the non-special ones (special-token strings then go through
//     the model as ordinary text, as transformers does with split_special_tokens=True);
//   - continuation: for SentencePiece-style tokenizers (a Prepend "▁" normalizer or a Metaspace pre-tokenizer)
//     a variant without the prefix step encodes text that continues earlier text;
//   - decoding never "cleans up" spaces before punctuation, so decode(encode(s)) === s.
// Instances are built lazily: a large vocabulary (Qwen: 151k tokens) takes about half a second each.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import { TsdpoError, configError, describeValue, inputError, unsupportedError } from "../errors.js";
import type { EncodeOptions, Tokenizer } from "./types.js";
import { checkId, END_OF_TURN_TEXTS, validId } from "./common.js";

type Json = Record<string, unknown>;

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly stopIds: readonly number[];
  readonly chatTemplate: string | null;
  /** Whether the tokenizer prepends "▁" (or a space) at the start of a text, which `continuation` suppresses. */
  readonly hasPrefixSpace: boolean;
  readonly folder: string;

  private readonly tokenizerJson: Json;
  private readonly config: Json;
  private readonly addBosSetting: boolean | null;
  private readonly addedTokenTexts: readonly string[];
  private readonly instances = new Map<string, HfLibTokenizer>();
  private addBosProbed: boolean | null = null;

  constructor(folder: string, tokenizerJson: Json, config: Json, chatTemplate: string | null, generationEos: number[]) {
    this.folder = folder;
    this.config = config;
    this.chatTemplate = chatTemplate;
    this.tokenizerJson = { ...tokenizerJson, pre_tokenizer: fixLegacyMetaspace(tokenizerJson.pre_tokenizer) };
    this.hasPrefixSpace = withoutPrefix(this.tokenizerJson).changed;

    const added = addedTokens(this.tokenizerJson, folder);
    this.addedTokenTexts = added.map((t) => t.content).filter((c) => c.length > 0);
    const vocab = (this.tokenizerJson.model as Json | undefined)?.vocab;
    const tokenizerPath = join(folder, "tokenizer.json");
    let maxId = -1;
    if (vocab === null || typeof vocab !== "object")
      throw inputError(`${tokenizerPath}: model.vocab is ${describeValue(vocab)}, not a vocabulary; re-download the file`);
    if (Array.isArray(vocab)) {
      // Unigram: [piece, score] pairs, id = index
      vocab.forEach((e, i) => {
        if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number")
          throw inputError(`${tokenizerPath}: model.vocab[${i}] is ${describeValue(e)}, not a [piece, score] pair`);
      });
      maxId = vocab.length - 1;
    } else
      // The library hands these ids back from encode() as they are, so a string or fractional id would reach the
      // model as an index.
      for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
        if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0)
          throw inputError(`${tokenizerPath}: model.vocab gives token ${describeValue(token)} the id ${describeValue(id)}, not a token id`);
        if (id > maxId) maxId = id;
      }
    for (const t of added) if (t.id > maxId) maxId = t.id;
    this.vocabSize = maxId + 1;

    const idOf = (content: string | null): number | null => {
      if (content === null) return null;
      const a = added.find((t) => t.content === content);
      if (a) return a.id;
      if (Array.isArray(vocab)) {
        const i = vocab.findIndex((e) => Array.isArray(e) && e[0] === content);
        return i >= 0 ? i : null;
      }
      const v = (vocab as Record<string, unknown> | undefined)?.[content];
      return typeof v === "number" ? v : null;
    };
    this.bosId = validId(idOf(tokenText(config.bos_token)), this.vocabSize);
    this.eosId = validId(idOf(tokenText(config.eos_token)), this.vocabSize);
    this.addBosSetting = typeof config.add_bos_token === "boolean" ? config.add_bos_token : null;

    const stops = new Set<number>(generationEos.filter((id) => validId(id, this.vocabSize) !== null));
    for (const text of END_OF_TURN_TEXTS) {
      const id = idOf(text);
      if (id !== null) stops.add(id);
    }
    if (this.eosId !== null) stops.delete(this.eosId);
    this.stopIds = [...stops].sort((a, b) => a - b);
  }

  /**
   * A call into @huggingface/tokenizers. What fails in there (a normalizer's regex, a post-processor template, a
   * decoder) comes from tokenizer.json, so it is reported as a problem of that file rather than as a crash.
   */
  private lib<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof TsdpoError) throw e;
      throw inputError(
        `${join(this.folder, "tokenizer.json")}: @huggingface/tokenizers failed to ${what} ` +
          `(${e instanceof Error ? e.message : String(e)}); the file is malformed or uses something the library ` +
          `lacks. Re-download it, or use a GGUF file with an embedded vocabulary`,
      );
    }
  }

  /** An encode call; the ids it gives back must be ids of this vocabulary, or decode and the model would fail on them. */
  private encodeIds(f: () => number[]): number[] {
    const ids = this.lib("encode", f);
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw inputError(
          `${join(this.folder, "tokenizer.json")}: @huggingface/tokenizers produced the token id ${describeValue(id)}, ` +
            `which is not among the ${this.vocabSize} ids of the vocabulary; the file is inconsistent (is ` +
            `model.unk_token in model.vocab?). Re-download it`,
        );
    return ids;
  }

  /** tokenizer_config.json add_bos_token, or else whether the post-processor puts BOS first. */
  get addBos(): boolean {
    if (this.addBosSetting !== null) return this.addBosSetting;
    if (this.addBosProbed === null) {
      const ids = this.encodeIds(() => this.instance(true, false).encode("a", { add_special_tokens: true }).ids);
      this.addBosProbed = this.bosId !== null && ids[0] === this.bosId;
    }
    return this.addBosProbed;
  }

  encode(text: string, options?: EncodeOptions): number[] {
    if (text.length === 0) return [];
    const tok = this.instance(false, options?.continuation ?? false);
    return this.encodeIds(() => tok.encode(text, { add_special_tokens: false }).ids);
  }

  /** Like encode, but added-token strings in `text` (e.g. "<|im_start|>") become their ids. */
  encodeWithSpecials(text: string, options?: EncodeOptions): number[] {
    if (text.length === 0) return [];
    const full = this.instance(true, false);
    if (!(options?.continuation ?? false) || !this.hasPrefixSpace)
      return this.encodeIds(() => full.encode(text, { add_special_tokens: false }).ids);
    // Only the text before the first added token continues earlier text; after an added token the tokenizer
    // prefixes "▁" again, as llama.cpp does, so the rest goes through the normal instance.
    let cut = text.length;
    for (const t of this.addedTokenTexts) {
      const at = text.indexOf(t);
      if (at >= 0 && at < cut) cut = at;
    }
    const cont = this.instance(true, true);
    const head = this.encodeIds(() => cont.encode(text.slice(0, cut), { add_special_tokens: false }).ids);
    const tail = cut < text.length ? this.encodeIds(() => full.encode(text.slice(cut), { add_special_tokens: false }).ids) : [];
    return [...(cut > 0 ? head : []), ...tail];
  }

  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string {
    for (const id of ids) checkId(id, this.vocabSize);
    if (ids.length === 0) return "";
    const tok = this.instance(true, false);
    return this.lib("decode", () =>
      tok.decode([...ids], { skip_special_tokens: !(options?.keepSpecial ?? false), clean_up_tokenization_spaces: false }),
    );
  }

  idToToken(id: number): string {
    checkId(id, this.vocabSize);
    const tok = this.instance(true, false);
    const t = this.lib("look up a token", () => tok.id_to_token(id));
    if (t === undefined) throw new RangeError(`token id ${id} is a gap in ${join(this.folder, "tokenizer.json")}`);
    return t;
  }

  private instance(specials: boolean, continuation: boolean): HfLibTokenizer {
    const cont = continuation && this.hasPrefixSpace;
    const key = `${specials ? "s" : "p"}${cont ? "c" : ""}`;
    let tok = this.instances.get(key);
    if (tok) return tok;
    let json = this.tokenizerJson;
    if (!specials)
      json = { ...json, added_tokens: (json.added_tokens as AddedTokenJson[]).filter((t) => t.special !== true) };
    if (cont) json = withoutPrefix(json).json;
    try {
      tok = new HfLibTokenizer(json, this.config);
    } catch (e) {
      throw unsupportedError(
        `${join(this.folder, "tokenizer.json")}: @huggingface/tokenizers cannot build this tokenizer ` +
          `(${(e as Error).message}). Use a GGUF file with an embedded vocabulary instead`,
      );
    }
    this.instances.set(key, tok);
    return tok;
  }
}

export function loadHfTokenizer(folder: string): HfTokenizer {
  if (!existsSync(folder) || !statSync(folder).isDirectory())
    throw inputError(`${folder}: not a folder; give the model's Hugging Face folder (with tokenizer.json) or a GGUF file`);
  const tokenizerPath = join(folder, "tokenizer.json");
  if (!existsSync(tokenizerPath))
    throw inputError(
      `${folder}: no tokenizer.json in this folder. Download tokenizer.json with the model (tsdpo reads the fast ` +
        `tokenizer format only; a folder with just tokenizer.model needs converting with transformers), or use a ` +
        `GGUF file, which embeds its vocabulary`,
    );
  const tokenizerJson = readJsonObject(tokenizerPath);
  for (const key of ["model", "normalizer", "pre_tokenizer", "post_processor", "decoder"])
    if (!(key in tokenizerJson))
      throw inputError(`${tokenizerPath}: key "${key}" is missing; this is not a Hugging Face tokenizer.json`);
  if (tokenizerJson.added_tokens === undefined) tokenizerJson.added_tokens = [];
  checkSettingStrings(tokenizerJson, tokenizerPath);

  const configPath = join(folder, "tokenizer_config.json");
  const config = existsSync(configPath) ? readJsonObject(configPath) : {};
  const generationPath = join(folder, "generation_config.json");
  const generationEos: number[] = [];
  if (existsSync(generationPath)) {
    const eos = readJsonObject(generationPath).eos_token_id;
    for (const id of Array.isArray(eos) ? eos : [eos]) if (typeof id === "number") generationEos.push(id);
  }
  return new HfTokenizer(folder, tokenizerJson, config, findChatTemplate(folder, config), generationEos);
}

/** chat_template.jinja, then chat_template.json, then tokenizer_config.json, the order transformers uses. */
function findChatTemplate(folder: string, config: Json): string | null {
  const jinjaPath = join(folder, "chat_template.jinja");
  if (existsSync(jinjaPath)) return readFileSync(jinjaPath, "utf8");
  const jsonPath = join(folder, "chat_template.json");
  if (existsSync(jsonPath)) {
    const t = pickTemplate(readJsonObject(jsonPath).chat_template, jsonPath);
    if (t !== null) return t;
  }
  return pickTemplate(config.chat_template, join(folder, "tokenizer_config.json"));
}

/** A template is a string or a list of {name, template}; from a list we take "default", as transformers does. */
function pickTemplate(v: unknown, path: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v.filter((e): e is { name: string; template: string } => typeof e?.name === "string" && typeof e?.template === "string");
    const d = named.find((e) => e.name === "default");
    if (d) return d.template;
    throw configError(
      `${path}: chat_template lists templates named ${named.map((e) => JSON.stringify(e.name)).join(", ")} but none ` +
        `is "default"; put the one to use in chat_template.jinja next to it`,
    );
  }
  throw inputError(`${path}: chat_template should be a string or a list of {name, template}`);
}

// The library applies some strings of tokenizer.json once per word or character (a Prepend normalizer's text, a
// Replace's content, BPE's end_of_word_suffix), so encoding slows down in proportion to their length. Real files
// keep them to a few characters and their regexes to a few hundred; one of 64k characters made every encode take
// most of a second. The same holds for added tokens, which are matched in every text. The vocabulary and the merges
// are data, not settings, and are not limited.
const MAX_SETTING_CHARS = 4096;

function checkSettingStrings(json: Json, path: string): void {
  const model = json.model && typeof json.model === "object" ? { ...(json.model as Json), vocab: null, merges: null } : json.model;
  const todo: [unknown, string][] = [
    [json.normalizer, "normalizer"], [json.pre_tokenizer, "pre_tokenizer"], [json.post_processor, "post_processor"],
    [json.decoder, "decoder"], [model, "model"],
  ];
  while (todo.length > 0) {
    const [v, where] = todo.pop()!;
    if (typeof v === "string" && v.length > MAX_SETTING_CHARS)
      throw inputError(
        `${path}: ${where} is a string of ${v.length} characters (at most ${MAX_SETTING_CHARS} expected); the file is ` +
          `corrupt, re-download it`,
      );
    const at = (key: string): string => (where.length > 200 ? where : where + key); // a deep nest must not cost n² chars
    if (Array.isArray(v)) v.forEach((x, i) => todo.push([x, at(`[${i}]`)]));
    else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) todo.push([x, at(`.${k}`)]);
  }
}

function readJsonObject(path: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw inputError(`${path}: not valid JSON (${(e as Error).message}); re-download the file`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw inputError(`${path}: expected a JSON object`);
  return v as Json;
}

function addedTokens(json: Json, folder: string): AddedTokenJson[] {
  const list = json.added_tokens;
  if (!Array.isArray(list)) throw inputError(`${join(folder, "tokenizer.json")}: added_tokens should be a list`);
  list.forEach((t, i) => {
    if (!Number.isSafeInteger(t?.id) || t.id < 0 || typeof t?.content !== "string")
      throw inputError(
        `${join(folder, "tokenizer.json")}: added_tokens[${i}] needs a token id (a non-negative integer) as "id" and a ` +
          `string "content", got ${describeValue(t)}`,
      );
    // The library matches every added token in every text it encodes (one pattern built from all of them)
    if (t.content.length > MAX_SETTING_CHARS)
      throw inputError(
        `${join(folder, "tokenizer.json")}: added_tokens[${i}] has a "content" of ${t.content.length} characters (at ` +
          `most ${MAX_SETTING_CHARS} expected); the file is corrupt, re-download it`,
      );
  });
  return list as AddedTokenJson[];
}

/** tokenizer_config.json writes special tokens as a string or as {"content": ...}. */
function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return null;
}

/**
 * Older tokenizer.json files write Metaspace's prefix setting as add_prefix_space; the library only reads
 * prepend_scheme (default "always"), so map add_prefix_space: false to "never" as the Rust library does.
 */
function fixLegacyMetaspace(pt: unknown): unknown {
  if (!pt || typeof pt !== "object") return pt;
  const p = pt as Json;
  if (p.type === "Sequence" && Array.isArray(p.pretokenizers))
    return { ...p, pretokenizers: p.pretokenizers.map(fixLegacyMetaspace) };
  if (p.type === "Metaspace" && p.prepend_scheme === undefined && p.add_prefix_space === false)
    return { ...p, prepend_scheme: "never" };
  return p;
}

/** The tokenizer.json without its start-of-text prefix: no Prepend normalizer, Metaspace "never", ByteLevel no prefix. */
function withoutPrefix(json: Json): { json: Json; changed: boolean } {
  let changed = false;
  const normalizer = (n: unknown): unknown => {
    if (!n || typeof n !== "object") return n;
    const o = n as Json;
    if (o.type === "Sequence" && Array.isArray(o.normalizers)) {
      const kept = o.normalizers.filter((x: Json) => x?.type !== "Prepend");
      if (kept.length !== o.normalizers.length) changed = true;
      return { ...o, normalizers: kept.map(normalizer) };
    }
    if (o.type === "Prepend") {
      changed = true;
      return null;
    }
    return o;
  };
  const preTokenizer = (p: unknown): unknown => {
    if (!p || typeof p !== "object") return p;
    const o = p as Json;
    if (o.type === "Sequence" && Array.isArray(o.pretokenizers)) return { ...o, pretokenizers: o.pretokenizers.map(preTokenizer) };
    if (o.type === "Metaspace" && o.prepend_scheme !== "never") {
      changed = true;
      return { ...o, prepend_scheme: "never", add_prefix_space: false };
    }
    if (o.type === "ByteLevel" && o.add_prefix_space === true) {
      changed = true;
      return { ...o, add_prefix_space: false };
    }
    return o;
  };
  const out = { ...json, normalizer: normalizer(json.normalizer), pre_tokenizer: preTokenizer(json.pre_tokenizer) };
  return { json: out, changed };
}
