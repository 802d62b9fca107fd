#!/bin/sh
# The native backend's portable code on arm64: cross-compiles the GEMM, the thread pool and the kernels file with
# Debian's aarch64 g++ and runs test/native/gemm_check.cc under qemu-user, once with OpenMP and once with the addon's
# own std::thread pool. (node itself does not run here: this checks the C++ that an arm64 install compiles.)
#
#   sh scripts/test-arm64.sh        needs: apt-get install g++-aarch64-linux-gnu qemu-user
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cxx=${CXX_ARM64:-aarch64-linux-gnu-g++}
sysroot=${ARM64_SYSROOT:-/usr/aarch64-linux-gnu}
if ! command -v "$cxx" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "test-arm64: $cxx or qemu-aarch64 is missing (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
  exit 1
fi
out=${TMPDIR:-/tmp}/tsdpo-gemm-check-arm64
src="$repo/test/native/gemm_check.cc $repo/src/backend/native/gemm.cc $repo/src/backend/native/parallel.cc $repo/src/backend/native/kernels.cc"
flags="-std=gnu++17 -O2 -fno-math-errno -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas"
echo "== arm64, OpenMP"
# shellcheck disable=SC2086
"$cxx" $flags -fopenmp -o "$out-omp" $src
qemu-aarch64 -L "$sysroot" "$out-omp"
echo "== arm64, std::thread pool (no OpenMP)"
# shellcheck disable=SC2086
"$cxx" $flags -fopenmp-simd -pthread -o "$out-threads" $src
qemu-aarch64 -L "$sysroot" "$out-threads"
