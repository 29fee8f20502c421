import type { Annotation, GradeBody } from './grade-validation';
import { EssayFeatures, essayFeatures } from './offline-features';
import { DimensionKind, Language, maxScore, Rubric, totalScore } from './rubric';

export { essayFeatures, EssayFeatures } from './offline-features';

/**
 * The offline grader: deterministic and feature-based, no model (SPEC §6). It measures the essay
 * (offline-features.ts), turns each feature into a quality in [0, 1], scores every dimension of any
 * rubric from the qualities its kind weighs, and caps content and development when the essay is
 * far shorter than the task asks. Everything it tells the teacher comes from a feature it measured,
 * with quotes located in the text. Its grades say they are estimates.
 */

const clamp01 = (x: number) => Math.max(0, Math.min(1, x));

/** Each feature as a quality in [0, 1]; ranges from what students' essays show (bench/quality.ts). */
export function qualities(f: EssayFeatures, rubric: Rubric, language: Language): Record<string, number> {
  const { min, max } = rubric.expectedLength;
  // Length rises smoothly (in log) from half the minimum to a little over the maximum, and falls back
  // gently past twice the maximum: longer is better within the task, padding is not.
  const rise = clamp01((Math.log(Math.max(1, f.length)) - Math.log(min * 0.5)) / (Math.log(max * 1.2) - Math.log(min * 0.5)));
  const length = f.length > max * 2 ? rise * Math.max(0.6, (max * 2) / f.length) : rise;
  const idealParagraphs = language === 'zh' ? [4, 10] : [4, 6];
  const paragraphs = f.paragraphs < idealParagraphs[0] ? f.paragraphs / idealParagraphs[0] : f.paragraphs > idealParagraphs[1] * 2 ? 0.6 : 1;
  const per = (n: number, unit: number) => (n * unit) / Math.max(1, f.length);
  return {
    length,
    paragraphs,
    variety: f.sentences < 3 ? 0.3 : clamp01(0.4 + f.sentenceVariety * 1.2),
    diversity: clamp01((f.diversity - 0.45) / 0.4),
    sophistication: language === 'zh' ? clamp01((f.sophistication - 0.1) / 0.3) : clamp01((f.sophistication - 0.05) / 0.2),
    idioms: language === 'zh' ? clamp01(per(f.idioms.length, 1000) / 12) : 0.5,
    quotations: clamp01(per(f.quotations.length, 1000) / 8),
    connectives: clamp01(per(f.connectives, 100) / (language === 'zh' ? 1 : 2)),
    figures: clamp01(per(f.figures, 1000) / 5),
    punctuation: clamp01(1 - (f.punctuationIssues.length / Math.max(1, f.sentences)) * 2),
    repetition: clamp01(1 - f.repetition * 2.5),
    // One word in ten misspelled is as bad as it gets; Chinese is not spell-checked (punctuation stands in).
    spelling: language === 'en' ? clamp01(1 - f.misspelledShare * 10) : clamp01(1 - (f.punctuationIssues.length / Math.max(1, f.sentences)) * 2),
  };
}

/**
 * How much each quality weighs in each kind of dimension, before any calibration. Chosen so that
 * the total ranks essays at least as well as their length alone on human-scored essays
 * (bench/quality.ts); connectives and quotations are measured and shown to the teacher but carry no
 * weight here: on those essays they go with lower scores as often as with higher (a calibration
 * learns their weight from the teacher's own scores).
 */
const WEIGHTS: Record<DimensionKind, Record<string, number>> = {
  content: { length: 0.45, sophistication: 0.35, repetition: 0.2 },
  organization: { paragraphs: 0.35, length: 0.3, variety: 0.2, repetition: 0.15 },
  language: { sophistication: 0.4, diversity: 0.15, idioms: 0.1, variety: 0.15, punctuation: 0.1, spelling: 0.1 },
  mechanics: { punctuation: 0.35, spelling: 0.35, repetition: 0.15, variety: 0.15 },
  development: { length: 0.4, sophistication: 0.35, idioms: 0.15, figures: 0.1 },
};

/**
 * The most a dimension may get, as a share of its maximum, for an essay of this length: content and
 * development are capped hard far below the expected length (a 139-character answer to an
 * 800-character task cannot be well developed), the other kinds mildly.
 */
export function lengthCap(kind: DimensionKind, length: number, rubric: Rubric): number {
  const ratio = Math.min(1, length / Math.max(1, rubric.expectedLength.min));
  if (ratio >= 0.8) return 1;
  return kind === 'content' || kind === 'development' ? 0.2 + 0.6 * ratio : 0.5 + 0.5 * ratio;
}

function roundToStep(value: number, step: number, max: number): number {
  return Math.min(max, Math.max(0, Math.floor(value / step + 1e-9) * step));
}

const TEXT = {
  zh: {
    estimate: '离线估算（未调用模型）：',
    length: (n: number, r: Rubric) => `全文约 ${n} 字（建议 ${r.expectedLength.min}–${r.expectedLength.max} 字）`,
    paragraphs: (n: number) => `${n} 段`,
    diversity: (d: number) => `词汇丰富度 ${(d * 100).toFixed(0)}%`,
    issues: (n: number) => `标点问题 ${n} 处`,
    tooShort: (n: number, r: Rubric) => `篇幅不足：约 ${n} 字，题目要求至少 ${r.expectedLength.min} 字，内容需要充实。`,
    fewParagraphs: (n: number) => `只有 ${n} 段，分段可以更清楚。`,
    varied: '句式长短有变化。',
    rich: '用词丰富，不少词语较为少见。',
    idioms: (list: string[]) => `恰当运用了成语：${list.join('、')}。`,
    quotes: (n: number) => `引用了 ${n} 处名言或语句。`,
    parallel: '运用了排比句式。',
    punct: '注意中文标点的规范使用。',
    repeat: '有重复的句子或词组，注意避免。',
    spelling: (list: string[]) => `注意拼写：${list.join('、')}。`,
    grammarSlips: (list: string[]) => `注意语法：${list.join('；')}。`,
    typo: '词典里没有这个词，请检查拼写',
    grammar: '语法：主谓一致或固定搭配有误',
    comment: (kind: DimensionKind) =>
      ({ content: '依据篇幅、用词与重复情况估算', organization: '依据分段、关联词与句式估算', language: '依据用词、成语与句式变化估算', mechanics: '依据标点与重复情况估算', development: '依据篇幅、用词、修辞与引用估算' })[kind],
    capped: '（篇幅远低于要求，此项有上限）',
    repeated: '这句话与前文重复',
    idiom: '成语运用',
    parallelNote: '排比',
  },
  en: {
    estimate: 'Offline estimate (no model was used): ',
    length: (n: number, r: Rubric) => `about ${n} words (expected ${r.expectedLength.min}–${r.expectedLength.max})`,
    paragraphs: (n: number) => `${n} paragraphs`,
    diversity: (d: number) => `vocabulary diversity ${(d * 100).toFixed(0)}%`,
    issues: (n: number) => `${n} punctuation issues`,
    tooShort: (n: number, r: Rubric) => `The essay is too short: about ${n} words where the task asks for at least ${r.expectedLength.min}; develop the ideas further.`,
    fewParagraphs: (n: number) => `Only ${n} paragraph(s): use more paragraphs to organize the argument.`,
    varied: 'Sentence lengths are varied.',
    rich: 'The vocabulary is varied, with some less common words.',
    idioms: (list: string[]) => `Idioms used: ${list.join(', ')}.`,
    quotes: (n: number) => `${n} quotation(s) used.`,
    parallel: 'Uses parallel structure.',
    punct: 'Check punctuation and capitalization.',
    repeat: 'Some sentences or phrases are repeated.',
    spelling: (list: string[]) => `Check the spelling of: ${list.join(', ')}.`,
    grammarSlips: (list: string[]) => `Check the grammar: ${list.join('; ')}.`,
    typo: 'not in the dictionary: check the spelling',
    grammar: 'grammar: the verb does not agree with its subject, or the phrase is not idiomatic',
    comment: (kind: DimensionKind) =>
      ({ content: 'estimated from length, vocabulary and repetition', organization: 'estimated from paragraphs, connectives and sentence variety', language: 'estimated from vocabulary, spelling and sentence variety', mechanics: 'estimated from spelling, punctuation and repetition', development: 'estimated from length, vocabulary, figures of speech and quotations' })[kind],
    capped: ' (capped: far shorter than the task asks)',
    repeated: 'This sentence repeats an earlier one',
    idiom: 'idiom',
    parallelNote: 'parallel structure',
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
    // Estimates stay away from the extremes: 30% to 95% of the dimension's range, then the length cap.
    const cap = lengthCap(d.kind, f.length, rubric);
    const score = roundToStep(d.max * Math.min(0.3 + 0.65 * quality, cap), d.step, d.max);
    scores[d.key] = score;
    return { key: d.key, name: d.name, score, max: d.max, comment: `${t.comment(d.kind)}${cap < 1 ? t.capped : ''}${language === 'zh' ? '。' : '.'}` };
  });
  const strengths: string[] = [];
  const improvements: string[] = [];
  if (q.variety >= 0.8) strengths.push(t.varied);
  if (q.sophistication >= 0.6 && q.diversity >= 0.6) strengths.push(t.rich);
  if (f.idioms.length > 0) strengths.push(t.idioms([...new Set(f.idioms.map((i) => i.text))].slice(0, 5)));
  if (f.quotations.length > 0) strengths.push(t.quotes(f.quotations.length));
  if (f.parallels.length > 0) strengths.push(t.parallel);
  if (f.length < rubric.expectedLength.min * 0.8) improvements.push(t.tooShort(f.length, rubric));
  if (q.paragraphs < 0.8) improvements.push(t.fewParagraphs(f.paragraphs));
  if (f.punctuationIssues.length > 0) improvements.push(t.punct);
  if (f.repetition > 0.05) improvements.push(t.repeat);
  if (f.misspellings.length > 0) improvements.push(t.spelling([...new Set(f.misspellings.map((m) => m.text))].slice(0, 8)));
  if (f.grammarSlips.length > 0) improvements.push(t.grammarSlips(f.grammarSlips.slice(0, 5).map((g) => `${g.text} → ${g.suggestion}`)));
  const at = (s: { start: number; end: number }) => ({ start: s.start, end: s.end, quote: text.slice(s.start, s.end) });
  const annotations: Annotation[] = [
    ...f.punctuationIssues.slice(0, 8).map((p) => ({ ...at(p), category: 'punctuation' as const, suggestion: '', explanation: p.note })),
    ...f.repeatedSentences.slice(0, 3).map((r) => ({ ...at(r), category: 'style' as const, suggestion: '', explanation: t.repeated })),
    ...f.idioms.slice(0, 5).map((i) => ({ ...at(i), category: 'highlight' as const, suggestion: '', explanation: t.idiom })),
    ...f.parallels.slice(0, 2).map((p) => ({ ...at(p), category: 'highlight' as const, suggestion: '', explanation: t.parallelNote })),
    ...f.misspellings.slice(0, 10).map((m) => ({ ...at(m), category: 'typo' as const, suggestion: '', explanation: t.typo })),
    ...f.grammarSlips.slice(0, 10).map((g) => ({ ...at(g), category: 'grammar' as const, suggestion: g.suggestion, explanation: t.grammar })),
  ].sort((a, b) => a.start - b.start || a.end - b.end);
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
