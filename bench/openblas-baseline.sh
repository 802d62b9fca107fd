#!/bin/sh
# Prepares the build of tsdpo to compare its own GEMM against: this commit (or COMMIT) with every float matrix
# product sent to OpenBLAS's cblas_sgemm instead (bench/openblas-sgemm.patch: gemm.cc's sgemm() calls cblas_sgemm,
# and binding.gyp links Debian's OpenMP build of OpenBLAS). Everything else, the kernels, the trainer and the
# quantised products, is the same code, so a step-time difference is the GEMM's alone. Then:
#
#   npm run bench:torch -- --preset smollm-135m --baseline-tsdpo "$DIR" --baseline-label "OpenBLAS sgemm"
#
#   sh bench/openblas-baseline.sh [DIR [COMMIT]]   (default /tmp/tsdpo-openblas-sgemm, HEAD;
#                                                   needs apt-get install libopenblas-dev libopenblas0-openmp)
set -eu
dir=${1:-/tmp/tsdpo-openblas-sgemm}
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse "${2:-HEAD}")
if [ ! -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 ] || [ ! -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; then
  echo "openblas-baseline: needs Debian's OpenBLAS headers and OpenMP build: apt-get install libopenblas-dev libopenblas0-openmp" >&2
  exit 1
fi
if [ -e "$dir/.git" ]; then git -C "$dir" checkout --quiet --force --detach "$commit"; else git -C "$repo" worktree add --detach "$dir" "$commit"; fi
cd "$dir"
git apply "$repo/bench/openblas-sgemm.patch"
npm ci --no-audit --no-fund
ldd build/Release/tsdpo_native.node | grep -q 'openblas-openmp/libopenblas' ||
  { echo "openblas-baseline: the addon in $dir is not linked to OpenBLAS's OpenMP build" >&2; exit 1; }
echo "openblas-baseline: $dir is $commit with OpenBLAS's sgemm"
