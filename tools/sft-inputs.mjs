#!/usr/bin/env node
// Writes test/fixtures/torch/sft-inputs.json: the ids and masks of the SFT fixture's two chat-templated conversations
// (test/sft-fixture.ts), made by tsdpo's own data path from the built tree, for tools/sft_fixture.py to compute the
// PyTorch reference from. Build first (npm run build); a second argument names another build folder.
//
//   node tools/sft-inputs.mjs [dist]

import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = resolve(root, process.argv[2] ?? "dist");
const { sftFixtureInputs } = await import(pathToFileURL(join(dist, "test", "sft-fixture.js")).href);
const { loadModel } = await import(pathToFileURL(join(dist, "src", "io", "load.js")).href);
const tok = loadModel(join(root, "assets", "models", "stories260K", "stories260K.gguf")).tokenizer;
const out = join(root, "test", "fixtures", "torch", "sft-inputs.json");
writeFileSync(out, JSON.stringify(sftFixtureInputs(tok)) + "\n");
process.stdout.write(`wrote ${out}\n`);
