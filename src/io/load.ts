// Loads a model for tsdpo from a GGUF file or a Hugging Face folder (config.json + safetensors + tokenizer.json),
// checking every tensor's presence and shape against the config before any data is copied.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describeJsonError, inputError } from "../errors.js";
import type { LlamaConfig } from "../model/config.js";
import { type FloatCtor, type Model, createModel } from "../model/llama.js";
import { loadHfTokenizer } from "../tokenizer/hf.js";
import { tokenizerFromGguf } from "../tokenizer/gguf.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { readGguf, readGgufTensor } from "./gguf.js";
import { llamaConfigFromGguf } from "./ggufconfig.js";
import { llamaConfigFromHf } from "./hfconfig.js";
import { ggufQkPermuted, ggufShape, ggufTensorName, ggufToHfQkRows, hfTensorName } from "./names.js";
import { openSafetensorsFolder, readFolderTensorF32 } from "./safetensors.js";

export interface LoadedModel {
  model: Model;
  tokenizer: Tokenizer;
  path: string;
  format: "gguf" | "hf";
  /** The raw config.json of an HF folder (kept so export can carry unknown keys over), null for GGUF. */
  hfConfig: Record<string, unknown> | null;
}

export function loadModel(path: string, ctor: FloatCtor = Float32Array): LoadedModel {
  if (!existsSync(path)) throw inputError(`${path}: no such model file or folder (give a .gguf file or a Hugging Face model folder)`);
  if (statSync(path).isDirectory()) return loadHfFolder(path, ctor);
  return loadGgufModel(path, ctor);
}

const shapeStr = (s: readonly number[]): string => `[${s.join(", ")}]`;

function checkShape(path: string, tensor: string, got: readonly number[], want: readonly number[], cfg: LlamaConfig): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i]))
    throw inputError(
      `${path}: tensor ${tensor} has shape ${shapeStr(got)} but the config (C=${cfg.C}, NH=${cfg.NH}, NKV=${cfg.NKV}, ` +
        `HS=${cfg.HS}, FF=${cfg.FF}, V=${cfg.V}) implies ${shapeStr(want)}; the weights and the config do not belong together`,
    );
}

export function loadGgufModel(path: string, ctor: FloatCtor = Float32Array): LoadedModel {
  const f = readGguf(path);
  const cfg = llamaConfigFromGguf(f);
  const tokenizer = tokenizerFromGguf(f);
  const model = createModel(cfg, ctor);
  const permuted = ggufQkPermuted(cfg.family);
  for (const e of model.entries) {
    const name = ggufTensorName(e.name);
    const info = f.tensors.get(name);
    if (!info) throw inputError(`${path}: tensor ${name} is missing (the ${cfg.family} architecture with this config needs it)`);
    checkShape(path, name, ggufShape(info.dims), e.shape, cfg);
    let data = readGgufTensor(f, name);
    if (permuted && /\.(wq|wk|bq|bk)$/.test(e.name)) {
      const heads = /\.(wq|bq)$/.test(e.name) ? cfg.NH : cfg.NKV;
      data = ggufToHfQkRows(data, heads, cfg.HS, e.shape.length === 2 ? e.shape[1]! : 1);
    }
    model.params.set(data, e.offset);
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

export function loadHfFolder(folder: string, ctor: FloatCtor = Float32Array): LoadedModel {
  const configPath = join(folder, "config.json");
  if (!existsSync(configPath)) throw inputError(`${folder}: no config.json; a Hugging Face model folder needs config.json, safetensors weights and tokenizer.json`);
  const hfConfig = readJsonFile(configPath);
  const cfg = llamaConfigFromHf(hfConfig, configPath);
  const tokenizer = loadHfTokenizer(folder);
  // More token ids than embedding rows would crash the forward pass on the first such id; fewer is normal (V is
  // often padded). llamaConfigFromGguf checks the same for GGUF.
  if (tokenizer.vocabSize > cfg.V)
    throw inputError(
      `${join(folder, "tokenizer.json")}: has token ids up to ${tokenizer.vocabSize - 1} but ${configPath} says ` +
        `vocab_size ${cfg.V}; the tokenizer does not belong to these weights (copy the model's own tokenizer.json)`,
    );
  const st = openSafetensorsFolder(folder);
  const model = createModel(cfg, ctor);
  for (const e of model.entries) {
    const name = hfTensorName(e.name);
    const entry = st.entries.get(name);
    if (!entry) throw inputError(`${folder}: tensor ${name} is missing from the safetensors weights`);
    checkShape(folder, name, entry.shape, e.shape, cfg);
    model.params.set(readFolderTensorF32(st, name), e.offset);
  }
  return { model, tokenizer, path: folder, format: "hf", hfConfig: hfConfig as Record<string, unknown> };
}
