// Backend selection: `--backend js|native|auto`. The native addon arrives with the native-backend issue; until it
// is built, auto means js and an explicit `native` is refused with a message that says why.

import { configError, unsupportedError } from "../errors.js";
import type { Backend } from "./contract.js";
import { jsBackend } from "./js/kernels.js";

export type BackendName = "js" | "native" | "auto";

export function selectBackend(name: string | undefined = "auto"): Backend {
  switch (name) {
    case "auto":
    case "js":
      return jsBackend;
    case "native":
      throw unsupportedError(
        "--backend native: the native CPU addon is not part of this build; use --backend js (or auto)",
      );
    default:
      throw configError(`--backend ${name}: expected js, native or auto`);
  }
}
