// Run by test/mpi.test.ts under `mpirun -np W`: each rank fills buffers from a seed of its own, the binding sums them
// in rank order, and every rank checks the result bit for bit against addInRankOrder over all ranks' buffers
// (regenerated locally), then allgather. Rank 0 prints one JSON line. Outside mpirun (node --test finds this file
// too) it does nothing.

import { addInRankOrder, allgather, joinWorld, launcherWorldSize, orderedSum } from "../../src/train/distributed.js";
import { mulberry32 } from "../../src/rng.js";

function fill(rank: number, n: number, ctor: Float32ArrayConstructor | Float64ArrayConstructor): Float32Array | Float64Array {
  const r = mulberry32(1000 + rank * 7919 + n);
  // magnitudes over several decades, so that the order of additions shows in the low bits
  const out = new ctor(n);
  for (let i = 0; i < n; i++) out[i] = (r() - 0.5) * 10 ** Math.floor(r() * 6 - 3);
  return out;
}

if (launcherWorldSize() !== null) {
  const w = joinWorld("native");
  const checks: { n: number; type: string; bitEqual: boolean; differsFromPairwise: boolean }[] = [];
  for (const ctor of [Float32Array, Float64Array]) {
    // the last spans three of the binding's 1 Mi-element segments
    for (const n of [0, 1, 5, 1003, 200_003, 2_500_003]) {
      const mine = fill(w.rank, n, ctor);
      orderedSum(w, mine);
      const want = fill(0, n, ctor);
      for (let q = 1; q < w.size; q++) addInRankOrder(want, fill(q, n, ctor));
      // the same numbers summed another way (last rank first) usually differ somewhere: the order is really fixed
      const other = fill(w.size - 1, n, ctor);
      for (let q = w.size - 2; q >= 0; q--) addInRankOrder(other, fill(q, n, ctor));
      let equal = true, differs = false;
      for (let i = 0; i < n; i++) {
        if (!Object.is(mine[i], want[i])) equal = false;
        if (want[i] !== other[i]) differs = true;
      }
      checks.push({ n, type: ctor.name, bitEqual: equal, differsFromPairwise: differs });
    }
  }
  const gathered = allgather(w, Float64Array.from([w.rank, w.rank * 10 + 1]));
  const all = allgather(w, Float64Array.from([checks.every((c) => c.bitEqual) ? 1 : 0]));
  if (w.rank === 0) process.stdout.write(JSON.stringify({ size: w.size, checks, gathered: Array.from(gathered), allRanksEqual: Array.from(all) }) + "\n");
}
