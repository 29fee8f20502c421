import { gradingAnswer, malformedGrade } from '../../test/fake-provider/grading-responder';
import { extractJson, locateQuote, validateDeepReview, validateGrade } from './grade-validation';
import { buildGradingPrompt, naivePrompt } from './prompts';
import { builtinRubric } from './rubric';

const gaokao = builtinRubric('zh-gaokao-60')!;
const ielts = builtinRubric('en-ielts-task2')!;
const essay = '　　那天放学后，天空下起了大雨。\n　　妈妈撑着伞在校门口等我，我的心里涌起一股暖流。\n　　从那以后，我懂得了爱。';

const good = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    dimensions: [
      { key: 'content', reason: '切题', score: 16 },
      { key: 'expression', reason: '通顺', score: 15 },
      { key: 'development', reason: '有细节', score: 12 },
    ],
    summary: '不错',
    strengths: ['真挚'],
    improvements: ['展开细节'],
    annotations: [
      { quote: '我的心里涌起一股暖流', category: 'highlight', suggestion: '', explanation: '好句' },
      { quote: '天空下起了大雨', category: 'word_choice', suggestion: '倾盆大雨', explanation: '更生动' },
    ],
    ...over,
  });

describe('validateGrade', () => {
  it('keeps no half character, NUL or control character of the model\'s text (PostgreSQL\'s jsonb refuses them: the paid grade could not be stored)', () => {
    const long = '改进' + 'a'.repeat(997) + '😀';
    const v = validateGrade(good({ improvements: [long, 'x\u0000y'], summary: 'b'.repeat(3999) + '😀', strengths: ['半\ud83d个'] }), gaokao, essay, 'standard');
    if (!v.ok) throw new Error(v.problem);
    const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
    const texts = [v.value.grade.summary, ...v.value.grade.strengths, ...v.value.grade.improvements];
    for (const t of texts) expect([t.slice(-3), lone.test(t), t.includes('\u0000')]).toEqual([t.slice(-3), false, false]);
    expect(v.value.grade.improvements).toEqual(['改进' + 'a'.repeat(997), 'xy']);
    expect(v.value.grade.summary).toBe('b'.repeat(3999));
    expect(v.value.grade.strengths).toEqual(['半\ufffd个']);
    // …which is what the grade's JSON must be for PostgreSQL's jsonb: nothing \u0000 or a lone surrogate escape.
    expect(JSON.stringify(v.value.grade)).not.toMatch(/\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])/i);
  });

  it('accepts a valid grade, computes the total and places each quote in the essay', () => {
    const v = validateGrade(good(), gaokao, essay, 'standard');
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.grade.score).toBe(43);
    expect(v.value.grade.maxScore).toBe(60);
    expect(v.value.grade.dimensions[0]).toEqual({ key: 'content', name: '内容', score: 16, max: 20, comment: '切题' });
    for (const a of v.value.grade.annotations) expect(essay.slice(a.start, a.end)).toBe(a.quote);
    expect(v.value.grade.annotations.map((a) => a.category)).toEqual(['word_choice', 'highlight']); // in essay order
  });

  it.each([
    [good({ dimensions: [{ key: 'content', reason: 'x', score: 25 }, { key: 'expression', reason: 'x', score: 1 }, { key: 'development', reason: 'x', score: 1 }] }), 'outside 0–20'],
    [good({ dimensions: [{ key: 'content', reason: 'x', score: -1 }, { key: 'expression', reason: 'x', score: 1 }, { key: 'development', reason: 'x', score: 1 }] }), 'outside 0–20'],
    [good({ dimensions: [{ key: 'content', reason: 'x', score: 10.5 }, { key: 'expression', reason: 'x', score: 1 }, { key: 'development', reason: 'x', score: 1 }] }), 'not a multiple of 1'],
    [good({ dimensions: [{ key: 'content', reason: 'x', score: 10 }, { key: 'expression', reason: 'x', score: 1 }] }), '"development" is missing'],
    [good({ dimensions: [{ key: 'content', reason: 'x', score: 10 }, { key: 'content', reason: 'x', score: 1 }] }), 'appears twice'],
    [good({ dimensions: [{ key: 'content', reason: '', score: 10 }, { key: 'expression', reason: 'x', score: 1 }, { key: 'development', reason: 'x', score: 1 }] }), 'has no reason'],
    [good({ dimensions: [{ key: 'style', reason: 'x', score: 1 }] }), 'unknown dimension'],
    [good({ summary: '' }), '"summary" is missing'],
    ['   \n  ', 'not a JSON object'],
    ['{"dimensions": [', 'not a JSON object'],
  ])('rejects %s (never clamps)', (content, problem) => {
    const v = validateGrade(content, gaokao, essay, 'standard');
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.problem).toContain(problem);
  });

  it('drops invented quotes and repairs offsets from the text itself', () => {
    const v = validateGrade(
      good({
        annotations: [
          { quote: '这句话不在作文里', category: 'grammar', suggestion: '', explanation: '' },
          { quote: '从那以后，我懂得了爱', category: 'made_up_category', suggestion: '', explanation: '', start: 0, end: 3 },
        ],
      }),
      gaokao,
      essay,
      'standard',
    );
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.droppedQuotes).toBe(1);
    expect(v.value.grade.annotations).toHaveLength(1);
    const [a] = v.value.grade.annotations;
    expect(essay.slice(a.start, a.end)).toBe('从那以后，我懂得了爱');
    expect(a.category).toBe('style');
  });

  it('reads JSON wrapped in a code fence', () => {
    expect(extractJson('```json\n{"a":1}\n```')).toEqual({ a: 1 });
  });

  it('needs the deep parts in a deep review', () => {
    const v = validateGrade(good(), gaokao, essay, 'deep');
    expect(v.ok).toBe(false);
    const deep = good({
      paragraphs: [{ index: 1, analysis: '开头点题' }],
      rewrites: [{ quote: '天空下起了大雨', rewrite: '天空下起了倾盆大雨', reason: '更生动' }],
      revisionPlan: ['补充细节'],
    });
    const ok = validateGrade(deep, gaokao, essay, 'deep');
    if (!ok.ok) throw new Error(ok.problem);
    expect(ok.value.grade.deep!.rewrites[0]).toMatchObject({ quote: '天空下起了大雨', rewrite: '天空下起了倾盆大雨' });
  });
});

describe('locateQuote', () => {
  it('finds the next unused occurrence and tolerates whitespace differences', () => {
    const text = 'I think so. I think so. And then  we left.';
    const used = new Set<string>();
    const first = locateQuote(text, 'I think so', used)!;
    used.add(`${first.start}:${first.end}`);
    expect(locateQuote(text, 'I think so', used)).toEqual({ start: 12, end: 22 });
    expect(locateQuote(text, 'then we left')).toEqual({ start: 28, end: 41 });
    expect(locateQuote(text, 'x')).toBeNull();
  });

  it('ignores whitespace differences wherever they are, and skips places already used', () => {
    const text = '我 爱\n  我的  祖国。我爱我的祖国。';
    const used = new Set<string>();
    const first = locateQuote(text, '我爱 我的祖国', used)!;
    expect(first).toEqual({ start: 0, end: 12 });
    used.add(`${first.start}:${first.end}`);
    expect(locateQuote(text, '我爱 我的祖国', used)).toEqual({ start: 13, end: 19 });
    expect(locateQuote('a '.repeat(20_000), 'a '.repeat(200) + 'b')).toBeNull();
  });
});

describe('annotations by sentence number are placed on that sentence of the essay as stored', () => {
  const answer = (annotations: unknown[]) =>
    JSON.stringify({ dimensions: gaokao.dimensions.map((d) => ({ key: d.key, reason: '理由', score: 10 })), summary: '总评', annotations });
  const grade = (text: string, annotations: unknown[]) => {
    const prompt = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: text });
    const v = validateGrade(answer(annotations), gaokao, text, 'standard', prompt.sentences);
    if (!v.ok) throw new Error(v.problem);
    return { sentences: prompt.sentences, annotations: v.value.grade.annotations };
  };
  const note = (s: number, words?: string) => ({ s, ...(words ? { words } : {}), category: 'typo', suggestion: 'x', explanation: 'y' });

  it('a sentence that also occurs inside an earlier one is the one where it stands', () => {
    const text = '他在场边大声喊：“加油！”\n加油！我们一定能赢。';
    const { sentences, annotations } = grade(text, [note(2)]);
    expect(sentences[1]).toBe('加油！');
    expect(annotations[0]).toMatchObject({ start: text.indexOf('\n') + 1, quote: '加油！' });
  });

  it('invisible characters pasted with the essay (which the prompt does not carry) neither lose a sentence nor move its words to another', () => {
    const zwsp = '我喜欢读书。我也喜\u200b欢读书，但没时间。';
    expect(grade(zwsp, [note(2, '读书')]).annotations[0]).toMatchObject({ start: zwsp.lastIndexOf('读书'), quote: '读书' });
    expect(grade(zwsp, [note(2, '喜欢')]).annotations[0]).toMatchObject({ start: zwsp.indexOf('我也') + 2, quote: '喜\u200b欢' });
    const shy = '我喜欢读书。书里有很多有趣的\u00ad故事。';
    expect(grade(shy, [note(2)]).annotations[0]).toMatchObject({ start: shy.indexOf('书里'), end: shy.length });
    const bom = '\ufeff今天　天气很好😀。\u2060我们去　公园玩。';
    expect(grade(bom, [note(1), note(2)]).annotations.map((a) => a.quote)).toEqual(['今天　天气很好😀。', '我们去　公园玩。']);
  });

  it('sentences after a head-and-tail cut are found in the tail, and one the essay does not hold is dropped, not placed elsewhere', () => {
    const head = Array.from({ length: 5 }, (_, i) => `第${i}句很好。`).join('');
    const text = `${head}\n中间的话。\n${head}`;
    const sentences = ['第0句很好。', '第1句很好。', '第4句很好。', '不在文中。', '第0句很好。'];
    const v = validateGrade(answer([note(3), note(4), note(5)]), gaokao, text, 'standard', sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.droppedQuotes).toBe(1);
    expect(v.value.grade.annotations.map((a) => a.start)).toEqual([head.indexOf('第4句'), text.lastIndexOf('第0句')]);
  });

  it('sentences the prompt carries in NFC are found in the text as stored, and a run of sentences not found does not lose the ones after it', () => {
    // U+F9D1 is 六 in NFC; a tone mark typed apart composes with its letter.
    const odd = (i: number) => `第${i}段里我们读了\uF9D1本书，ma\u0300ma说读书能让我们看到更大的世界，我们都很喜欢这样的课，下课以后大家还在讨论书里的人物和他们的选择，直到天黑才回家。`;
    const text = Array.from({ length: 12 }, (_, i) => `${odd(i)}这是第${i}句。`).join('');
    const { sentences, annotations } = grade(text, [note(2), note(23), note(24)]);
    expect(sentences).toHaveLength(24);
    expect(sentences[22]).toContain('六本书，màma');
    expect(annotations.map((a) => a.quote)).toEqual(['这是第0句。', odd(11), '这是第11句。']);
    // Past what NFC can say, a sentence (a mark repeated past the 30 the prompt keeps) is not found, and the next ones still are.
    const marks = `这${'\u0301'.repeat(40)}里。`;
    const long = Array.from({ length: 12 }, (_, i) => `${marks}这是第${i}句。`).join('');
    const placed = grade(long, [note(24)]);
    expect(placed.annotations.map((a) => a.quote)).toEqual(['这是第11句。']);
  });

  it('a run of combining marks past the 30 the prompt keeps is folded one by one (NFC of a long run is quadratic), and a zero-width space inside a cluster is left out of it', () => {
    // A hostile essay: one letter and 18,800 marks. Not a timing assertion: what the fold makes of it.
    const essay = `${'我们'.repeat(500)}a${'\u0316\u0301'.repeat(9_400)}`;
    expect(locateQuote(essay, '不在文中的一句话')).toBeNull();
    expect(locateQuote(essay, `a${'\u0316\u0301'.repeat(15)}`)).toEqual({ start: 1000, end: 1031 });
    // normalizeText drops the zero-width space, then composes: the prompt reads "é".
    const text = '我们学习了e\u200b\u0301这个字母。';
    expect(locateQuote(text, '了é这')).toEqual({ start: 4, end: 9 });
    expect(locateQuote('ab\u200bc', 'ab')).toEqual({ start: 0, end: 2 });
  });

  it('a quote of one character once folded is not placed by the fold (a zero-width space and one character)', () => {
    expect(locateQuote('我们好好学习。', '\u200b好')).toBeNull();
    expect(locateQuote('我们好\u200b好学习。', '好好')).toEqual({ start: 2, end: 5 });
  });

  it('an essay built to defeat the search is placed in linear time: sentences not found stop being looked for far away', () => {
    const text = '好。'.repeat(50_000);
    const sentences = Array.from({ length: 20_000 }, () => '不在。');
    const v = validateGrade(answer([note(20_000)]), gaokao, text, 'standard', sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.droppedQuotes).toBe(1);
  });
});

describe('the fake provider grades every rubric validly, and breaks on request', () => {
  it.each(['zh-gaokao-60', 'en-ielts-task2', 'en-general-100'])('%s', (key) => {
    const rubric = builtinRubric(key)!;
    const text = rubric.language === 'zh' ? essay : 'Technology changes schools. Some students learn faster online. Others miss their friends. In the end, balance matters.';
    for (const variant of ['standard', 'deep'] as const) {
      const prompt = buildGradingPrompt({ rubric, language: rubric.language as 'zh' | 'en', variant, essay: text });
      const v = validateGrade(gradingAnswer(prompt.messages)!, rubric, text, variant, prompt.sentences);
      if (!v.ok) throw new Error(v.problem);
      expect(v.value.droppedQuotes).toBe(0);
      expect(v.value.grade.annotations.length).toBeGreaterThan(0);
      for (const a of v.value.grade.annotations) expect(text.slice(a.start, a.end)).toBe(a.quote);
      // An answer in the quoting layout (the naive prompt) reads as well.
      const quoted = validateGrade(gradingAnswer(naivePrompt({ rubric, language: rubric.language as 'zh' | 'en', variant, essay: text }))!, rubric, text, variant);
      if (!quoted.ok) throw new Error(quoted.problem);
      expect(quoted.value.droppedQuotes).toBe(0);
      expect(quoted.value.grade.annotations).toHaveLength(v.value.grade.annotations.length);
      for (const kind of ['out_of_range', 'missing_dimension', 'not_json', 'off_step'] as const) {
        expect(validateGrade(malformedGrade(prompt.messages, kind), rubric, text, variant, prompt.sentences).ok).toBe(false);
      }
      const invented = validateGrade(malformedGrade(prompt.messages, 'invented_quotes'), rubric, text, variant, prompt.sentences);
      if (!invented.ok) throw new Error(invented.problem);
      expect(invented.value.droppedQuotes).toBe(rubric.language === 'zh' ? 2 : 1); // pointing: a number past the last and words found nowhere
      expect(invented.value.grade.annotations).toEqual(v.value.grade.annotations);
    }
    expect(ielts.totalRule).toBe('mean_half_band');
  });
});

describe('pointers: sentences by number, words inside them', () => {
  const text = '　　那天放学后，天空下起了大雨。\n　　妈妈撑着伞在校门口等我。我的心里涌起一股暖流。';
  const { sentences } = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: text });
  const grade = (annotations: unknown[]) => {
    const v = validateGrade(good({ annotations }), gaokao, text, 'standard', sentences);
    if (!v.ok) throw new Error(v.problem);
    return v.value;
  };

  it('puts the sentence back from the text, exactly, and narrows to the words of a word-level remark', () => {
    expect(sentences).toEqual(['那天放学后，天空下起了大雨。', '妈妈撑着伞在校门口等我。', '我的心里涌起一股暖流。']);
    const v = grade([
      { s: 3, category: 'highlight', suggestion: '', explanation: '真挚' },
      { s: 2, words: '撑着伞', category: 'word_choice', suggestion: '打着伞', explanation: '口语' },
      { s: '1', words: '，', category: 'punctuation', suggestion: '。', explanation: '断句' },
    ]);
    expect(v.droppedQuotes).toBe(0);
    expect(v.grade.annotations.map((a) => a.quote)).toEqual(['，', '撑着伞', '我的心里涌起一股暖流。']);
    for (const a of v.grade.annotations) expect(text.slice(a.start, a.end)).toBe(a.quote);
  });

  it('drops a number past the last sentence and words found nowhere; finds words of a miscounted sentence elsewhere', () => {
    const v = grade([
      { s: 9, category: 'logic', suggestion: '', explanation: '' },
      { s: 0, category: 'logic', suggestion: '', explanation: '' },
      { s: 1.5, category: 'logic', suggestion: '', explanation: '' },
      { s: 1, words: '不存在的词', category: 'typo', suggestion: '', explanation: '' },
      { s: 1, words: '暖流', category: 'word_choice', suggestion: '热流', explanation: '' },
    ]);
    expect(v.droppedQuotes).toBe(4);
    expect(v.grade.annotations.map((a) => a.quote)).toEqual(['暖流']);
  });

  it("finds a remark's words inside its sentence when the text spaces them otherwise, at that sentence's occurrence", () => {
    // (Looked for in the essay's fold, limited to the sentence: the words written without the text's
    // spaces and line break, in the second of two sentences that both hold them.)
    const spaced = '　　我爱 读书，也爱写作。\n　　后来我更 爱\u200b 读书了。';
    const p = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: spaced });
    const v = validateGrade(good({ annotations: [{ s: 2, words: '爱读书', category: 'word_choice', suggestion: '', explanation: '' }] }), gaokao, spaced, 'standard', p.sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(p.sentences).toEqual(['我爱 读书，也爱写作。', '后来我更 爱 读书了。']);
    const [a] = v.value.grade.annotations;
    expect(a.start).toBeGreaterThan(spaced.indexOf('后来'));
    expect(a.quote).toBe('爱\u200b 读书');
    expect(spaced.slice(a.start, a.end)).toBe(a.quote);
  });

  it("reads at most 120 of an answer's remarks: the rest are dropped unread", () => {
    const many = [
      ...Array.from({ length: 120 }, (_, i) => ({ s: 1, words: `没有${i}`, category: 'typo', suggestion: '', explanation: '' })),
      { s: 2, words: '撑着伞', category: 'word_choice', suggestion: '', explanation: '' },
    ];
    const v = grade(many);
    expect(v.grade.annotations).toEqual([]);
    expect(grade(many.slice(1)).grade.annotations.map((a) => a.quote)).toEqual(['撑着伞']);
  });

  it('still reads a copied quote (an answer in the quoting layout, or one with no number)', () => {
    const v = grade([{ quote: '妈妈撑着伞', category: 'style', suggestion: '', explanation: '' }]);
    expect(v.grade.annotations[0]).toMatchObject({ quote: '妈妈撑着伞', start: text.indexOf('妈妈') });
  });

  it('finds a repeated sentence at the occurrence the number gives, and keeps two remarks on one sentence', () => {
    const refrain = '　　从那以后，我长大了。今天下雨。\n　　从那以后，我长大了。明天晴天。';
    const p = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: refrain });
    expect(p.sentences).toEqual(['从那以后，我长大了。', '今天下雨。', '从那以后，我长大了。', '明天晴天。']);
    const v = validateGrade(
      good({
        annotations: [
          { s: 3, category: 'style', suggestion: '', explanation: '重复' },
          { s: 1, category: 'highlight', suggestion: '', explanation: '' },
          { s: 3, words: '长大', category: 'word_choice', suggestion: '成长', explanation: '' },
          { s: 3, category: 'logic', suggestion: '', explanation: '' },
        ],
      }),
      gaokao,
      refrain,
      'standard',
      p.sentences,
    );
    if (!v.ok) throw new Error(v.problem);
    const second = refrain.lastIndexOf('从那以后');
    expect(v.value.droppedQuotes).toBe(0);
    expect(v.value.grade.annotations.map((a) => [a.start, a.category])).toEqual([
      [2, 'highlight'],
      [second, 'style'],
      [second, 'logic'],
      [refrain.lastIndexOf('长大'), 'word_choice'],
    ]);
  });

  it('points rewrites of a deep review at sentences too', () => {
    const review = JSON.stringify({
      summary: '先理清思路',
      paragraphs: [{ index: 1, analysis: '开头简洁' }],
      rewrites: [
        { s: 2, rewrite: '妈妈撑着伞，早早等在校门口。', reason: '更具体' },
        { s: 42, rewrite: '不存在', reason: '' },
      ],
      revisionPlan: ['补充细节'],
    });
    const v = validateDeepReview(review, text, sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.deep.rewrites).toEqual([{ start: text.indexOf('妈妈'), end: text.indexOf('我的'), quote: '妈妈撑着伞在校门口等我。', rewrite: '妈妈撑着伞，早早等在校门口。', reason: '更具体' }]);
    const none = validateDeepReview(review.replace('"s":2', '"s":99'), text, sentences);
    expect(none.ok).toBe(false);
  });

  it('numbers paragraph analyses given as a list of strings by their place, a blank one keeping its place', () => {
    const review = (paragraphs: unknown[]) =>
      JSON.stringify({ summary: '先理清思路', paragraphs, rewrites: [{ s: 2, rewrite: '妈妈撑着伞，早早等在校门口。', reason: '更具体' }], revisionPlan: ['补充细节'] });
    const v = validateDeepReview(review(['开头简洁', '', '结尾点题', 7]), text, sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.deep.paragraphs).toEqual([
      { index: 1, analysis: '开头简洁' },
      { index: 3, analysis: '结尾点题' },
    ]);
    // Mixed forms: a paragraph analysed twice keeps its first analysis; numbers past 200 are dropped,
    // and so is everything after the first 200 entries.
    const mixed = validateDeepReview(review(['开头简洁', { index: 1, analysis: '重复' }, { index: 1e15, analysis: '太大' }, ...Array.from({ length: 500 }, () => '同上')]), text, sentences);
    if (!mixed.ok) throw new Error(mixed.problem);
    expect(mixed.value.deep.paragraphs[0]).toEqual({ index: 1, analysis: '开头简洁' });
    // entries 4 to 200 are the strings at places 4 to 200; the rest are never read
    expect(mixed.value.deep.paragraphs.map((p) => p.index)).toEqual([1, ...Array.from({ length: 197 }, (_, i) => i + 4)]);
    // Nothing usable in either form: the answer fails (and is repaired or retried).
    const empty = validateDeepReview(review(['', null, { index: 0, analysis: 'x' }]), text, sentences);
    expect(empty).toEqual({ ok: false, problem: '"paragraphs" needs an analysis of each paragraph' });
  });
});

describe('pointers on hostile text', () => {
  it('finds the last of 6,000 identical sentences in linear time, for each of 30 annotations', () => {
    const text = '好。'.repeat(6_000);
    const p = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: text });
    expect(p.sentences).toHaveLength(6_000);
    const annotations = Array.from({ length: 40 }, () => ({ s: 6_000, category: 'style', suggestion: '', explanation: '' }));
    const v = validateGrade(good({ annotations }), gaokao, text, 'standard', p.sentences);
    if (!v.ok) throw new Error(v.problem);
    expect(v.value.grade.annotations).toHaveLength(30);
    expect(v.value.grade.annotations[0]).toMatchObject({ start: 11_998, end: 12_000, quote: '好。' });
  });
});
