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
import { configError, inputError, unsupportedError } from "../errors.js";
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
    let maxId = -1;
    if (Array.isArray(vocab)) maxId = vocab.length - 1; // Unigram: [piece, score] pairs, id = index
    else if (vocab && typeof vocab === "object")
      for (const id of Object.values(vocab as Record<string, unknown>)) if (typeof id === "number" && id > maxId) maxId = id;
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

  /** tokenizer_config.json add_bos_token, or else whether the post-processor puts BOS first. */
  get addBos(): boolean {
    if (this.addBosSetting !== null) return this.addBosSetting;
    if (this.addBosProbed === null) {
      const ids = this.instance(true, false).encode("a", { add_special_tokens: true }).ids;
      this.addBosProbed = this.bosId !== null && ids[0] === this.bosId;
    }
    return this.addBosProbed;
  }

  encode(text: string, options?: EncodeOptions): number[] {
    if (text.length === 0) return [];
    return this.instance(false, options?.continuation ?? false).encode(text, { add_special_tokens: false }).ids;
  }

  /** Like encode, but added-token strings in `text` (e.g. "<|im_start|>") become their ids. */
  encodeWithSpecials(text: string, options?: EncodeOptions): number[] {
    if (text.length === 0) return [];
    const full = this.instance(true, false);
    if (!(options?.continuation ?? false) || !this.hasPrefixSpace)
      return full.encode(text, { add_special_tokens: false }).ids;
    // Only the text before the first added token continues earlier text; after an added token the tokenizer
    // prefixes "▁" again, as llama.cpp does, so the rest goes through the normal instance.
    let cut = text.length;
    for (const t of this.addedTokenTexts) {
      const at = text.indexOf(t);
      if (at >= 0 && at < cut) cut = at;
    }
    const head = this.instance(true, true).encode(text.slice(0, cut), { add_special_tokens: false }).ids;
    const tail = cut < text.length ? full.encode(text.slice(cut), { add_special_tokens: false }).ids : [];
    return [...(cut > 0 ? head : []), ...tail];
  }

  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string {
    for (const id of ids) checkId(id, this.vocabSize);
    if (ids.length === 0) return "";
    return this.instance(true, false).decode([...ids], {
      skip_special_tokens: !(options?.keepSpecial ?? false),
      clean_up_tokenization_spaces: false,
    });
  }

  idToToken(id: number): string {
    checkId(id, this.vocabSize);
    const t = this.instance(true, false).id_to_token(id);
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
    if (typeof t?.id !== "number" || typeof t?.content !== "string")
      throw inputError(`${join(folder, "tokenizer.json")}: added_tokens[${i}] needs a numeric "id" and a string "content"`);
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
