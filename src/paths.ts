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
