#!/usr/bin/env node
// OpenMP flags for binding.gyp (`<!@(node scripts/native-config.js cflags|ldflags)`). The addon needs no library
// beyond the C++ runtime: its GEMM is its own. Threads come from OpenMP when the compiler supports it, which is
// tried here by compiling and linking a two-line program; otherwise (Apple clang, or TSDPO_OPENMP=0) the addon's own
// std::thread pool runs them, and `-fopenmp-simd` (no runtime library) still honours the `omp simd` loop hints.
//
//   TSDPO_OPENMP=0   build without OpenMP even where the compiler has it (CI tests that build too)

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cxx = process.env.CXX || "c++";

/** True when `cxx flags` compiles and links `source`. */
function compiles(source, flags) {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-omp-"));
  try {
    writeFileSync(join(dir, "t.cc"), source);
    const r = spawnSync(cxx, [...flags, join(dir, "t.cc"), "-o", join(dir, "t")], { stdio: "ignore" });
    return r.status === 0;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function openmp() {
  if (process.env.TSDPO_OPENMP !== "0") {
    const program = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n";
    if (compiles(program, ["-fopenmp"])) return { cflags: "-fopenmp", ldflags: "-fopenmp" };
  }
  if (compiles("int main() { return 0; }\n", ["-fopenmp-simd"])) return { cflags: "-fopenmp-simd", ldflags: "" };
  return { cflags: "", ldflags: "" };
}

const what = process.argv[2];
const flags = openmp();
if (what === "cflags") process.stdout.write(flags.cflags + "\n");
else if (what === "ldflags") process.stdout.write(flags.ldflags + "\n");
else {
  process.stderr.write(`usage: node scripts/native-config.js cflags|ldflags (got ${what ?? "nothing"})\n`);
  process.exit(1);
}
