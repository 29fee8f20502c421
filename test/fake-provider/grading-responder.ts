/**
 * The fake provider's grader: it answers Inkstone's grading prompts with well-formed grades for
 * the rubric in the prompt — every dimension with a reason and an in-range score, quotes copied
 * from the essay — deterministic for a given essay. `malformedGrade` makes the broken answers a
 * real model sometimes gives, for tests that script them.
 *
 * It reads the prompt as a model would: the rubric JSON after "评分标准:" or "Rubric:" in the system
 * message, the essay between <essay> and </essay> in the user message. It imports nothing from src/.
 */
interface PromptRubric {
  rubric: string;
  total: string;
  dimensions: Array<{ key: string; name: string; max: number; step: number }>;
}

export interface GradingPromptParts {
  rubric: PromptRubric;
  /** the essay as written (sentence numbers taken out) */
  essay: string;
  /**
   * The sentences as the prompt numbered them, when it asks for sentence numbers (`"s":`) rather
   * than copied quotes; the answer then points at them by number, with a few exact words for a
   * word-level remark, as the instructions say.
   */
  numbered: string[] | null;
  deep: boolean;
  /** a deep review of an essay graded already: the deep part only, no scores */
  reviewOnly: boolean;
  /** the format asks for the paragraph analyses as a list of strings (`"paragraphs":["`), not as `{"index","analysis"}` objects */
  paragraphsInOrder: boolean;
  language: 'zh' | 'en';
}

export function parseGradingPrompt(messages: ReadonlyArray<{ role: string; content: string }>): GradingPromptParts | null {
  // The instructions and rubric may come in a system message (Inkstone) or after the essay in
  // one user message (a naive prompt); a grader answers both alike.
  const system = messages.find((m) => m.role === 'system')?.content ?? messages.find((m) => /(?:评分标准|Rubric): \{/.test(m.content))?.content ?? '';
  const user = [...messages].reverse().find((m) => m.role === 'user' && m.content.includes('<essay>'))?.content ?? '';
  const marker = /(?:评分标准|Rubric): (\{.*\})\s*$/s.exec(system);
  const essay = /<essay>\n([\s\S]*?)\n<\/essay>/.exec(user);
  if (!marker || !essay) return null;
  let rubric: PromptRubric;
  try {
    rubric = JSON.parse(marker[1]) as PromptRubric;
  } catch {
    return null;
  }
  if (!Array.isArray(rubric.dimensions)) return null;
  const deep = system.includes('revisionPlan');
  const refs = system.includes('"s":<');
  // "[n]" before each sentence: the sentence runs to the next number (line breaks and spaces between them are not part of it).
  const numbered = refs ? essay[1].split(/\[\d+\]/).slice(1).map((x) => x.replace(/\s+$/, '')) : null;
  const text = refs ? essay[1].replace(/\[\d+\]/g, '') : essay[1];
  return { rubric, essay: text, numbered, deep, reviewOnly: deep && system.includes('{"summary":'), paragraphsInOrder: system.includes('"paragraphs":["'), language: system.includes('评分标准') ? 'zh' : 'en' };
}

function hash(text: string, salt = 0): number {
  let h = 0x811c9dc5 ^ salt;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** Sentences of the essay, as exact substrings. */
function sentences(essay: string): string[] {
  return (essay.match(/[^。！？!?.\n]+[。！？!?.]?/g) ?? []).map((s) => s.trim()).filter((s) => s.length >= 6);
}

export function gradeFor(parts: GradingPromptParts): Record<string, unknown> {
  const { rubric, essay, language } = parts;
  const zh = language === 'zh';
  const dimensions = rubric.dimensions.map((d, i) => {
    // 55%–95% of the range, on the dimension's step.
    const f = (hash(essay, i + 1) % 1000) / 1000;
    const score = Math.min(d.max, Math.round((d.max * (0.55 + 0.4 * f)) / d.step) * d.step);
    return {
      key: d.key,
      reason: zh ? `${d.name}方面表现${f > 0.5 ? '较好' : '一般'}，仍有提升空间。` : `${d.name}: ${f > 0.5 ? 'mostly effective' : 'adequate'}, with room to improve.`,
      score,
    };
  });
  // Quoting, the sentences it finds itself; pointing, the prompt's numbered ones (same choice of sentences).
  const all = parts.numbered ? parts.numbered.filter((x) => x.length >= 6) : sentences(essay);
  const numberOf = (sentence: string) => parts.numbered!.indexOf(sentence) + 1;
  const pick = (n: number, salt: number) => {
    const out: string[] = [];
    for (let i = 0; i < all.length && out.length < n; i++) {
      const s = all[(hash(essay, salt) + i * 7) % all.length];
      if (!out.includes(s)) out.push(s);
    }
    return out;
  };
  const categories = ['highlight', 'word_choice', 'grammar', 'punctuation', 'logic', 'style'];
  // A word-level remark names a few words: a Chinese word of two characters, or two English words.
  const wordsIn = (sentence: string) => (zh ? sentence.slice(2, 4) : sentence.split(/\s+/).slice(1, 3).join(' '));
  const annotations = pick(4, 99).map((quote, i) => {
    const category = categories[(hash(quote) + i) % categories.length];
    const at = parts.numbered
      ? { s: numberOf(quote), ...(category === 'word_choice' || category === 'punctuation' ? { words: wordsIn(quote) } : {}) }
      : { quote: quote.length > 40 ? quote.slice(0, 40) : quote };
    return {
      ...at,
      category,
      suggestion: zh ? '可以换一种更准确的说法。' : 'Consider a more precise wording.',
      explanation: zh ? '这里的表达可以更具体。' : 'This could be more specific.',
    };
  });
  const grade: Record<string, unknown> = {
    dimensions,
    summary: zh ? '文章结构基本完整，语言较为通顺，细节描写可以更加丰富。' : 'A clear essay with a sensible structure; develop the examples further.',
    strengths: zh ? ['结构清楚', '语言通顺'] : ['clear structure', 'relevant ideas'],
    improvements: zh ? ['增加细节描写', '注意标点使用'] : ['add specific examples', 'vary sentence openings'],
    annotations,
  };
  if (parts.deep) {
    const paragraphs = essay.split(/\n+/).filter((p) => p.trim());
    if (parts.reviewOnly) {
      for (const k of Object.keys(grade)) if (k !== 'summary') delete grade[k];
      grade.summary = zh ? '先把每段的中心说清楚，再补充细节。' : 'Make each paragraph’s point clear first, then add detail.';
    }
    const analysis = (i: number) => (zh ? `第${i + 1}段内容集中，可以加强与上下文的衔接。` : `Paragraph ${i + 1} is focused; link it more clearly to the next.`);
    // A list of strings, one a paragraph, when the prompt's format asks for it; else numbered objects.
    grade.paragraphs = paragraphs.map((_, i) => (parts.paragraphsInOrder ? analysis(i) : { index: i + 1, analysis: analysis(i) }));
    grade.rewrites = pick(2, 7).map((quote) => ({
      ...(parts.numbered ? { s: numberOf(quote) } : { quote }),
      rewrite: zh ? `${quote}（改写：更生动地描写）` : `${quote} (rewritten with a concrete example)`,
      reason: zh ? '更具体，更有画面感。' : 'More concrete and vivid.',
    }));
    grade.revisionPlan = zh ? ['先理清每段的中心句', '再补充细节描写', '最后检查标点和用词'] : ['Sharpen each topic sentence', 'Add one example per paragraph', 'Proofread grammar and punctuation'];
  }
  return grade;
}

/** The grading answer for a prompt, or null when the prompt is not a grading prompt. */
export function gradingAnswer(messages: ReadonlyArray<{ role: string; content: string }>): string | null {
  const parts = parseGradingPrompt(messages);
  return parts ? JSON.stringify(gradeFor(parts)) : null;
}

export type Malformation = 'out_of_range' | 'missing_dimension' | 'not_json' | 'invented_quotes' | 'off_step';

/** A broken grade of the kind real models produce, for the same prompt. */
export function malformedGrade(messages: ReadonlyArray<{ role: string; content: string }>, kind: Malformation): string {
  const parts = parseGradingPrompt(messages);
  if (!parts) throw new Error('not a grading prompt');
  const g = gradeFor({ ...parts, reviewOnly: false }) as { dimensions: Array<{ key: string; score: number }>; annotations: Array<Record<string, unknown>> };
  switch (kind) {
    case 'out_of_range':
      g.dimensions[0].score = parts.rubric.dimensions[0].max + 5;
      break;
    case 'off_step':
      g.dimensions[0].score = parts.rubric.dimensions[0].max - 0.3;
      break;
    case 'missing_dimension':
      g.dimensions.pop();
      break;
    case 'invented_quotes':
      // A quote the essay does not contain; pointing, also a sentence number past the last and words not in the essay.
      g.annotations = parts.numbered
        ? [{ ...g.annotations[0], s: parts.numbered.length + 7, quote: '这句话根本不在作文里 and never was' }, { ...g.annotations[0], words: '根本不存在的词语' }, ...g.annotations]
        : [{ ...g.annotations[0], quote: '这句话根本不在作文里 and never was' }, ...g.annotations];
      break;
    case 'not_json':
      return `好的，下面是评分：${JSON.stringify(g).slice(0, 80)}`;
  }
  return JSON.stringify(g);
}
