// A model's identity on disk: sha256 over its bytes (the GGUF file, or config.json and every safetensors file of a
// folder). Keys the reference log-prob cache and ties a LoRA adapter to the base it was trained on.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export function modelFingerprint(path: string): string {
  const h = createHash("sha256");
  if (statSync(path).isDirectory()) {
    for (const f of readdirSync(path).sort())
      if (f === "config.json" || (f.endsWith(".safetensors") && !f.startsWith("adapter_") && f !== "optimizer.safetensors")) {
        h.update(f);
        h.update(readFileSync(join(path, f)));
      }
  } else h.update(readFileSync(path));
  return h.digest("hex");
}
