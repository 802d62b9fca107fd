#!/usr/bin/env node
// OpenMP flags for binding.gyp (`<!@(node scripts/native-config.js cflags|ldflags)`). The addon needs no library
// beyond the C++ runtime: its GEMM is its own. Threads come from OpenMP when the compiler supports it, which is
// tried here by compiling and linking a two-line program; otherwise (Apple clang, or TSDPO_OPENMP=0) the addon's own
// std::thread pool runs them, and `-fopenmp-simd` (no runtime library) still honours the `omp simd` loop hints.
//
//   TSDPO_OPENMP=0   build without OpenMP even where the compiler has it (CI tests that build too)
//   TSDPO_MPI=0      leave the MPI binding out even where MPI is installed
//
// `mpi`, `mpi-cflags`, `mpi-ldflags`, `mpi-libs`: whether the MPI binding (tsdpo_mpi.node) is built, and its flags.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cxx = process.env.CXX || "c++";

/** True when `cxx flags source -o out after` compiles and links `source` (libraries go after the source). */
function compiles(source, flags, after = []) {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-omp-"));
  try {
    writeFileSync(join(dir, "t.cc"), source);
    const r = spawnSync(cxx, [...flags, join(dir, "t.cc"), "-o", join(dir, "t"), ...after], { stdio: "ignore" });
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

/**
 * MPI's compile and link flags from its compiler wrapper (Open MPI: mpicxx --showme:compile / --showme:link; MPICH:
 * mpicxx -compile_info / -link_info), when a two-line MPI program builds with them; else null. TSDPO_MPI=0: null.
 */
function mpi() {
  if (process.env.TSDPO_MPI === "0") return null;
  for (const wrapper of ["mpicc", "mpicxx"]) {
    const ask = (args) => {
      try {
        const r = spawnSync(wrapper, args, { encoding: "utf8" });
        return r.status === 0 ? r.stdout.trim() : null;
      } catch {
        return null;
      }
    };
    let compile = ask(["--showme:compile"]);
    let link = ask(["--showme:link"]);
    if (compile === null || link === null) {
      // MPICH prints the whole command line: keep the -I / -D and -L / -l / -Wl parts
      const c = ask(["-compile_info"]), l = ask(["-link_info"]);
      if (c === null || l === null) continue;
      compile = c.split(/\s+/).filter((f) => /^-[ID]/.test(f)).join(" ");
      link = l.split(/\s+/).filter((f) => /^-(L|l|Wl)/.test(f)).join(" ");
    }
    const program = "#include <mpi.h>\nint main(int c, char** v) { MPI_Init(&c, &v); MPI_Finalize(); return 0; }\n";
    // C only: mpi.h would otherwise pull in the deprecated C++ bindings and their library
    const cflags = ["-DOMPI_SKIP_MPICXX", "-DMPICH_SKIP_MPICXX", ...compile.split(/\s+/).filter(Boolean)];
    const lflags = link.split(/\s+/).filter(Boolean);
    if (!compiles(program, cflags, lflags)) continue;
    return {
      cflags: cflags.join(" "),
      ldflags: lflags.filter((f) => !/^-l/.test(f)).join(" "),
      libs: lflags.filter((f) => /^-l/.test(f)).join(" "),
    };
  }
  return null;
}

const what = process.argv[2];
if (what === "mpi" || what?.startsWith("mpi-")) {
  const m = mpi();
  const out = { mpi: m ? "1" : "0", "mpi-cflags": m?.cflags ?? "", "mpi-ldflags": m?.ldflags ?? "", "mpi-libs": m?.libs ?? "" }[what];
  if (out === undefined) {
    process.stderr.write(`usage: node scripts/native-config.js cflags|ldflags|mpi|mpi-cflags|mpi-ldflags|mpi-libs (got ${what})\n`);
    process.exit(1);
  }
  process.stdout.write(out + "\n");
} else {
  const flags = openmp();
  if (what === "cflags") process.stdout.write(flags.cflags + "\n");
  else if (what === "ldflags") process.stdout.write(flags.ldflags + "\n");
  else {
    process.stderr.write(`usage: node scripts/native-config.js cflags|ldflags|mpi|mpi-cflags|mpi-ldflags|mpi-libs (got ${what ?? "nothing"})\n`);
    process.exit(1);
  }
}
