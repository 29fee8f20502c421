/**
 * An essay's text cut into runs for drawing its annotations: each annotation marks the characters
 * from `start` to `end` (JavaScript string offsets, as the API gives them). Where two overlap, the
 * earlier one is drawn and the later one is listed below the text instead (notDrawn): a typo inside
 * a sentence marked for its structure is not lost. An annotation whose offsets do not hold its
 * quote is placed at the quote's first occurrence, or listed.
 */

export interface Mark {
  start: number;
  end: number;
  quote: string;
  category: string;
}

export interface Run {
  text: string;
  /** index into the annotations, for the runs that are marked */
  mark?: number;
}

export function placeMarks(text: string, marks: Mark[]): Array<{ index: number; start: number; end: number }> {
  const placed: Array<{ index: number; start: number; end: number }> = [];
  marks.forEach((m, index) => {
    let { start, end } = m;
    if (!(start >= 0 && end <= text.length && start < end && text.slice(start, end) === m.quote)) {
      const at = m.quote ? text.indexOf(m.quote) : -1;
      if (at < 0) return;
      start = at;
      end = at + m.quote.length;
    }
    placed.push({ index, start, end });
  });
  placed.sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: typeof placed = [];
  for (const p of placed) if (!kept.length || p.start >= kept[kept.length - 1].end) kept.push(p);
  return kept;
}

export function runs(text: string, marks: Mark[]): Run[] {
  const out: Run[] = [];
  let at = 0;
  for (const p of placeMarks(text, marks)) {
    if (p.start > at) out.push({ text: text.slice(at, p.start) });
    out.push({ text: text.slice(p.start, p.end), mark: p.index });
    at = p.end;
  }
  if (at < text.length) out.push({ text: text.slice(at) });
  return out;
}

/** The annotations `runs` does not draw (overlapping one drawn, or their quote not in the text), by index, in the text's order. */
export function notDrawn(text: string, marks: Mark[]): number[] {
  const drawn = new Set(placeMarks(text, marks).map((p) => p.index));
  return marks
    .map((m, index) => ({ m, index }))
    .filter(({ index }) => !drawn.has(index))
    .sort((a, b) => a.m.start - b.m.start || a.index - b.index)
    .map(({ index }) => index);
}
