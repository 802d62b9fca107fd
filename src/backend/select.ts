// Backend selection: `--backend js|native|auto`. `auto` (the default) is the native addon when it loads and the
// TypeScript backend otherwise, and then says why on stderr, once per process. An explicit `native` without the
// addon is an error that names the reason and the fix.

import { configError, unsupportedError } from "../errors.js";
import type { Backend } from "./contract.js";
import { jsBackend } from "./js/kernels.js";
import { loadNative } from "./native/index.js";

export type BackendName = "js" | "native" | "auto";

let warned = false;

export function selectBackend(name: string | undefined = "auto"): Backend {
  switch (name) {
    case "js":
      return jsBackend;
    case "native": {
      const n = loadNative();
      if (n.ok) return n.backend;
      throw unsupportedError(`--backend native: the native CPU backend is not available: ${n.reason}. Or use --backend js`);
    }
    case "auto": {
      const n = loadNative();
      if (n.ok) return n.backend;
      if (!warned) {
        warned = true;
        process.stderr.write(`tsdpo: using the js backend (slower): the native backend is not available: ${n.reason}\n`);
      }
      return jsBackend;
    }
    default:
      throw configError(`--backend ${name}: expected js, native or auto`);
  }
}
