#!/bin/sh
# Measure the BLAS libraries in turns: each round runs tsdpo's FMA-peak probe, one sgemm-shapes process that times
# every product on each library in turn (A, B, C, D, A, B, C, D, ...), so a noisy stretch of the shared machine
# falls on all of them, then the probe again. Raw lines go to stdout, for summarise.mjs. Before each round it waits
# while the test suite or a benchmark is running.
#
#   [WAIT_POLICY=active] [THREADS=n] [LIBS="openblas-openmp tsdpo onednn"] sh bench/blas/run.sh [ROUNDS [REPS [WARMUP]]] > raw.tsv
#
# Environment as tsdpo's addon sets it when it loads (src/backend/native/index.ts): 2 threads, idle OpenMP threads
# sleep (OMP_WAIT_POLICY=passive), OpenBLAS pthreads spins 2^4 cycles at most, OPENBLAS_CORETYPE unset.
# WAIT_POLICY=active measures the OpenMP libraries with spinning idle threads instead (the addon's setting for a
# dedicated machine); the pthreads OpenBLAS is left out then, as OpenMP threads spinning beside its own threads
# would leave it short of cores.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${1:-5}
reps=${2:-4}
warmup=${3:-2}
bin=${TMPDIR:-/tmp}/sgemm-shapes
gcc -std=c11 -O2 -Wall -Wextra -o "$bin" "$here/sgemm-shapes.c" -ldl -lm
# tsdpo's own GEMM as a CBLAS library, built with the addon's flags (binding.gyp, scripts/native-config.js).
own=${TMPDIR:-/tmp}/libtsdpo-gemm.so
g++ -std=gnu++17 -O3 -fopenmp -fno-math-errno -fno-trapping-math -Wall -Wextra -Wno-unknown-pragmas -shared -fPIC \
  -o "$own" "$here/tsdpo-cblas.cc" "$repo/src/backend/native/gemm.cc" "$repo/src/backend/native/parallel.cc"

lib=/usr/lib/x86_64-linux-gnu
policy=${WAIT_POLICY:-passive}
export OMP_NUM_THREADS=${THREADS:-2} OPENBLAS_NUM_THREADS=${THREADS:-2} BLIS_NUM_THREADS=${THREADS:-2} \
  OMP_WAIT_POLICY=$policy OPENBLAS_THREAD_TIMEOUT=4
unset OPENBLAS_CORETYPE
# The first library is the reference of the paired columns. LIBS chooses among these; a missing one is left out.
set --
for name in ${LIBS:-openblas-openmp tsdpo onednn}; do
  case $name in
    tsdpo) spec="tsdpo:cblas:$own" ;;
    openblas-openmp) spec="openblas-openmp:cblas:$lib/openblas-openmp/libopenblas.so.0" ;;
    openblas-pthreads) spec="openblas-pthreads:cblas:$lib/openblas-pthread/libopenblas.so.0" ;;
    blis-openmp) spec="blis-openmp:cblas:$lib/blis-openmp/libblis.so.4" ;;
    onednn) spec="onednn:dnnl:$lib/libdnnl.so.2" ;;
    *) echo "run.sh: unknown library $name" >&2; exit 1 ;;
  esac
  if [ -e "${spec##*:}" ]; then set -- "$@" "$spec"; else echo "# $name not installed (${spec##*:}), left out" >&2; fi
done

# Jiffies the hypervisor gave to others while our vCPUs wanted to run (steal), and all jiffies, from /proc/stat.
cpu_times() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat; }

# tsdpo's FMA-peak probe (300 ms on every thread, GFLOP/s per CPU-second), before and after each round's GEMMs.
fma_peak() {
  peak=$(node -e "import('$repo/dist/src/backend/native/index.js')
    .then(m => console.log(m.loadNative().fmaPeakGflops(300)))")
  printf 'fma\t%s\t%s\n' "$round" "$peak"
}

busy() {
  ps -eo pid=,args= | grep -E 'node --test|scripts/test\.js|bench' | grep -v -E 'grep|bench/blas/' || true
}

# The machine, for the record (summarise.mjs copies it into its JSON).
echo "# cpu $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), family $(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2- | tr -d ' ') model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2- | tr -d ' '), $(nproc) cpus, flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|avx512f|avx512bw' | tr '\n' ' ')"

round=1
while [ "$round" -le "$rounds" ]; do
  while [ -n "$(busy)" ]; do
    echo "# round $round waits 30 s for: $(busy | tr '\n' ';')" >&2
    sleep 30
  done
  echo "# round $round load average $(cut -d' ' -f1-3 /proc/loadavg)"
  before=$(cpu_times)
  fma_peak
  "$bin" "$reps" "$warmup" "$@"
  fma_peak
  echo "$before $(cpu_times)" | awk '{printf "# round steal %.1f%%\n", 100 * ($3 - $1) / ($4 - $2)}'
  round=$((round + 1))
done
echo "# end load average $(cut -d' ' -f1-3 /proc/loadavg)"
