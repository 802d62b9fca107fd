// What `--model` may name, for every command that uses a model: a .gguf file, a Hugging Face folder, a PEFT
// adapter folder (its base model found from the folder), a tsdpo checkpoint or final/ folder, or a whole run folder
// (its final/). `--adapter <peft-folder>` puts a LoRA adapter on top of the model.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { inputError } from "../errors.js";
import { modelFingerprint } from "./fingerprint.js";
import { type LoadedModel, loadModel } from "./load.js";
import { isPeftAdapter, loadPeftAdapter, readPeftConfig } from "./peft.js";

/** The starting model recorded by a tsdpo run (its train_config.json), resolved to an absolute path. */
function recordedBase(dir: string): string | null {
  const f = join(dir, "train_config.json");
  if (!existsSync(f)) return null;
  try {
    const j = JSON.parse(readFileSync(f, "utf8")) as { model?: unknown };
    return typeof j.model === "string" ? resolve(j.model) : null;
  } catch {
    return null;
  }
}

export function resolveModelPath(path: string): string {
  const p = resolve(path);
  // a run folder: config.json of the trainer (it has a loss section) and a final/ folder
  if (existsSync(join(p, "final")) && existsSync(join(p, "config.json"))) {
    try {
      if ("loss" in (JSON.parse(readFileSync(join(p, "config.json"), "utf8")) as object)) return join(p, "final");
    } catch {
      // not a run folder
    }
  }
  return p;
}

/** Loads `path` (see above), then `adapter` if given. */
export function loadModelForUse(path: string, adapter?: string | null, defaultBase?: string): LoadedModel {
  const p = resolveModelPath(path);
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
