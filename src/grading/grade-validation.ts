import type { Validation } from '../llm/gateway.service';
import { ANNOTATION_CATEGORIES, Variant } from './prompts';
import { isOnStep, maxScore, Rubric, totalScore } from './rubric';
import { MAX_MARKS_IN_A_ROW } from '../llm/compression';
import { isInvisible, isWhitespace } from './text-fold';
import { clip, stripControlChars } from '../common/control-chars';

export type AnnotationCategory = (typeof ANNOTATION_CATEGORIES)[number];

export interface Annotation {
  start: number;
  end: number;
  quote: string;
  category: AnnotationCategory;
  suggestion: string;
  explanation: string;
}

export interface DimensionScore {
  key: string;
  name: string;
  score: number;
  max: number;
  comment: string;
}

export interface DeepAnalysis {
  paragraphs: Array<{ index: number; analysis: string }>;
  rewrites: Array<{ start: number; end: number; quote: string; rewrite: string; reason: string }>;
  revisionPlan: string[];
}

/** A grade as validated and computed by the server (the model's scores, the server's total). */
export interface GradeBody {
  score: number;
  maxScore: number;
  dimensions: DimensionScore[];
  summary: string;
  strengths: string[];
  improvements: string[];
  annotations: Annotation[];
  deep?: DeepAnalysis;
}

export interface ValidatedGrade {
  grade: GradeBody;
  /** annotations dropped because their quote is not in the essay */
  droppedQuotes: number;
}

const MAX_ANNOTATIONS = 30;
/** The most remarks (annotations, rewrites) of an answer looked for in the essay: the rest are dropped unread. */
const MAX_REMARKS_READ = 4 * MAX_ANNOTATIONS;
/** paragraph analyses read from a deep answer, and the highest paragraph number taken */
const MAX_PARAGRAPHS = 200;

/** Takes the JSON object out of a model's answer (code fences and chatter around it are tolerated). */
export function extractJson(content: string): unknown {
  const text = content.trim().replace(/^```(?:json)?\s*/i, '').replace(/```\s*$/, '');
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end <= start) return undefined;
  try {
    return JSON.parse(text.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

/**
 * A string of the model's answer as a grade keeps it: without control characters or half a
 * surrogate pair (JSON can carry `\u0000` and `\ud83d`, and PostgreSQL's jsonb takes neither: the
 * grade, paid for, failed to store on every attempt), at most `max` UTF-16 units, never cut in the
 * middle of a character.
 */
function str(v: unknown, max = 4000): string {
  return typeof v === 'string' ? clip(stripControlChars(v).trim(), max).trim() : '';
}

function strings(v: unknown, maxItems = 10): string[] {
  return Array.isArray(v) ? v.map((x) => str(x, 1000)).filter(Boolean).slice(0, maxItems) : [];
}

/**
 * Where a quote stands in the essay: the first exact occurrence not used yet, else a match that
 * ignores whitespace and invisible characters (a zero-width space or a soft hyphen pasted with the
 * essay, which the prompt's text does not carry). Null when the essay does not contain it (an
 * invented quote). `essay` may be a Haystack, to fold a long essay once for many quotes.
 */
export function locateQuote(essay: string | Haystack, quote: string, used: Set<string> = new Set()): { start: number; end: number } | null {
  const hay = typeof essay === 'string' ? haystack(essay) : essay;
  const q = quote.trim();
  if (q.length < 2) return null;
  for (let at = 0; ; ) {
    const i = hay.text.indexOf(q, at);
    if (i < 0) break;
    if (!used.has(`${i}:${i + q.length}`)) return { start: i, end: i + q.length };
    at = i + 1;
  }
  // The quote's characters that count, searched for among the essay's: a plain search over the
  // essay folded alike, mapped back to the essay's offsets. Linear (the regular expression of the
  // quote's words joined by `\s*` it replaces was not, on long quotes).
  const needle = foldForSearch(q).text;
  if (needle.length < 2) return null;
  const f = hay.folded();
  for (let at = 0; ; ) {
    const i = f.text.indexOf(needle, at);
    if (i < 0) return null;
    const { start, end } = spanOf(f, i, needle.length);
    if (!used.has(`${start}:${end}`)) return { start, end };
    at = i + 1;
  }
}

/** An essay to search in, folded (foldForSearch) when a search first needs it, once. */
export interface Haystack {
  readonly text: string;
  folded(): Folded;
}

export function haystack(text: string): Haystack {
  let f: Folded | undefined;
  return { text, folded: () => (f ??= foldForSearch(text)) };
}

/** Annotations made for another version of a text, placed in this one by their quotes (each span once); those not found are dropped. */
export function relocateAnnotations(text: string, annotations: Annotation[]): Annotation[] {
  const used = new Set<string>();
  const out: Annotation[] = [];
  const hay = haystack(text); // folded once, if a quote needs it, for all of them
  for (const a of annotations) {
    const at = locateQuote(hay, a.quote, used);
    if (!at) continue;
    used.add(`${at.start}:${at.end}`);
    out.push({ ...a, start: at.start, end: at.end, quote: text.slice(at.start, at.end) });
  }
  return out;
}

/** A text folded for search, and where each of its characters came from in the text: [starts[i], ends[i]). */
interface Folded {
  text: string;
  starts: Int32Array;
  ends: Int32Array;
}

/** The text's span of `length` folded characters from folded offset `i`. */
function spanOf(f: Folded, i: number, length: number): { start: number; end: number } {
  return { start: f.starts[i], end: f.ends[i + length - 1] };
}

const COMBINING_MARK = /^\p{M}$/u;

/**
 * The text as a search compares it, and as the prompt carries it (normalizeText): without its
 * whitespace and invisible characters (isInvisible), each character with the combining marks after
 * it in NFC (a compatibility ideograph such as U+F9D1, or a tone mark typed apart, is what the
 * prompt's sentence holds: unfolded, such a sentence was not found); each folded character mapped
 * to the span of the text it came from. Linear.
 */
function foldForSearch(text: string): Folded {
  const kept: string[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    const width = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
    if (isWhitespace(c) || isInvisible(c)) {
      i += width;
      continue;
    }
    // The character and the combining marks after it (any that follow are at U+0300 or above), the
    // invisible characters among them left out (normalizeText drops them before its NFC), at most
    // MAX_MARKS_IN_A_ROW marks (as the prompt keeps: NFC's reordering of a run of marks is
    // quadratic in its length; those past it are folded one by one, unnormalized).
    let j = i + width; // past the last character taken into the cluster
    let cluster = text.slice(i, j);
    for (let k = j, marks = 0; k < text.length && text.charCodeAt(k) >= 0x300 && marks < MAX_MARKS_IN_A_ROW; ) {
      const mark = text.codePointAt(k)!;
      const w = mark > 0xffff ? 2 : 1;
      if (isInvisible(mark)) {
        k += w; // looked past; taken (as nothing) only if a mark follows
        continue;
      }
      if (!COMBINING_MARK.test(String.fromCodePoint(mark))) break;
      cluster += text.slice(k, k + w);
      marks++;
      k += w;
      j = k;
    }
    const folded = c < 0x300 && cluster.length === 1 ? cluster : cluster.normalize('NFC');
    for (let k = 0; k < folded.length; k++) {
      kept.push(folded[k]);
      starts.push(i);
      ends.push(j);
    }
    i = j;
  }
  return { text: kept.join(''), starts: Int32Array.from(starts), ends: Int32Array.from(ends) };
}

/**
 * Where an answer's pointer into the essay stands: `s`, a sentence number of the prompt (placed by
 * SentencesInEssay; two remarks may point at one sentence), narrowed to `words` when it gives words
 * found in that sentence; or a copied `quote` (an answer in the quoting layout, or one with no
 * usable number). Words not in their sentence are looked for in the whole essay (a miscounted
 * sentence), else the pointer is invented: null, as for a quote the essay does not contain.
 */
export function locatePointer(essay: SentencesInEssay, p: Record<string, unknown> | undefined, used: Set<string>, maxQuote: number): { start: number; end: number } | null {
  const s = typeof p?.s === 'string' && /^\d+$/.test(p.s) ? Number(p.s) : p?.s;
  const numbered = typeof s === 'number' && Number.isInteger(s) && s >= 1 && s <= essay.count;
  if (!numbered) return locateQuote(essay.hay, str(p?.quote, maxQuote), used);
  const at = essay.at(s as number);
  const words = str(p?.words, maxQuote);
  if (!words) return at;
  if (at) {
    const span = essay.hay.text.slice(at.start, at.end);
    const one = words.length === 1 ? span.indexOf(words) : -1;
    const inner = words.length === 1 ? (one >= 0 ? { start: at.start + one, end: at.start + one + 1 } : null) : locateWithin(essay.hay, at, words);
    if (inner) return inner;
  }
  return locateQuote(essay.hay, words, used);
}

/**
 * locateQuote's first match within one span of the essay (a sentence), searched in the essay's own
 * fold (folded once an answer): folding the sentence anew for each remark cost a remark's search
 * the sentence's length again (150 remarks on a 20,000-character sentence: 2.8 s of the event loop).
 */
function locateWithin(hay: Haystack, at: { start: number; end: number }, quote: string): { start: number; end: number } | null {
  const q = quote.trim();
  if (q.length < 2) return null;
  const exact = hay.text.slice(at.start, at.end).indexOf(q);
  if (exact >= 0) return { start: at.start + exact, end: at.start + exact + q.length };
  const needle = foldForSearch(q).text;
  if (needle.length < 2) return null;
  const f = hay.folded();
  const from = firstAtOrAfter(f.starts, at.start);
  const i = f.text.slice(from, firstAtOrAfter(f.starts, at.end)).indexOf(needle);
  return i < 0 ? null : spanOf(f, from + i, needle.length);
}

/** The first index whose value is at least `value`, in an ascending array (binary search). */
function firstAtOrAfter(values: Int32Array, value: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Unbounded searches for a sentence not found where the one before it ended, per answer (see SentencesInEssay). */
const FAR_SEARCHES = 8;
/** How far past the sentence before it a sentence is looked for, in characters that count, beyond its own length. */
const NEAR_SLACK = 64;
/** How much further, at most, after sentences not found (see SentencesInEssay). */
const MAX_GAP = 4_096;

/**
 * The prompt's numbered sentences placed in the essay as stored, in order: each is looked for after
 * the one before it (a sentence that also occurs inside an earlier one, a "加油！" after
 * 他喊：“加油！”, is found where it stands, not in that one), ignoring whitespace and invisible
 * characters, in NFC (foldForSearch: the prompt numbers the essay as normalizeText leaves it). Where one is not found near
 * the end of the one before (a head-and-tail cut in between, a look-alike normalizeText changed), it
 * is looked for in the rest of the essay, at most FAR_SEARCHES times an answer, so that an essay
 * written to defeat the search costs linear time; not found, it is null (its remarks are dropped,
 * or placed by their words). Placed once an answer, when a remark first points at a sentence.
 */
export class SentencesInEssay {
  readonly hay: Haystack;
  private spans?: Array<{ start: number; end: number } | null>;

  constructor(
    essay: string,
    private readonly sentences: readonly string[],
  ) {
    this.hay = haystack(essay);
  }

  get count(): number {
    return this.sentences.length;
  }

  /** The s-th sentence (from 1), or null when the essay does not hold it. */
  at(s: number): { start: number; end: number } | null {
    this.spans ??= this.place();
    return this.spans[s - 1] ?? null;
  }

  private place(): Array<{ start: number; end: number } | null> {
    const f = this.hay.folded();
    const out: Array<{ start: number; end: number } | null> = [];
    let cursor = 0;
    let far = FAR_SEARCHES;
    // What the sentences not found since the last one found span, at most MAX_GAP: the next one is
    // looked for that much further (so a run of them does not spend the far searches).
    let gap = 0;
    for (const sentence of this.sentences) {
      const needle = foldForSearch(sentence).text;
      let i = needle ? f.text.slice(cursor, cursor + gap + needle.length + NEAR_SLACK).indexOf(needle) : -1;
      if (i >= 0) i += cursor;
      else if (needle && far > 0) {
        far--;
        i = f.text.indexOf(needle, cursor);
      }
      if (i < 0) {
        out.push(null);
        gap = Math.min(MAX_GAP, gap + needle.length + NEAR_SLACK);
        continue;
      }
      out.push(spanOf(f, i, needle.length));
      cursor = i + needle.length;
      gap = 0;
    }
    return out;
  }
}

/**
 * Checks a model's grade against the schema and the rubric before anything is stored: every
 * dimension once, with a reason, a score within its range and on its step (never clamped). The
 * total is computed here. Annotations point at sentences of the prompt by number (`sentences`,
 * see src/grading/sentences.ts) or quote the essay; they keep only passages found in the essay,
 * with offsets taken from the text itself; invented ones are dropped.
 */
export function validateGrade(content: string, rubric: Rubric, essay: string, variant: Variant, sentences: readonly string[] = []): Validation<ValidatedGrade> {
  const raw = extractJson(content) as Record<string, unknown> | undefined;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, problem: 'the answer is not a JSON object' };
  if (!Array.isArray(raw.dimensions)) return { ok: false, problem: '"dimensions" must be a list' };

  const byKey = new Map<string, { score: unknown; reason: unknown }>();
  for (const d of raw.dimensions as Array<Record<string, unknown>>) {
    const key = typeof d?.key === 'string' ? d.key : '';
    if (!rubric.dimensions.some((r) => r.key === key)) return { ok: false, problem: `unknown dimension "${key}"` };
    if (byKey.has(key)) return { ok: false, problem: `dimension "${key}" appears twice` };
    byKey.set(key, { score: d.score, reason: d.reason ?? d.comment });
  }
  const scores: Record<string, number> = {};
  const dimensions: DimensionScore[] = [];
  for (const d of rubric.dimensions) {
    const got = byKey.get(d.key);
    if (!got) return { ok: false, problem: `dimension "${d.key}" is missing` };
    const score = typeof got.score === 'string' && /^\d+(\.\d+)?$/.test(got.score) ? Number(got.score) : got.score;
    if (typeof score !== 'number' || !Number.isFinite(score)) return { ok: false, problem: `dimension "${d.key}" has no numeric score` };
    if (score < 0 || score > d.max) return { ok: false, problem: `dimension "${d.key}" score ${score} is outside 0–${d.max}` };
    if (!isOnStep(score, d.step)) return { ok: false, problem: `dimension "${d.key}" score ${score} is not a multiple of ${d.step}` };
    const reason = str(got.reason);
    if (!reason) return { ok: false, problem: `dimension "${d.key}" has no reason` };
    scores[d.key] = score;
    dimensions.push({ key: d.key, name: d.name, score, max: d.max, comment: reason });
  }
  const summary = str(raw.summary);
  if (!summary) return { ok: false, problem: '"summary" is missing' };

  const placed = new SentencesInEssay(essay, sentences);
  const used = new Set<string>();
  let dropped = 0;
  const annotations: Annotation[] = [];
  for (const a of Array.isArray(raw.annotations) ? (raw.annotations as Array<Record<string, unknown>>).slice(0, MAX_REMARKS_READ) : []) {
    const at = locatePointer(placed, a, used, 500);
    if (!at) {
      dropped++;
      continue;
    }
    used.add(`${at.start}:${at.end}`);
    const category = (ANNOTATION_CATEGORIES as readonly string[]).includes(String(a.category)) ? (a.category as AnnotationCategory) : 'style';
    annotations.push({ ...at, quote: essay.slice(at.start, at.end), category, suggestion: str(a.suggestion, 1000), explanation: str(a.explanation, 1000) });
    if (annotations.length >= MAX_ANNOTATIONS) break;
  }
  annotations.sort((x, y) => x.start - y.start);

  const grade: GradeBody = {
    score: totalScore(rubric, scores),
    maxScore: maxScore(rubric),
    dimensions,
    summary,
    strengths: strings(raw.strengths),
    improvements: strings(raw.improvements),
    annotations,
  };
  if (variant === 'deep') {
    const deep = validateDeep(raw, placed);
    if (!deep.ok) return deep;
    grade.deep = deep.value;
  }
  return { ok: true, value: { grade, droppedQuotes: dropped } };
}

function validateDeep(raw: Record<string, unknown>, placed: SentencesInEssay): Validation<DeepAnalysis> {
  // Inkstone's prompts ask for one string a paragraph, in order (the place is the number); an answer
  // in the indexed form ({"index","analysis"}) is read as well. A paragraph analysed twice keeps
  // its first analysis; at most MAX_PARAGRAPHS are read.
  const byIndex = new Map<number, string>();
  (Array.isArray(raw.paragraphs) ? (raw.paragraphs as unknown[]) : []).slice(0, MAX_PARAGRAPHS).forEach((p, i) => {
    const entry = typeof p === 'string' ? { index: i + 1, analysis: str(p) } : { index: Number((p as Record<string, unknown>)?.index), analysis: str((p as Record<string, unknown>)?.analysis) };
    const usable = Number.isInteger(entry.index) && entry.index >= 1 && entry.index <= MAX_PARAGRAPHS && entry.analysis;
    if (usable && !byIndex.has(entry.index)) byIndex.set(entry.index, entry.analysis);
  });
  const paragraphs = [...byIndex].map(([index, analysis]) => ({ index, analysis }));
  if (paragraphs.length === 0) return { ok: false, problem: '"paragraphs" needs an analysis of each paragraph' };
  const used = new Set<string>();
  const rewrites: DeepAnalysis['rewrites'] = [];
  for (const r of Array.isArray(raw.rewrites) ? (raw.rewrites as Array<Record<string, unknown>>).slice(0, MAX_REMARKS_READ) : []) {
    const at = locatePointer(placed, r, used, 1000);
    const rewrite = str(r?.rewrite, 2000);
    if (!at || !rewrite) continue;
    used.add(`${at.start}:${at.end}`);
    rewrites.push({ ...at, quote: placed.hay.text.slice(at.start, at.end), rewrite, reason: str(r?.reason, 1000) });
  }
  if (rewrites.length === 0) return { ok: false, problem: '"rewrites" needs at least one passage of the essay, by its sentence number' };
  const revisionPlan = strings(raw.revisionPlan, 12);
  if (revisionPlan.length === 0) return { ok: false, problem: '"revisionPlan" is missing' };
  return { ok: true, value: { paragraphs, rewrites, revisionPlan } };
}

/** A deep review written on top of a standard grade: the summary and the deep parts only. */
export function validateDeepReview(content: string, essay: string, sentences: readonly string[] = []): Validation<{ summary: string; deep: DeepAnalysis }> {
  const raw = extractJson(content) as Record<string, unknown> | undefined;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, problem: 'the answer is not a JSON object' };
  const summary = str(raw.summary);
  if (!summary) return { ok: false, problem: '"summary" is missing' };
  const deep = validateDeep(raw, new SentencesInEssay(essay, sentences));
  return deep.ok ? { ok: true, value: { summary, deep: deep.value } } : deep;
}

/** The grade body of a stored grade (what a deep review keeps from the standard grade). */
export function gradeBodyOf(g: GradeBody): GradeBody {
  return {
    score: g.score,
    maxScore: g.maxScore,
    dimensions: g.dimensions,
    summary: g.summary,
    strengths: g.strengths,
    improvements: g.improvements,
    annotations: g.annotations,
  };
}
