// Where tsdpo's own shipped files live, found relative to this module so that it works from a clone, from
// node_modules and through `npx`.

import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "assets"))) return dir;
    dir = dirname(dir);
  }
  throw new Error("internal: cannot find the tsdpo package root (assets/ is missing)");
}

export const packageRoot = findPackageRoot();
export const assetPath = (...parts: string[]): string => join(packageRoot, "assets", ...parts);
/** The embedded default model: karpathy's stories260K (Llama-2 architecture, TinyStories), MIT. */
export const defaultModelPath = assetPath("models", "stories260K", "stories260K.gguf");
/** The embedded default preference data: Anthropic HH-RLHF harmless-base test split, MIT. */
export const defaultDataPath = assetPath("data", "hh-rlhf", "harmless-base-test.jsonl.gz");
/** The shipped training config that a bare `tsdpo train` runs. */
export const defaultConfigPath = join(packageRoot, "configs", "default.json");

/** "org/name" with nothing on disk: a Hugging Face Hub id, which tsdpo cannot fetch. */
export function looksLikeHubId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s) && !/\.(gguf|json|jsonl|parquet|csv|tsv|gz)$/i.test(s) && !existsSync(s);
}

/** The sentence to add to a "does not exist" message when the missing path looks like a Hub id. */
export function hubIdHint(s: string): string {
  return looksLikeHubId(s)
    ? `; "${s}" looks like a Hugging Face Hub id, but tsdpo reads local files only: download the model or dataset ` +
        `first (for example with \`huggingface-cli download ${s} --local-dir <folder>\`) and give that folder`
    : "";
}

