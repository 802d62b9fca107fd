// Backend selection: `--backend js|native|auto`. `auto` is the native addon when it loads and the TypeScript backend
// otherwise, and then says why on stderr, once per process. An explicit `native` without the addon is an error that
// names the reason and the fix.
//
// Environment:
//   TSDPO_BACKEND=js|native|auto   the backend when none is named: a command without --backend, a training config
//                                  without a "backend" key. Unset or empty: auto. A named backend always wins, so a
//                                  config file that says "auto" means auto. scripts/test.js runs the test suite once
//                                  with TSDPO_BACKEND=js and once with native (when the addon loads).

import { configError, unsupportedError } from "../errors.js";
import type { Backend } from "./contract.js";
import { jsBackend } from "./js/kernels.js";
import { loadNative } from "./native/index.js";

export type BackendName = "js" | "native" | "auto";

const NAMES: readonly string[] = ["js", "native", "auto"];

/** The backend to use when none is named: TSDPO_BACKEND, else auto. A value that is not a backend is a config error. */
export function defaultBackendName(): BackendName {
  const s = process.env.TSDPO_BACKEND;
  if (s === undefined || s === "") return "auto";
  if (!NAMES.includes(s)) throw configError(`environment variable TSDPO_BACKEND=${s}: expected js, native or auto (or unset for auto)`);
  return s as BackendName;
}

let warned = false;

/**
 * What running on the js backend costs, for the one-line notice: measured by bench/demo-backends.mjs, whose output
 * bench/results/demo-backends.json test/readme-numbers.test.ts checks this against (scripts/build-native.js says the same).
 */
export const JS_BACKEND_COST = "the demo takes about 7x longer";

/** The backend `name` names; undefined: the default (TSDPO_BACKEND, else auto). */
export function selectBackend(name?: string): Backend {
  const from = name === undefined ? "TSDPO_BACKEND=" : "--backend ";
  const chosen = name ?? defaultBackendName();
  switch (chosen) {
    case "js":
      return jsBackend;
    case "native": {
      const n = loadNative();
      if (n.ok) return n.backend;
      const instead = name === undefined ? "TSDPO_BACKEND=js" : "--backend js";
      throw unsupportedError(`${from}native: the native CPU backend is not available: ${n.reason}. Or use ${instead}`);
    }
    case "auto": {
      const n = loadNative();
      if (n.ok) return n.backend;
      if (!warned) {
        warned = true;
        process.stderr.write(`tsdpo: running on the js backend (${JS_BACKEND_COST}): the native backend is not available: ${n.reason}\n`);
      }
      return jsBackend;
    }
    default:
      throw configError(`--backend ${chosen}: expected js, native or auto`);
  }
}
