import { Jieba } from '@node-rs/jieba';
import { dict } from '@node-rs/jieba/dict';
import { essayLength } from './essay-text';
import type { Annotation, GradeBody } from './grade-validation';
import { DimensionKind, Language, maxScore, Rubric, totalScore } from './rubric';

/**
 * The offline grader: deterministic and feature-based, no model. It measures length against the
 * rubric's expectation, paragraphs, sentence-length variety, vocabulary diversity (jieba word
 * segmentation for Chinese), punctuation misuse and repetition, and turns them into a score for
 * every dimension of any rubric by the dimension's kind. Its grades say they are estimates.
 */
let jieba: Jieba | undefined;
function segmenter(): Jieba {
  jieba ??= Jieba.withDict(dict);
  return jieba;
}

export interface EssayFeatures {
  length: number;
  paragraphs: number;
  sentences: number;
  /** coefficient of variation of sentence lengths */
  sentenceVariety: number;
  /** moving-average type-token ratio over windows of 50 words */
  diversity: number;
  punctuationIssues: Array<{ start: number; end: number; note: string }>;
  /** share of sentences that repeat an earlier one, plus repeated phrases */
  repetition: number;
  repeatedSentences: Array<{ start: number; end: number }>;
}

const ZH_SENTENCE = /[^。！？!?；;\n]+[。！？!?；;]*/g;
const EN_SENTENCE = /[^.!?\n]+[.!?]*/g;

function words(text: string, language: Language): string[] {
  if (language === 'zh') {
    return segmenter()
      .cut(text, false)
      .filter((w) => /[\p{L}\p{N}]/u.test(w));
  }
  return (text.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? []).filter(Boolean);
}

function mattr(tokens: string[], window = 50): number {
  if (tokens.length === 0) return 0;
  if (tokens.length <= window) return new Set(tokens).size / tokens.length;
  let sum = 0;
  let n = 0;
  const counts = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + 1);
    if (i >= window) {
      const out = tokens[i - window];
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
  const repeatedSentences: EssayFeatures['repeatedSentences'] = [];
  for (const s of sentences) {
    const key = s.text.replace(/\s+/g, '').toLowerCase();
    if (key.length >= 6 && seen.has(key)) repeatedSentences.push({ start: s.start, end: s.start + s.text.length });
    seen.add(key);
  }
  const tokens = words(text, language);
  // Repeated phrases: word 4-grams that occur more than once, as a share of all 4-grams.
  const grams = new Map<string, number>();
  for (let i = 0; i + 4 <= tokens.length; i++) {
    const g = tokens.slice(i, i + 4).join(' ');
    grams.set(g, (grams.get(g) ?? 0) + 1);
  }
  const repeatedGrams = [...grams.values()].filter((c) => c > 1).reduce((a, c) => a + c - 1, 0);
  const gramShare = grams.size ? repeatedGrams / Math.max(1, tokens.length - 3) : 0;
  return {
    length: essayLength(text, language),
    paragraphs,
    sentences: sentences.length,
    sentenceVariety: mean > 0 ? sd / mean : 0,
    diversity: mattr(tokens),
    punctuationIssues: punctuationIssues(text, language),
    repetition: Math.min(1, repeatedSentences.length / Math.max(1, sentences.length) + gramShare),
    repeatedSentences,
  };
}

/** Each feature as a quality in [0, 1]. */
function qualities(f: EssayFeatures, rubric: Rubric, language: Language): Record<string, number> {
  const { min, max } = rubric.expectedLength;
  const length = f.length < min ? (f.length / min) ** 1.5 : f.length > max * 1.5 ? Math.max(0.4, (max * 1.5) / f.length) : 1;
  const idealParagraphs = language === 'zh' ? [4, 8] : [4, 6];
  const paragraphs =
    f.paragraphs < idealParagraphs[0] ? f.paragraphs / idealParagraphs[0] : f.paragraphs > idealParagraphs[1] * 2 ? 0.6 : 1;
  const variety = f.sentences < 3 ? 0.3 : Math.min(1, 0.4 + f.sentenceVariety * 1.2);
  const diversity = Math.max(0, Math.min(1, (f.diversity - 0.45) / 0.35));
  const punctuation = Math.max(0, 1 - (f.punctuationIssues.length / Math.max(1, f.sentences)) * 2);
  const repetition = Math.max(0, 1 - f.repetition * 2.5);
  return { length, paragraphs, variety, diversity, punctuation, repetition };
}

const WEIGHTS: Record<DimensionKind, Record<string, number>> = {
  content: { length: 0.45, diversity: 0.2, paragraphs: 0.15, repetition: 0.2 },
  organization: { paragraphs: 0.45, variety: 0.25, length: 0.15, repetition: 0.15 },
  language: { diversity: 0.45, variety: 0.3, punctuation: 0.1, repetition: 0.15 },
  mechanics: { punctuation: 0.6, variety: 0.15, repetition: 0.25 },
  development: { diversity: 0.35, length: 0.25, variety: 0.2, paragraphs: 0.2 },
};

function roundToStep(value: number, step: number, max: number): number {
  return Math.min(max, Math.max(0, Math.round(value / step) * step));
}

const TEXT = {
  zh: {
    estimate: '离线估算（未调用模型）：',
    length: (n: number, r: Rubric) => `全文约 ${n} 字（建议 ${r.expectedLength.min}–${r.expectedLength.max} 字）`,
    paragraphs: (n: number) => `${n} 段`,
    diversity: (d: number) => `词汇丰富度 ${(d * 100).toFixed(0)}%`,
    issues: (n: number) => `标点问题 ${n} 处`,
    tooShort: '篇幅不足，内容需要充实。',
    fewParagraphs: '分段较少，层次可以更清楚。',
    varied: '句式长短有变化。',
    rich: '用词较丰富。',
    punct: '注意中文标点的规范使用。',
    repeat: '有重复的句子或词组，注意避免。',
    comment: (kind: DimensionKind) =>
      ({ content: '依据篇幅、词汇与重复情况估算', organization: '依据分段与句式估算', language: '依据用词丰富度与句式变化估算', mechanics: '依据标点与重复情况估算', development: '依据用词、篇幅与结构估算' })[kind],
    repeated: '这句话与前文重复',
  },
  en: {
    estimate: 'Offline estimate (no model was used): ',
    length: (n: number, r: Rubric) => `about ${n} words (expected ${r.expectedLength.min}–${r.expectedLength.max})`,
    paragraphs: (n: number) => `${n} paragraphs`,
    diversity: (d: number) => `vocabulary diversity ${(d * 100).toFixed(0)}%`,
    issues: (n: number) => `${n} punctuation issues`,
    tooShort: 'The essay is too short; develop the ideas further.',
    fewParagraphs: 'Use more paragraphs to organize the argument.',
    varied: 'Sentence lengths are varied.',
    rich: 'The vocabulary is varied.',
    punct: 'Check punctuation and capitalization.',
    repeat: 'Some sentences or phrases are repeated.',
    comment: (kind: DimensionKind) =>
      ({ content: 'estimated from length, vocabulary and repetition', organization: 'estimated from paragraphs and sentence variety', language: 'estimated from vocabulary diversity and sentence variety', mechanics: 'estimated from punctuation and repetition', development: 'estimated from vocabulary, length and structure' })[kind],
    repeated: 'This sentence repeats an earlier one',
  },
};

/** A full grade for any rubric, from features alone. Same essay, same grade. */
export function offlineGrade(text: string, rubric: Rubric, language: Language): GradeBody {
  const f = essayFeatures(text, language);
  const q = qualities(f, rubric, language);
  const t = TEXT[language];
  const scores: Record<string, number> = {};
  const dimensions = rubric.dimensions.map((d) => {
    const w = WEIGHTS[d.kind];
    const total = Object.values(w).reduce((a, b) => a + b, 0);
    const quality = Object.entries(w).reduce((a, [k, wt]) => a + q[k] * wt, 0) / total;
    // Estimates stay away from the extremes: 30% to 95% of the dimension's range.
    const score = roundToStep(d.max * (0.3 + 0.65 * quality), d.step, d.max);
    scores[d.key] = score;
    return { key: d.key, name: d.name, score, max: d.max, comment: `${t.comment(d.kind)}${language === 'zh' ? '。' : '.'}` };
  });
  const strengths: string[] = [];
  const improvements: string[] = [];
  if (q.variety >= 0.8) strengths.push(t.varied);
  if (q.diversity >= 0.7) strengths.push(t.rich);
  if (q.length < 0.8) improvements.push(t.tooShort);
  if (q.paragraphs < 0.8) improvements.push(t.fewParagraphs);
  if (f.punctuationIssues.length > 0) improvements.push(t.punct);
  if (f.repetition > 0.05) improvements.push(t.repeat);
  const annotations: Annotation[] = [
    ...f.punctuationIssues.slice(0, 8).map((p) => ({
      start: p.start,
      end: p.end,
      quote: text.slice(p.start, p.end),
      category: 'punctuation' as const,
      suggestion: '',
      explanation: p.note,
    })),
    ...f.repeatedSentences.slice(0, 3).map((r) => ({
      start: r.start,
      end: r.end,
      quote: text.slice(r.start, r.end),
      category: 'style' as const,
      suggestion: '',
      explanation: t.repeated,
    })),
  ].sort((a, b) => a.start - b.start);
  const sep = language === 'zh' ? '，' : ', ';
  return {
    score: totalScore(rubric, scores),
    maxScore: maxScore(rubric),
    dimensions,
    summary: `${t.estimate}${[t.length(f.length, rubric), t.paragraphs(f.paragraphs), t.diversity(f.diversity), t.issues(f.punctuationIssues.length)].join(sep)}${language === 'zh' ? '。' : '.'}`,
    strengths,
    improvements,
    annotations,
  };
}
