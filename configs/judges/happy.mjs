// A judge for `tsdpo iterate` (README, "Online DPO"; configs/iterate-module.json names it): any module that exports score(prompt, completion) → number
// (higher is better) or compare(prompt, a, b) → P(a ≻ b). This one rewards stories that stay cheerful and end
// their sentences, and penalises repeating words: a rule, as a user might write for their own task. An async
// function that calls out to a service works the same way.

const HAPPY = ["happy", "smile", "smiled", "fun", "love", "loved", "friend", "friends", "laugh", "laughed", "glad", "play", "played"];
const SAD = ["sad", "cry", "cried", "scared", "angry", "hurt", "lost", "bad"];

export function score(prompt, completion) {
  const words = completion.toLowerCase().match(/[a-z']+/g) ?? [];
  let s = 0;
  for (const w of words) {
    if (HAPPY.includes(w)) s += 1;
    if (SAD.includes(w)) s -= 1;
  }
  const repeats = words.length - new Set(words).size;
  const sentences = (completion.match(/[.!?]/g) ?? []).length;
  return s + 0.5 * Math.min(sentences, 2) - 0.25 * repeats;
}
