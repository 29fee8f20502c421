import { CUT_MARK } from '../llm/compression';

/**
 * The essay's sentences, numbered for the model. A grade points at the sentences it annotates (and
 * the passages it rewrites) by number instead of copying them: output tokens cost four to ten times
 * input tokens on every model of the catalog, and a copied quote is the longest part of an
 * annotation. The server puts the words back from the text, so a quote is exact by construction.
 *
 * A sentence ends at a line break, or after 。！？!?… (and after a full stop followed by a space or
 * the end of the text, so 3.5 or a URL stays whole), with the closing quotes and brackets after it.
 * One pass over the text; every sentence is an exact substring of it.
 */

const TERMINAL = new Set(['。', '！', '？', '!', '?', '…']);
const CLOSING = new Set(['”', '’', '"', "'", '」', '』', '）', ')', ']', '］', '】', '》']);
const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\u3000' || c === '\u00a0';

/** The sentences of `text`, as [start, end) offsets into it, in order; whitespace between them left out. */
export function sentenceSpans(text: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = -1;
  const close = (end: number) => {
    let e = end;
    while (e > start && isSpace(text[e - 1])) e--;
    if (start >= 0 && e > start) out.push([start, e]);
    start = -1;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n' || c === '\r') {
      close(i);
      continue;
    }
    if (start < 0) {
      if (isSpace(c)) continue;
      // The mark of a head-and-tail cut (a line of its own) is not a sentence of the essay: numbered,
      // it read as two ("[40][…[41]]"), and a grade could point at text the student never wrote.
      if (atCutMark(text, i)) {
        i += CUT_MARK.length - 1;
        continue;
      }
      start = i;
    }
    const fullStop = c === '.' && (i + 1 === text.length || isSpace(text[i + 1]) || text[i + 1] === '\n' || CLOSING.has(text[i + 1]));
    if (TERMINAL.has(c) || fullStop) {
      let j = i + 1;
      while (j < text.length && (TERMINAL.has(text[j]) || text[j] === '.' || CLOSING.has(text[j]))) j++;
      close(j);
      i = j - 1;
    }
  }
  close(text.length);
  return out;
}

/** Is a line that is only the cut mark (spaces around it aside) at `i`, its first visible character? */
function atCutMark(text: string, i: number): boolean {
  if (!text.startsWith(CUT_MARK, i)) return false;
  let before = i;
  while (before > 0 && isSpace(text[before - 1])) before--;
  let after = i + CUT_MARK.length;
  while (after < text.length && isSpace(text[after])) after++;
  return (before === 0 || text[before - 1] === '\n' || text[before - 1] === '\r') && (after === text.length || text[after] === '\n' || text[after] === '\r');
}

export interface NumberedText {
  /** the text with `[n]` written before its n-th sentence (from 1); line breaks kept */
  text: string;
  /** the sentences, the first at index 0 */
  sentences: string[];
}

/** The text as the model reads it: each sentence preceded by its number in brackets. */
export function numberSentences(text: string): NumberedText {
  const spans = sentenceSpans(text);
  const parts: string[] = [];
  let kept = 0;
  spans.forEach(([s], n) => {
    parts.push(text.slice(kept, s), `[${n + 1}]`);
    kept = s;
  });
  parts.push(text.slice(kept));
  return { text: parts.join(''), sentences: spans.map(([s, e]) => text.slice(s, e)) };
}
