import { Jieba } from '@node-rs/jieba';
import { dict } from '@node-rs/jieba/dict';
import { essayLength } from './essay-text';
import { isSpelledRight, isUncommonWord } from './english-lexicon';
import type { Language, Rubric } from './rubric';

/**
 * What the offline grader measures in an essay, each feature something a teacher can be shown:
 * length against the task, paragraphs, sentences, vocabulary diversity and sophistication (word
 * frequency from jieba's dictionary for Chinese and SUBTLEX-US for English), spelling (Hunspell's
 * en_US dictionary), idioms (成语, as jieba's dictionary tags them),
 * quotations, connectives, figures of speech, punctuation and repetition. Every pattern here runs
 * in linear time on any input (test/hostile-input.spec.ts feeds them hostile text).
 */

let jieba: Jieba | undefined;
function segmenter(): Jieba {
  jieba ??= Jieba.withDict(dict);
  return jieba;
}

interface DictEntry {
  freq: number;
  tag: string;
}
let lexicon: Map<string, DictEntry> | undefined;
/** jieba's dictionary (word, frequency, part of speech): its frequencies rank words from common to rare. */
function words(): Map<string, DictEntry> {
  if (lexicon) return lexicon;
  lexicon = new Map();
  for (const line of new TextDecoder('utf-8').decode(dict).split('\n')) {
    const [w, f, tag] = line.split(' ');
    if (w && f) lexicon.set(w, { freq: Number(f), tag: tag ?? '' });
  }
  return lexicon;
}

/** Below this count in jieba's dictionary a word is uncommon (about the rarest 85% of entries, yet words a student can know). */
const RARE_BELOW = 300;

export interface Span {
  start: number;
  end: number;
}

export interface EssayFeatures {
  length: number;
  paragraphs: number;
  sentences: number;
  /** mean sentence length (characters for Chinese, words for English) */
  sentenceMean: number;
  /** coefficient of variation of sentence lengths */
  sentenceVariety: number;
  /** moving-average type-token ratio over windows of 50 words */
  diversity: number;
  /** share of words that are uncommon (Chinese, of two or more characters: jieba's frequency; English, of three or more letters: SUBTLEX-US) */
  sophistication: number;
  /** English: words the dictionary does not know (a capitalized word inside a sentence is taken for a name) */
  misspellings: Array<Span & { text: string }>;
  /** misspelled words as a share of the words checked */
  misspelledShare: number;
  /** English: slips a rule can name for sure (`would of`, `they says`, `more better`), with the fix; not a feature the score uses */
  grammarSlips: Array<Span & { text: string; suggestion: string }>;
  /** idioms (成语) used, with where */
  idioms: Array<Span & { text: string }>;
  /** quotations in quotation marks (“…” of 4 or more characters) */
  quotations: Span[];
  /** connectives and discourse markers (因此, 然而, however…) */
  connectives: number;
  /** figures of speech: similes (像, 仿佛…) and parallel clauses (排比: three clauses opening alike) */
  figures: number;
  parallels: Span[];
  punctuationIssues: Array<Span & { note: string }>;
  /** share of sentences that repeat an earlier one, plus repeated phrases */
  repetition: number;
  repeatedSentences: Span[];
}

// A sentence ends at its terminal mark and takes the closing quotes and brackets after it
// (他说：“快走吧。”), which would otherwise open the next sentence.
const ZH_SENTENCE = /[^。！？!?；;\n]+[。！？!?；;]*[”’」』）)"']*/g;
const EN_SENTENCE = /[^.!?\n]+[.!?]*["'”’)\]]*/g;
const ZH_CONNECTIVES = [
  '因为', '所以', '因此', '然而', '但是', '可是', '不过', '虽然', '尽管', '即使', '如果', '假如', '只要', '只有', '无论', '不仅', '而且', '并且',
  '首先', '其次', '再次', '最后', '总之', '综上所述', '总而言之', '例如', '比如', '譬如', '换言之', '也就是说', '由此可见', '可见', '于是', '从而',
  '甚至', '何况', '况且', '反之', '同时', '此外', '另外', '正如', '诚然',
];
const EN_CONNECTIVES = /\b(however|therefore|moreover|furthermore|in addition|for example|for instance|consequently|nevertheless|although|whereas|firstly|secondly|finally|in conclusion|on the other hand|as a result|thus|hence|meanwhile|in contrast|similarly|overall)\b/g;
const ZH_SIMILE = /像|好像|仿佛|宛如|犹如|如同|好似/g;
const EN_SIMILE = /\b(like a|as if|as though|as \w+ as)\b/g;

function tokens(text: string, language: Language): string[] {
  if (language === 'zh') return segmenter().cut(text, false).filter((w) => /[\p{L}\p{N}]/u.test(w));
  return (text.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? []).filter(Boolean);
}

function mattr(list: string[], window = 50): number {
  if (list.length === 0) return 0;
  if (list.length <= window) return new Set(list).size / list.length;
  let sum = 0;
  let n = 0;
  const counts = new Map<string, number>();
  for (let i = 0; i < list.length; i++) {
    counts.set(list[i], (counts.get(list[i]) ?? 0) + 1);
    if (i >= window) {
      const out = list[i - window];
      const c = counts.get(out)! - 1;
      if (c === 0) counts.delete(out);
      else counts.set(out, c);
    }
    if (i >= window - 1) {
      sum += counts.size / window;
      n++;
    }
  }
  return sum / n;
}

function punctuationIssues(text: string, language: Language): EssayFeatures['punctuationIssues'] {
  const out: EssayFeatures['punctuationIssues'] = [];
  const add = (re: RegExp, note: string) => {
    for (let m = re.exec(text); m && out.length < 50; m = re.exec(text)) out.push({ start: m.index, end: m.index + m[0].length, note });
  };
  if (language === 'zh') {
    add(/[\u4e00-\u9fff][,.;:?!][\u4e00-\u9fff]?/g, '中文句子里用了英文标点');
    add(/([，。！？、；])\1+/g, '标点重复');
    add(/[，、][。！？]|[。！？][，、]/g, '标点连用');
  } else {
    add(/[,;:][A-Za-z]/g, 'missing space after punctuation');
    add(/ [,.;:!?]/g, 'space before punctuation');
    add(/[.!?] +[a-z]/g, 'sentence starts with a lower-case letter');
    add(/\bi\b/g, '"I" should be capitalized');
    add(/([!?.,])\1{2,}/g, 'repeated punctuation');
  }
  return out.sort((a, b) => a.start - b.start);
}

/**
 * Idioms: the words jieba's dictionary tags `i` (成语), and its four-character `l` (习用语, where it
 * files many 成语 such as 自强不息), located in the text in order.
 */
function idioms(text: string, list: string[]): EssayFeatures['idioms'] {
  const lex = words();
  const out: EssayFeatures['idioms'] = [];
  let from = 0;
  for (const w of list) {
    const at = text.indexOf(w, from);
    if (at < 0) continue;
    from = at + w.length;
    const tag = lex.get(w)?.tag;
    if ((tag === 'i' && w.length >= 4) || (tag === 'l' && w.length === 4)) out.push({ start: at, end: at + w.length, text: w });
  }
  return out;
}

/** 排比: three or more clauses in a row that open with the same two characters. */
function parallels(text: string): Span[] {
  const out: Span[] = [];
  const clause = /[^，。！？；、,!?;\n]+/g;
  let run: Array<Span & { head: string }> = [];
  const flush = () => {
    if (run.length >= 3) out.push({ start: run[0].start, end: run[run.length - 1].end });
    run = [];
  };
  for (let m = clause.exec(text); m; m = clause.exec(text)) {
    const s = m[0].trim();
    if (s.length < 4) {
      flush();
      continue;
    }
    const start = m.index + m[0].indexOf(s);
    const head = s.slice(0, 2);
    if (run.length && run[run.length - 1].head !== head) flush();
    run.push({ start, end: start + s.length, head });
  }
  flush();
  return out;
}

/** English words the dictionary does not know; a capitalized word not opening a sentence is a name, not checked. */
function misspelled(text: string): { spans: Array<Span & { text: string }>; checked: number } {
  const spans: Array<Span & { text: string }> = [];
  let checked = 0;
  for (const m of text.matchAll(/[A-Za-z]+(?:'[A-Za-z]+)?/g)) {
    const w = m[0];
    if (w.length < 2) continue;
    const before = text.slice(Math.max(0, m.index! - 3), m.index!);
    const opensSentence = m.index === 0 || /[.!?\n]\s*$/.test(before);
    if (/^[A-Z]/.test(w) && !opensSentence) continue;
    checked++;
    if (!isSpelledRight(w)) spans.push({ start: m.index!, end: m.index! + w.length, text: w });
  }
  return { spans, checked };
}

/** Verbs of the third person singular after I/you/we/they, and their plain form. */
const PLAIN: Record<string, string> = { says: 'say', goes: 'go', does: 'do', has: 'have', wants: 'want', likes: 'like', thinks: 'think', needs: 'need', makes: 'make', gets: 'get' };

/**
 * Grammar slips that a rule can name with no doubt about the sentence around them: a modal before
 * `of` (would of → would have), a verb of the third person after I/you/we/they (they says), `is`/`was`
 * after you/we/they, `don't`/`are` after he/she/it, and a doubled comparative (more better).
 */
function grammarSlips(text: string): Array<Span & { text: string; suggestion: string }> {
  const out: Array<Span & { text: string; suggestion: string }> = [];
  const keep = (m: RegExpMatchArray, suggestion: string) => out.push({ start: m.index!, end: m.index! + m[0].length, text: m[0], suggestion });
  const cased = (from: string, to: string) => (/^[A-Z]/.test(from) ? to[0].toUpperCase() + to.slice(1) : to);
  for (const m of text.matchAll(/\b(would|could|should|must|might)\s+of\b/gi)) keep(m, `${m[1]} have`);
  for (const m of text.matchAll(/\b(I|you|we|they)\s+(says|goes|does|has|wants|likes|thinks|needs|makes|gets)\b/gi)) keep(m, `${m[1]} ${PLAIN[m[2].toLowerCase()]}`);
  for (const m of text.matchAll(/\b(you|we|they)\s+(is|was)\b/gi)) keep(m, `${m[1]} ${m[2].toLowerCase() === 'is' ? 'are' : 'were'}`);
  for (const m of text.matchAll(/\b(he|she|it)\s+(don't|are)\b/gi)) keep(m, `${m[1]} ${m[2].toLowerCase() === 'are' ? 'is' : "doesn't"}`);
  for (const m of text.matchAll(/\bmore\s+(better|worse|easier|harder|bigger|smaller|faster|happier)\b/gi)) keep(m, cased(m[0], m[1].toLowerCase()));
  return out.sort((a, b) => a.start - b.start).slice(0, 20);
}

export function essayFeatures(text: string, language: Language): EssayFeatures {
  const paragraphs = text.split(/\n+/).filter((p) => p.trim().length > 0).length;
  const sentenceRe = language === 'zh' ? ZH_SENTENCE : EN_SENTENCE;
  const sentences: Array<{ text: string; start: number }> = [];
  for (let m = sentenceRe.exec(text); m; m = sentenceRe.exec(text)) {
    const s = m[0].trim();
    if (s.length >= 2) sentences.push({ text: s, start: m.index + m[0].indexOf(s) });
  }
  const lengths = sentences.map((s) => (language === 'zh' ? s.text.length : s.text.split(/\s+/).length));
  const mean = lengths.reduce((a, b) => a + b, 0) / Math.max(1, lengths.length);
  const sd = Math.sqrt(lengths.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, lengths.length));
  const seen = new Set<string>();
  const repeatedSentences: Span[] = [];
  for (const s of sentences) {
    const key = s.text.replace(/\s+/g, '').toLowerCase();
    if (key.length >= 6 && seen.has(key)) repeatedSentences.push({ start: s.start, end: s.start + s.text.length });
    seen.add(key);
  }
  const list = tokens(text, language);
  const grams = new Map<string, number>();
  for (let i = 0; i + 4 <= list.length; i++) {
    const g = list.slice(i, i + 4).join(' ');
    grams.set(g, (grams.get(g) ?? 0) + 1);
  }
  const repeatedGrams = [...grams.values()].filter((c) => c > 1).reduce((a, c) => a + c - 1, 0);
  const gramShare = grams.size ? repeatedGrams / Math.max(1, list.length - 3) : 0;

  const long = list.filter((w) => (language === 'zh' ? w.length >= 2 : w.length >= 3));
  let rare = 0;
  if (language === 'zh') {
    const lex = words();
    for (const w of long) if ((lex.get(w)?.freq ?? 0) < RARE_BELOW) rare++;
  } else {
    for (const w of long) if (isUncommonWord(w)) rare++;
  }
  const misspellings = language === 'en' ? misspelled(text) : { spans: [], checked: 0 };
  const quotations: Span[] = [];
  for (const m of text.matchAll(/“([^“”\n]{4,300})”|"([^"\n]{4,300})"/g)) quotations.push({ start: m.index!, end: m.index! + m[0].length });
  let connectives = 0;
  if (language === 'zh') {
    for (const w of list) if (ZH_CONNECTIVES.includes(w)) connectives++;
  } else {
    connectives = (text.toLowerCase().match(EN_CONNECTIVES) ?? []).length;
  }
  const par = language === 'zh' ? parallels(text) : [];
  const similes = (language === 'zh' ? text.match(ZH_SIMILE) : text.toLowerCase().match(EN_SIMILE))?.length ?? 0;
  return {
    length: essayLength(text, language),
    paragraphs,
    sentences: sentences.length,
    sentenceMean: mean,
    sentenceVariety: mean > 0 ? sd / mean : 0,
    diversity: mattr(list),
    sophistication: long.length ? rare / long.length : 0,
    idioms: language === 'zh' ? idioms(text, list) : [],
    misspellings: misspellings.spans.slice(0, 50),
    misspelledShare: misspellings.checked ? misspellings.spans.length / misspellings.checked : 0,
    grammarSlips: language === 'en' ? grammarSlips(text) : [],
    quotations,
    connectives,
    figures: similes + par.length,
    parallels: par,
    punctuationIssues: punctuationIssues(text, language),
    repetition: Math.min(1, repeatedSentences.length / Math.max(1, sentences.length) + gramShare),
    repeatedSentences,
  };
}

/** The names of the numeric features a calibration regresses on, in order. */
export const FEATURE_NAMES = [
  'lengthRatio',
  'logLength',
  'paragraphs',
  'sentenceMean',
  'sentenceVariety',
  'diversity',
  'sophistication',
  'idiomsPer1000',
  'quotationsPer1000',
  'connectivesPer100',
  'figuresPer1000',
  'punctuationPerSentence',
  'repetition',
  'misspelledShare',
] as const;

/** The features as numbers, lengths taken against the rubric's expectation. */
export function featureVector(f: EssayFeatures, rubric: Rubric): number[] {
  const per = (n: number, unit: number) => (n * unit) / Math.max(1, f.length);
  return [
    Math.min(3, f.length / Math.max(1, rubric.expectedLength.min)),
    Math.log1p(f.length),
    Math.min(20, f.paragraphs),
    Math.min(200, f.sentenceMean),
    f.sentenceVariety,
    f.diversity,
    f.sophistication,
    per(f.idioms.length, 1000),
    per(f.quotations.length, 1000),
    per(f.connectives, 100),
    per(f.figures, 1000),
    f.punctuationIssues.length / Math.max(1, f.sentences),
    f.repetition,
    f.misspelledShare,
  ];
}
