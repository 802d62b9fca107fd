#!/usr/bin/env node
// Compiler and linker flags for OpenBLAS, printed for binding.gyp (`<!@(node scripts/native-config.js cflags|libs)`).
// Exits non-zero with a one-line reason when no OpenBLAS is found, which fails the native build cleanly; the
// install step (scripts/build-native.js) then leaves tsdpo on its TypeScript backend.
//
// Order of search: TSDPO_BLAS_CFLAGS / TSDPO_BLAS_LIBS (both, verbatim), then `pkg-config openblas`, then the usual
// Debian / Fedora / Homebrew locations.
//
// Threading variant: Debian ships OpenBLAS built three ways (pthreads, OpenMP, serial) under one soname and picks
// one with update-alternatives, pthreads by default. Our kernels use OpenMP, and two thread pools on one machine
// spin against each other, so when the OpenMP build is installed (libopenblas0-openmp) we put its directory first
// on the addon's run path and it is the one loaded. TSDPO_OPENBLAS_VARIANT=system keeps the system's choice.

import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

function fail(reason) {
  process.stderr.write(`tsdpo native build: ${reason}\n`);
  process.exit(1);
}

function pkgConfig(args) {
  try {
    return execFileSync("pkg-config", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

const multiarch = (() => {
  try {
    return execFileSync("gcc", ["-print-multiarch"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
})();

function isOpenblasHeader(dir) {
  const f = join(dir, "cblas.h");
  try {
    return existsSync(f) && /openblas/i.test(readFileSync(f, "utf8"));
  } catch {
    return false;
  }
}

function find() {
  if (process.env.TSDPO_BLAS_CFLAGS !== undefined && process.env.TSDPO_BLAS_LIBS !== undefined)
    return { cflags: process.env.TSDPO_BLAS_CFLAGS, libs: process.env.TSDPO_BLAS_LIBS };
  const pc = { cflags: pkgConfig(["--cflags", "openblas"]), libs: pkgConfig(["--libs", "openblas"]) };
  if (pc.cflags !== null && pc.libs !== null) return pc;
  const incs = [
    multiarch && `/usr/include/${multiarch}/openblas-pthread`, multiarch && `/usr/include/${multiarch}/openblas-openmp`,
    "/usr/include/openblas", "/usr/local/include/openblas", "/usr/local/include", "/opt/homebrew/opt/openblas/include",
    "/usr/local/opt/openblas/include", multiarch && `/usr/include/${multiarch}`, "/usr/include",
  ].filter(Boolean);
  const libDirs = [
    multiarch && `/usr/lib/${multiarch}/openblas-pthread`, multiarch && `/usr/lib/${multiarch}`, "/usr/lib64",
    "/usr/lib", "/usr/local/lib", "/opt/homebrew/opt/openblas/lib", "/usr/local/opt/openblas/lib",
  ].filter(Boolean);
  const inc = incs.find(isOpenblasHeader);
  const lib = libDirs.find((d) => {
    try {
      return readdirSync(d).some((f) => /^libopenblas\.(so|dylib)/.test(f));
    } catch {
      return false;
    }
  });
  if (!inc || !lib)
    fail(
      `OpenBLAS not found (${!inc ? "no OpenBLAS cblas.h" : "no libopenblas"}); install it (Debian/Ubuntu: ` +
        "apt-get install libopenblas-dev; Fedora: dnf install openblas-devel; macOS: brew install openblas) or set " +
        "TSDPO_BLAS_CFLAGS and TSDPO_BLAS_LIBS",
    );
  return { cflags: `-I${inc}`, libs: `-L${lib} -lopenblas` };
}

function runPath(libs) {
  if (process.env.TSDPO_OPENBLAS_VARIANT === "system") return "";
  for (const m of libs.matchAll(/-L(\S+)/g)) {
    const dir = m[1].replace(/\/+$/, "");
    const base = /openblas-(pthread|serial|openmp)$/.test(dir) ? dirname(dir) : dir;
    const omp = join(base, "openblas-openmp");
    if (existsSync(join(omp, "libopenblas.so.0"))) return `-Wl,-rpath,${omp}`;
  }
  return "";
}

const what = process.argv[2];
const { cflags, libs } = find();
if (what === "cflags") process.stdout.write(cflags + "\n");
else if (what === "libs") process.stdout.write(`${libs} ${runPath(libs)}`.trim() + "\n");
else fail(`usage: node scripts/native-config.js cflags|libs (got ${what ?? "nothing"})`);
