// What `--model` may name, for every command that uses a model: a .gguf file, a Hugging Face folder, a PEFT
// adapter folder (its base model found from the folder), a tsdpo checkpoint or final/ folder, or a whole run folder
// (its final/). `--adapter <peft-folder>` puts a LoRA adapter on top of the model.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { inputError } from "../errors.js";
import { hubIdHint } from "../paths.js";
import { modelFingerprint } from "./fingerprint.js";
import { type LoadedModel, loadModel } from "./load.js";
import { isPeftAdapter, loadPeftAdapter, readPeftConfig } from "./peft.js";

/**
 * The resolved training config a tsdpo run saved: train_config.json of a checkpoint or final/ folder, or config.json
 * of a run folder (told apart from a Hugging Face config.json by its loss section, or an SFT run's "trainer": "sft").
 * null when `dir` holds neither.
 */
export function readRunConfig(dir: string): Record<string, unknown> | null {
  for (const f of [join(dir, "train_config.json"), join(dir, "config.json")]) {
    if (!existsSync(f)) continue;
    try {
      const j = JSON.parse(readFileSync(f, "utf8")) as Record<string, unknown>;
      if (("loss" in j || j.trainer === "sft") && "learning_rate" in j) return j;
    } catch {
      // not a run config
    }
  }
  return null;
}

/** The starting model recorded by a tsdpo run, resolved to an absolute path. */
function recordedBase(dir: string): string | null {
  const model = readRunConfig(dir)?.model;
  return typeof model === "string" ? resolve(model) : null;
}

export function resolveModelPath(path: string): string {
  const p = resolve(path);
  // a run folder: the trainer's config.json and a final/ folder
  return existsSync(join(p, "final")) && readRunConfig(p) ? join(p, "final") : p;
}

/**
 * Where a training run starts when its model is `path`: a run folder means its final/ weights, and final/ holding a
 * LoRA adapter (an SFT or DPO run with use_peft) means the base that run recorded with that adapter on it, as
 * loadModelForUse reads them. Anything else is itself, with no adapter.
 */
export function startingPoint(path: string): { model: string; adapter: string | null } {
  const p = resolveModelPath(path);
  if (p === resolve(path) || !isPeftAdapter(p)) return { model: p, adapter: null };
  const base = recordedBase(p) ?? recordedBase(resolve(path));
  if (!base || !existsSync(base))
    throw inputError(`${path}: its final/ is a LoRA adapter whose base model ${base ? `${base} does not exist` : "the run did not record"}; set model to the base and adapter to ${p}`);
  return { model: base, adapter: p };
}

/** Loads `path` (see above), then `adapter` if given. */
export function loadModelForUse(path: string, adapter?: string | null, defaultBase?: string): LoadedModel {
  const p = resolveModelPath(path);
  if (!existsSync(p)) throw inputError(`${path}: no such model file or folder (give a .gguf file or a Hugging Face model folder)${hubIdHint(path)}`);
  if (isPeftAdapter(p)) {
    if (adapter) throw inputError(`${p} is itself a LoRA adapter; give its base model as --model and the adapter as --adapter`);
    const info = readPeftConfig(p);
    const candidates = [recordedBase(p), info.baseModel ? resolve(dirname(p), info.baseModel) : null, info.baseModel, defaultBase ?? null];
    const base = candidates.find((c): c is string => !!c && existsSync(c));
    if (!base)
      throw inputError(
        `${p}: cannot find the adapter's base model (base_model_name_or_path ${JSON.stringify(info.baseModel)}); ` +
          `pass the base as --model and this folder as --adapter`,
      );
    return withAdapter(loadModel(base), base, p);
  }
  const loaded = loadModel(p);
  return adapter ? withAdapter(loaded, p, resolve(adapter)) : loaded;
}

function withAdapter(loaded: LoadedModel, basePath: string, adapterDir: string): LoadedModel {
  loadPeftAdapter(adapterDir, loaded.model, modelFingerprint(basePath));
  return loaded;
}
