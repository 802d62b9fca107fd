// README's measured numbers are tied to the committed output of the script that measured them.
//
// The convention: a measured number in README is a Markdown link whose text is the number as shown and whose target
// is the committed result file with a JSON Pointer (RFC 6901, percent-encoded) to the value as the fragment:
//
//   [2.17×](bench/results/smollm-135m.json#/speed_ratio_torch_over_tsdpo)
//   [6.80 s](bench/results/smollm-135m.json#/torch/ms_per_step@0.001)    a factor after @ scales the value
//   [85%](bench/results/x.json#/models/qwen2.5-0.5b/share_of_peak@100)
//
// This test finds every such link, reads the value, applies the factor and checks that the text shows it rounded to
// the decimals shown (thousands separators, signs and units are allowed around the number). A number that is not a measurement (a version, a tolerance, a
// count of test cases) is written without a link. Every result file a link names must be committed, so a README
// number can only change together with the output that backs it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./helpers.js";

interface Marked {
  text: string;
  file: string;
  path: string;
  scale: number;
  line: number;
}

const LINK = /\[([^\]]*)\]\(((?:bench|results)\/[^)#\s]+\.json)#(\/[^)\s]*)\)/g;

export function markedNumbers(markdown: string): Marked[] {
  const found: Marked[] = [];
  markdown.split("\n").forEach((lineText, i) => {
    for (const m of lineText.matchAll(LINK)) {
      const [, text, file, fragment] = m as unknown as [string, string, string, string];
      const at = fragment.lastIndexOf("@");
      const path = decodeURIComponent(at >= 0 ? fragment.slice(0, at) : fragment);
      found.push({ text, file, path, scale: at >= 0 ? Number(fragment.slice(at + 1)) : 1, line: i + 1 });
    }
  });
  return found;
}

/** The value a JSON Pointer ("/a/b~1c/0") names, or undefined. */
function valueAt(json: unknown, pointer: string): unknown {
  let v: unknown = json;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (v === null || typeof v !== "object" || !(key in (v as Record<string, unknown>))) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

/** The number a link's text shows, and its decimals: "2.17×" → 2.17, 2; "4,387 MB" → 4387, 0; "−3%" → −3, 0. */
export function shownNumber(text: string): { value: number; decimals: number } | null {
  const m = /([+−-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return null;
  const digits = m[2]!.replace(/,/g, "") + (m[3] ? `.${m[3]}` : "");
  const sign = m[1] === "−" || m[1] === "-" ? -1 : 1;
  return { value: sign * Number(digits), decimals: m[3]?.length ?? 0 };
}

const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
const marked = markedNumbers(readme);

test("README marks its measured numbers, and each equals the committed result it cites, as rounded", () => {
  assert.ok(marked.length >= 10, `only ${marked.length} marked numbers found in README`);
  const problems: string[] = [];
  const cache = new Map<string, unknown>();
  for (const m of marked) {
    const where = `README.md:${m.line}: [${m.text}](${m.file}#${m.path})`;
    const abs = join(repoRoot, m.file);
    if (!existsSync(abs)) {
      problems.push(`${where}: ${m.file} does not exist`);
      continue;
    }
    if (!cache.has(abs)) cache.set(abs, JSON.parse(readFileSync(abs, "utf8")));
    const raw = valueAt(cache.get(abs), m.path);
    if (typeof raw !== "number") {
      problems.push(`${where}: ${m.path} is ${JSON.stringify(raw)}, not a number`);
      continue;
    }
    const shown = shownNumber(m.text);
    if (!shown) {
      problems.push(`${where}: the text shows no number`);
      continue;
    }
    const want = Number((raw * m.scale).toFixed(shown.decimals));
    if (Math.abs(shown.value - want) > 1e-9 * Math.max(1, Math.abs(want)))
      problems.push(`${where}: README shows ${shown.value}, the result is ${raw * m.scale} (${want} at ${shown.decimals} decimals)`);
  }
  assert.deepEqual(problems, []);
});

test("the README-number checker parses links, JSON Pointers, factors and shown decimals", () => {
  const good = markedNumbers("x [2.17×](bench/results/a.json#/speed) y [6.80 s](bench/results/a.json#/t/ms@0.001) " +
    "| [293](bench/blas/r.json#/models/qwen2.5-0.5b/gate,up%201536x576%20fwd/rewards~1chosen) |");
  assert.deepEqual(good.map((m) => [m.text, m.file, m.path, m.scale]), [
    ["2.17×", "bench/results/a.json", "/speed", 1],
    ["6.80 s", "bench/results/a.json", "/t/ms", 0.001],
    ["293", "bench/blas/r.json", "/models/qwen2.5-0.5b/gate,up 1536x576 fwd/rewards~1chosen", 1],
  ]);
  assert.equal(valueAt({ m: { "q.5": { "a b": { "r/c": 7 } } } }, "/m/q.5/a b/r~1c"), 7);
  assert.deepEqual(shownNumber("4,387 MB"), { value: 4387, decimals: 0 });
  assert.deepEqual(shownNumber("**−3%**"), { value: -3, decimals: 0 });
  assert.deepEqual(shownNumber("0.95×"), { value: 0.95, decimals: 2 });
  assert.equal(valueAt({ a: { b: [1, 2.5] } }, "/a/b/1"), 2.5);
  assert.equal(valueAt({ a: 1 }, "/a/c"), undefined);
});

test("the js-backend notice quotes the measured demo slowdown", async () => {
  const { JS_BACKEND_COST } = await import("../src/backend/select.js");
  const measured = JSON.parse(readFileSync(join(repoRoot, "bench", "results", "demo-backends.json"), "utf8")) as { js_over_native: number };
  const shown = /about (\d+)x longer/.exec(JS_BACKEND_COST);
  assert.ok(shown, JS_BACKEND_COST);
  assert.equal(Number(shown[1]), Math.round(measured.js_over_native), "src/backend/select.ts JS_BACKEND_COST");
  const installMessage = readFileSync(join(repoRoot, "scripts", "build-native.js"), "utf8");
  assert.ok(installMessage.includes(JS_BACKEND_COST), "scripts/build-native.js says the same as select.ts");
});
