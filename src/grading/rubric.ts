/**
 * Rubrics: what is scored, on what scale, and how the total follows from the dimensions. The
 * server, never the model, computes the total.
 */
export type TotalRule = 'sum' | 'mean_half_band';
export type Language = 'zh' | 'en';
/** What a dimension judges; the offline grader scores each kind from different features. */
export const DIMENSION_KINDS = ['content', 'organization', 'language', 'mechanics', 'development'] as const;
export type DimensionKind = (typeof DIMENSION_KINDS)[number];

export interface RubricDimension {
  key: string;
  name: string;
  /** highest score; the lowest is 0 */
  max: number;
  /** 1 for whole points or bands, 0.5 for half points */
  step: 1 | 0.5;
  kind: DimensionKind;
  description: string;
}

export interface Rubric {
  key: string;
  version: number;
  name: string;
  language: Language | 'any';
  totalRule: TotalRule;
  dimensions: RubricDimension[];
  /** what a good essay's length is: characters for Chinese, words for English */
  expectedLength: { min: number; max: number };
  /**
   * Set on an `any` rubric created without expectedLength: each essay is measured against its own
   * language's default (600–1200 characters for Chinese, 150–600 words for English);
   * expectedLength shows the Chinese one.
   */
  lengthByLanguage?: true;
  builtIn: boolean;
}

/** A rubric's length when it names none: characters for Chinese, words for English. */
export const DEFAULT_EXPECTED_LENGTH: Record<Language, { min: number; max: number }> = {
  zh: { min: 600, max: 1200 },
  en: { min: 150, max: 600 },
};

export function maxScore(r: Pick<Rubric, 'totalRule'> & { dimensions: Array<Pick<RubricDimension, 'max'>> }): number {
  if (r.totalRule === 'mean_half_band') return Math.max(...r.dimensions.map((d) => d.max));
  return r.dimensions.reduce((a, d) => a + d.max, 0);
}

/**
 * The total by the rubric's rule, exactly: scores are handled as whole half-points.
 * mean_half_band rounds the mean to the nearest half band, .25 and .75 rounding up:
 * floor(mean × 2 + 0.5) / 2.
 */
export function totalScore(r: Rubric, scores: Record<string, number>): number {
  const halves = r.dimensions.map((d) => Math.round(scores[d.key] * 2));
  const sumHalves = halves.reduce((a, b) => a + b, 0);
  if (r.totalRule === 'sum') return sumHalves / 2;
  const n = halves.length;
  // mean × 2 = (sumHalves / 2) × 2 / n = sumHalves / n; floor(sumHalves / n + 0.5) = floor((2·sumHalves + n) / 2n)
  return Math.floor((2 * sumHalves + n) / (2 * n)) / 2;
}

/**
 * The rubric as an essay in `language` is measured against it: with the length its assignment asks
 * for (null: the rubric's), or, for an `any` rubric that names no length, the language's default
 * (without a language, such a rubric is kept as it is, for each essay's to be applied later).
 */
export function withExpectedLength(r: Rubric, expected: { min: number; max: number } | null | undefined, language?: Language): Rubric {
  if (expected) return { ...r, expectedLength: expected, lengthByLanguage: undefined };
  if (r.lengthByLanguage && language) return { ...r, expectedLength: DEFAULT_EXPECTED_LENGTH[language], lengthByLanguage: undefined };
  return r;
}

/** The step of a rubric's total: half bands for mean_half_band, else the finest dimension step. */
export function totalStep(r: Rubric): number {
  return r.totalRule === 'mean_half_band' ? 0.5 : Math.min(...r.dimensions.map((d) => d.step));
}

export function isOnStep(value: number, step: number): boolean {
  return Number.isFinite(value) && Number.isInteger(value / step);
}

export const BUILTIN_RUBRICS: Rubric[] = [
  {
    key: 'zh-gaokao-60',
    version: 1,
    name: '高考作文（60分）',
    language: 'zh',
    totalRule: 'sum',
    expectedLength: { min: 800, max: 1200 },
    builtIn: true,
    dimensions: [
      { key: 'content', name: '内容', max: 20, step: 1, kind: 'content', description: '切合题意，中心突出，内容充实，思想健康，感情真挚' },
      { key: 'expression', name: '表达', max: 20, step: 1, kind: 'language', description: '符合文体要求，结构严谨，语言流畅，标点正确，书写规范' },
      { key: 'development', name: '发展', max: 20, step: 1, kind: 'development', description: '深刻（透过现象看本质）、丰富（材料丰富，形象丰满）、有文采（用词贴切，句式灵活）、有创意（见解新颖）' },
    ],
  },
  {
    key: 'en-ielts-task2',
    version: 1,
    name: 'IELTS Writing Task 2 (bands 0–9)',
    language: 'en',
    totalRule: 'mean_half_band',
    expectedLength: { min: 250, max: 400 },
    builtIn: true,
    dimensions: [
      { key: 'task_response', name: 'Task Response', max: 9, step: 1, kind: 'content', description: 'addresses all parts of the task with a clear, developed and supported position' },
      { key: 'coherence_cohesion', name: 'Coherence and Cohesion', max: 9, step: 1, kind: 'organization', description: 'logical progression, paragraphing, and the use of cohesive devices' },
      { key: 'lexical_resource', name: 'Lexical Resource', max: 9, step: 1, kind: 'language', description: 'range, precision and appropriacy of vocabulary; spelling and word formation' },
      { key: 'grammatical_range_accuracy', name: 'Grammatical Range and Accuracy', max: 9, step: 1, kind: 'mechanics', description: 'range and accuracy of grammatical structures and punctuation' },
    ],
  },
  {
    key: 'en-general-100',
    version: 1,
    name: 'English essay (100 points)',
    language: 'en',
    totalRule: 'sum',
    expectedLength: { min: 150, max: 600 },
    builtIn: true,
    dimensions: [
      { key: 'content', name: 'Content and Ideas', max: 30, step: 1, kind: 'content', description: 'relevant, well-developed ideas with support and examples' },
      { key: 'organization', name: 'Organization', max: 25, step: 1, kind: 'organization', description: 'clear structure, paragraphs, transitions, introduction and conclusion' },
      { key: 'language', name: 'Language Use', max: 25, step: 1, kind: 'language', description: 'word choice, sentence variety, tone' },
      { key: 'mechanics', name: 'Grammar and Mechanics', max: 20, step: 1, kind: 'mechanics', description: 'grammar, spelling, punctuation and capitalization' },
    ],
  },
];

export function builtinRubric(key: string): Rubric | undefined {
  return BUILTIN_RUBRICS.find((r) => r.key === key);
}

/**
 * Why `language` cannot be graded on `rubric`, or null: a rubric written for one language grades
 * that language only (IELTS bands for a Chinese essay named "zh" were given, with no flag: the text
 * matched the language it was sent with). An `any` rubric takes either.
 */
export function languageMismatch(rubric: Pick<Rubric, 'key' | 'language'>, language: Language | undefined): string | null {
  if (language === undefined || rubric.language === 'any' || rubric.language === language) return null;
  return `language must be ${rubric.language}, the language of rubric ${rubric.key} (or leave it out)`;
}
