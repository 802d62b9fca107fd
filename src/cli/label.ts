// `tsdpo label`: a person labels their own model's completions in the browser (src/label/). Samples the items (or
// reads them back), serves the page on 127.0.0.1 with a token in the URL, and runs until Ctrl-C.

import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { selectBackend } from "../backend/select.js";
import { loadPreferences } from "../data/load.js";
import { TsdpoError, configError, inputError } from "../errors.js";
import { loadModelForUse, resolveModelPath } from "../io/resolve.js";
import { type LabelSampling, MAX_K, pairItems, sampleLabelItems } from "../label/sample.js";
import { labelPage } from "../label/page.js";
import { type Studio, newToken, startLabelServer } from "../label/server.js";
import { LabelSession, checkSettings, labelPaths, nonEmptyFile, readItems, writeItems } from "../label/store.js";
import type { ItemsFile, LabelItem } from "../label/types.js";
import { defaultModelPath } from "../paths.js";
import { type SamplePrompt, readPromptsFile } from "../sample/sideBySide.js";
import type { ChatTemplateKwargs } from "../tokenizer/chat.js";
import { loadTokenizer } from "../tokenizer/index.js";
import { createProgress } from "../train/progress.js";
import { acquireLock } from "../train/lock.js";
import type { Values } from "./args.js";
import type { Command } from "./commands.js";
import { templateKwargsFor } from "./templatekwargs.js";

const str = (v: Values, key: string): string | undefined => (typeof v[key] === "string" ? (v[key] as string) : undefined);

function num(v: Values, key: string, fallback: number, ok: (x: number) => boolean, what: string): number {
  const s = str(v, key);
  if (s === undefined) return fallback;
  const x = Number(s);
  if (s.trim() === "" || !Number.isFinite(x) || !ok(x)) throw configError(`label: --${key} ${s}: expected ${what}`);
  return x;
}

const isInt = Number.isInteger;

function sha256Of(path: string, what: string): string {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch (e) {
    throw new TsdpoError("io", `${path}: cannot read the ${what} (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the path`);
  }
}

const say = (line: string): void => void process.stderr.write(line + "\n");

export const labelCommand: Command = {
  summary: "label your own model's completions in the browser, into a preference file train reads",
  help: `usage: tsdpo label --prompts <file> [--model <path>] [--reference <path>] [--k K] --out <prefs.jsonl> [--port P]
       tsdpo label --pairs <prefs.jsonl> --out <reviewed.jsonl> [--port P]
  Samples K completions of each prompt from your model, then serves a page on 127.0.0.1 (the URL, with a random
  token, is printed) where you pick the better one: 1 and 2 choose, t marks a tie, s skips, u undoes, e writes a
  better answer (it becomes chosen, the answer it replaces rejected). With K > 2 you mark the best and the worst.
  Each pair goes into --out, a preference file \`tsdpo train --data\` reads.
  --prompts <file>     one prompt per line, or JSON Lines with a "prompt" field (text, or chat messages rendered with
                       the model's chat template; their pairs stay conversational)
  --model <path>       the model whose completions you label (default: the shipped stories260K)
  --adapter <folder>   a PEFT LoRA adapter to put on it
  --reference <path>   a second model: half of each item's completions come from it (K = 2: one each), shown blind
  --k K                completions per prompt, 2–${MAX_K} (default 2)
  --pairs <file>       review an existing preference file instead of sampling: confirm (choose its chosen answer),
                       swap, skip or rewrite each pair; its file's choice is marked. --model, if given, supplies the
                       chat template for conversational rows
  --out <file>         the preference file to write. Next to it: <name>.items.json (the items, saved before the page
                       opens), <name>.log.jsonl (every action, fsynced before the page says "saved") and <name>.lock
  --port P             the port on 127.0.0.1 (default 0: a free one)
  --max-new-tokens N   at most N new tokens per completion (default 128)
  --temperature T      sampling temperature (default 1: the model's own distribution, as DPO's pairs should be)
  --seed S             seeds the completions and the order the page shows them in (default 0)
  --chat-template-kwargs '{"enable_thinking": false}'
                       extra variables for the chat template of message prompts
  --backend js|native|auto
Stop the server with Ctrl-C. Run the same command again to continue at the first undecided item: the items are
read back (never sampled again), the log is replayed and the preference file rebuilt from it, so a kill -9 at any
moment loses nothing the page showed as saved.`,
  options: {
    prompts: { type: "string" }, pairs: { type: "string" }, model: { type: "string" }, adapter: { type: "string" },
    reference: { type: "string" }, k: { type: "string" }, out: { type: "string" }, port: { type: "string" },
    "max-new-tokens": { type: "string" }, temperature: { type: "string" }, seed: { type: "string" },
    chat_template_kwargs: { type: "string" }, backend: { type: "string" },
  },
  async run(v) {
    const promptsPath = str(v, "prompts"), pairsPath = str(v, "pairs"), outArg = str(v, "out");
    if ((promptsPath === undefined) === (pairsPath === undefined))
      throw configError("label: give --prompts <file> (sample completions to label) or --pairs <file> (review a preference file), one of the two");
    if (!outArg) throw configError("label: --out <prefs.jsonl> is required: the preference file to write");
    const k = num(v, "k", 2, (x) => isInt(x) && x >= 2 && x <= MAX_K, `a whole number from 2 to ${MAX_K} (the keys 1–${MAX_K} choose)`);
    const port = num(v, "port", 0, (x) => isInt(x) && x >= 0 && x <= 65535, "a port number 0–65535 (0: a free one)");
    const maxNewTokens = num(v, "max-new-tokens", 128, (x) => isInt(x) && x >= 1, "a whole number ≥ 1");
    const temperature = num(v, "temperature", 1, (x) => x > 0, "a number > 0 (at 0, greedy decoding, every completion of a prompt is the same)");
    const seed = num(v, "seed", 0, isInt, "a whole number");
    const modelArg = str(v, "model"), refArg = str(v, "reference"), adapter = str(v, "adapter");
    if (pairsPath !== undefined) {
      const extra = ["reference", "adapter", "k", "max-new-tokens", "temperature"].filter((key) => v[key] !== undefined);
      if (extra.length) throw configError(`label --pairs reviews the file's own pairs; ${extra.map((x) => `--${x}`).join(", ")} only apply to --prompts`);
    }

    const paths = labelPaths(resolve(outArg));
    const folder = dirname(paths.out);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) throw inputError(`--out ${outArg}: the folder ${folder} does not exist; create it first`);
    if (!existsSync(paths.items)) {
      if (nonEmptyFile(paths.out))
        throw configError(`--out ${outArg}: the file exists and was not written by tsdpo label (there is no ${paths.items} next to it); give another --out, or delete it`);
      if (existsSync(paths.log))
        throw configError(`${paths.log} exists but ${paths.items}, the items it speaks of, does not; restore it, or delete the log to start afresh`);
    }

    // What made the items: a restart must give the same, or the log would speak of other items.
    const modelPath = modelArg === undefined ? null : resolveModelPath(modelArg);
    const kwargs = templateKwargsFor(v, modelArg);
    const settings: Record<string, unknown> =
      pairsPath !== undefined
        ? { mode: "pairs", pairs: resolve(pairsPath), pairs_sha256: sha256Of(pairsPath, "preference file"), model: modelPath, seed, chat_template_kwargs: kwargs }
        : {
            mode: "sample", prompts: resolve(promptsPath!), prompts_sha256: sha256Of(promptsPath!, "prompts file"),
            model: modelPath ?? defaultModelPath, adapter: adapter === undefined ? null : resolve(adapter),
            reference: refArg === undefined ? null : resolveModelPath(refArg), k, seed, max_new_tokens: maxNewTokens, temperature,
            chat_template_kwargs: kwargs,
          };
    const mode = pairsPath !== undefined ? "pairs" : "sample";

    const release = acquireLock(paths.lock, {
      what: "label studio",
      busy: `${paths.out}: another tsdpo label is serving this file`,
      advice: "give another --out",
      lostRace: `${paths.out}: another tsdpo label took this file's lock first`,
    }, say);
    try {
      let items: LabelItem[] | null = null;
      let session: LabelSession | null = null;
      if (existsSync(paths.items)) {
        const file = readItems(paths.items);
        checkSettings(paths.items, file.settings, settings);
        items = file.items;
        session = LabelSession.open(items, paths, mode, say);
      }
      // Read before the server starts, so that a file with no prompts (or no usable pairs) is an error at once.
      const prompts = items === null && promptsPath !== undefined ? readPromptsFile(promptsPath) : null;
      if (items === null && pairsPath !== undefined) items = await reviewItems(pairsPath, modelPath, kwargs, seed);

      const studio: Studio = { session, onSaved: (line) => void process.stdout.write(line + "\n") };
      // Listening before sampling: a port in use is an error now, not after the sampling. While sampling, Ctrl-C
      // ends the process at once (the lock it leaves is taken over by the next start); nothing is saved yet.
      const server = await startLabelServer(port, newToken(), labelPage(), studio);
      try {
        if (prompts !== null) {
          const models = { ...(modelArg ? { model: modelArg } : {}), ...(refArg ? { reference: refArg } : {}), ...(adapter ? { adapter } : {}) };
          items = sampleItems(v, prompts, { k, maxNewTokens, temperature, seed, chatTemplateKwargs: kwargs }, models);
          writeItems(paths.items, { tsdpo_label: 1, settings, items } satisfies ItemsFile);
        } else if (session === null) writeItems(paths.items, { tsdpo_label: 1, settings, items: items! } satisfies ItemsFile);
        studio.session = session ?? LabelSession.open(items!, paths, mode, say);
        // From here SIGINT and SIGTERM end the server; everything saved is already on disk.
        const stopped = new Promise<NodeJS.Signals>((res) => {
          process.once("SIGINT", () => res("SIGINT"));
          process.once("SIGTERM", () => res("SIGTERM"));
        });
        const s = studio.session.state(null);
        process.stdout.write(`open ${server.url}\n`);
        process.stdout.write(
          s.current
            ? `${s.total} items, ${s.decided} decided: ${s.current.item === 1 ? "starting at" : "continuing at"} item ${s.current.item}. ` +
                `Pairs go to ${paths.out}; Ctrl-C stops.\n`
            : `all ${s.total} items are decided (${s.pairs} pairs in ${paths.out}); the page can still undo. Ctrl-C stops.\n`,
        );
        await stopped;
      } finally {
        await server.close();
      }
      const s = studio.session?.state(null);
      if (s) process.stdout.write(`stopped: ${s.decided} of ${s.total} items decided, ${s.pairs} pairs in ${paths.out}; run the same command to continue\n`);
    } finally {
      release();
    }
  },
};

/** Samples the items, with a progress line on stderr. */
function sampleItems(v: Values, prompts: SamplePrompt[], s: LabelSampling, models: { model?: string; reference?: string; adapter?: string }): LabelItem[] {
  const be = selectBackend(str(v, "backend"));
  const policy = loadModelForUse(models.model ?? defaultModelPath, models.adapter, defaultModelPath);
  const reference = models.reference === undefined ? null : loadModelForUse(models.reference, null, defaultModelPath);
  say(`sampling ${s.k} completions of each of ${prompts.length} prompts (at most ${s.maxNewTokens} tokens each); the URL follows`);
  const progress = createProgress("label", prompts.length * s.k, 0, process.stderr, false, 10_000, "completions");
  const items = sampleLabelItems(be, policy, reference, prompts, s, (done) => progress.update(done, "sampled"));
  progress.done();
  return items;
}

/** The pairs of a preference file, read as train reads them, as items to review. */
async function reviewItems(path: string, modelPath: string | null, kwargs: ChatTemplateKwargs | null, seed: number): Promise<LabelItem[]> {
  const tokenizer = modelPath === null ? undefined : loadTokenizer(modelPath);
  const file = await loadPreferences(resolve(path), { ...(tokenizer ? { tokenizer } : {}), ...(kwargs ? { chatTemplateKwargs: kwargs } : {}) });
  if (file.drops.length) say(`${path}: ${file.drops.length} of ${file.rows} rows are not pairs to review (${[...new Set(file.drops.map((d) => d.reason))].join(", ")}); left out`);
  if (file.pairs.length === 0) throw inputError(`${path}: no pairs to review`);
  return pairItems(file.pairs, seed);
}
