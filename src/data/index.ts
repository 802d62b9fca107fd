// Preference data: read, validate, normalise, tokenise, truncate, batch, split. See load.ts for the pipeline.

export * from "./types.js";
export { readRows, listKeys, listNames } from "./read.js";
export type { RawRow, ReadResult, ReadOptions } from "./read.js";
export {
  normalizeRow, inferTextPrompt, chatRendererFor, RowProblem, DEFAULT_ASSISTANT_MARKER, describeMapping, isHarmlessKey,
  couldBePrompt, nonPreferenceKind, PREFERENCE_ROW_EXAMPLE, describeValue,
} from "./normalize.js";
export type { NormalizeOptions, NormalizeResult, RenderChatFn, RowWarning } from "./normalize.js";
export {
  chooseLayout, formatConfigProblem, nearMiss, webgptAnswer, toWinnerValues, DATA_FORMATS, DEFAULT_WINNER_VALUES,
} from "./formats.js";
export type { DataFormat, FormatConfig, FormatOptions, Layout, MappedRow, WinnerValues, WinnerValuesConfig } from "./formats.js";
export { pairEncoder, tokenizePair, tokenizePairs, resolveTokenizeOptions } from "./tokenize.js";
export type { PairEncoder, TokenizeOptions, TokenizeResult, TokenizedSet, TruncationMode } from "./tokenize.js";
export { allocBatch, fillBatch, buildBatch, longestSequence, defaultPadId } from "./batch.js";
export type { PreferenceBatch, BuildBatchOptions } from "./batch.js";
export { packPairs, packedShape, toGrid, fromGrid } from "./pack.js";
export type { PackedPairs } from "./pack.js";
export { splitTrainEval, shuffledIndices, evalSize } from "./split.js";
export type { EvalSplit } from "./split.js";
export {
  loadPreferenceData, dataOptionsFromConfig, formatPreferenceData, formatIssues, formatWarnings, writeWarningsReport,
  loadPreferences, splitPreferences, dataStats, formatDataStats, prepareDataset, loadPreferencePairs, writeInvalidReport,
} from "./load.js";
export type { LoadOptions, LoadedFile, SplitPreferences, DataStats, DataConfig, PrepareOptions, PreparedData } from "./load.js";
