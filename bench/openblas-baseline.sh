#!/bin/sh
# Prepares the OpenBLAS build of tsdpo to compare against: a git worktree of the last commit whose native backend
# linked OpenBLAS (43a4485), installed with `npm ci` (which builds its addon against Debian's OpenBLAS). Then:
#
#   npm run bench:torch -- --preset smollm-135m --baseline-tsdpo "$DIR" --baseline-label "OpenBLAS build"
#
#   sh bench/openblas-baseline.sh [DIR]     (default /tmp/tsdpo-openblas; needs libopenblas-dev libopenblas0-openmp)
set -eu
dir=${1:-/tmp/tsdpo-openblas}
commit=43a4485
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e "$dir/.git" ]; then git -C "$repo" worktree add --detach "$dir" "$commit"; fi
cd "$dir"
npm ci --no-audit --no-fund
node -e "import('./dist/src/backend/native/index.js').then((m) => { const n = m.loadNative();
  if (!n.ok) { console.error('the OpenBLAS build did not load: ' + n.reason); process.exit(1); }
  console.log(JSON.stringify(n.info())); })"
