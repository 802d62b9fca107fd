// `tsdpo report <folder>`: (re)writes report.html for a train() run folder or a `tsdpo demo` folder.

import { resolve } from "node:path";
import { configError } from "../errors.js";
import type { Command } from "./commands.js";

export const reportCommand: Command = {
  summary: "write report.html (charts, samples, config) for a run folder or a demo folder",
  help: `usage: tsdpo report <run-folder>
  Reads the folder's metrics.jsonl, config.json, summary.json and samples.json and writes report.html beside them:
  one self-contained page (Chart.js inlined) that opens offline. For a \`tsdpo demo\` folder it also draws the
  reward-vs-KL frontier. train() writes the same report at the end of every run; this command redraws it, for
  instance while a run is still going.`,
  options: {},
  async run(_v, positionals) {
    const dir = positionals[0];
    if (!dir || positionals.length > 1) throw configError("report: give exactly one folder, e.g. tsdpo report runs/my-run");
    const { writeReport } = await import("../report/report.js");
    process.stdout.write(`${await writeReport(resolve(dir))}\n`);
  },
};
