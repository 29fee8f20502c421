import { generateEssay } from '../../test/support/essays';
import { essayFeatures, offlineGrade } from './offline-grader';
import { BUILTIN_RUBRICS, isOnStep, Rubric, totalScore } from './rubric';

describe('offline grader', () => {
  it.each(BUILTIN_RUBRICS.map((r) => [r.key, r] as const))('fills every dimension of %s within range, deterministically', (_key, rubric) => {
    const lang = rubric.language === 'zh' ? 'zh' : 'en';
    const text = generateEssay(3, lang).text;
    const g = offlineGrade(text, rubric, lang);
    expect(g.dimensions.map((d) => d.key)).toEqual(rubric.dimensions.map((d) => d.key));
    for (const d of g.dimensions) {
      expect(d.score).toBeGreaterThanOrEqual(0);
      expect(d.score).toBeLessThanOrEqual(d.max);
      expect(isOnStep(d.score, rubric.dimensions.find((x) => x.key === d.key)!.step)).toBe(true);
    }
    expect(g.score).toBe(totalScore(rubric, Object.fromEntries(g.dimensions.map((d) => [d.key, d.score]))));
    expect(g.summary).toMatch(/离线估算|Offline estimate/);
    expect(offlineGrade(text, rubric, lang)).toEqual(g);
    for (const a of g.annotations) expect(text.slice(a.start, a.end)).toBe(a.quote);
  });

  it('scores any rubric, including a tenant rubric with half-point steps', () => {
    const custom: Rubric = {
      key: 'mine',
      version: 2,
      name: 'mine',
      language: 'any',
      totalRule: 'sum',
      expectedLength: { min: 300, max: 600 },
      builtIn: false,
      dimensions: [
        { key: 'a', name: 'A', max: 7, step: 0.5, kind: 'mechanics', description: '' },
        { key: 'b', name: 'B', max: 3, step: 1, kind: 'organization', description: '' },
      ],
    };
    const g = offlineGrade(generateEssay(9, 'zh').text, custom, 'zh');
    expect(g.maxScore).toBe(10);
    expect(g.dimensions).toHaveLength(2);
  });

  it('rewards length, paragraphs and clean punctuation, and notices misuse and repetition', () => {
    const rubric = BUILTIN_RUBRICS[0];
    const good = generateEssay(11, 'zh', { targetChars: 900 }).text;
    const short = '今天天气很好,我们去公园玩。今天天气很好,我们去公园玩。今天天气很好,我们去公园玩。';
    expect(offlineGrade(good, rubric, 'zh').score).toBeGreaterThan(offlineGrade(short, rubric, 'zh').score);
    const f = essayFeatures(short, 'zh');
    expect(f.punctuationIssues.length).toBeGreaterThanOrEqual(3);
    expect(f.repeatedSentences).toHaveLength(2);
    expect(f.paragraphs).toBe(1);
    const fEn = essayFeatures('i think so .It is good,really. It is good,really.', 'en');
    expect(fEn.punctuationIssues.map((p) => p.note)).toEqual(expect.arrayContaining(['"I" should be capitalized', 'missing space after punctuation']));
  });

  it('caps content and development far below the expected length: a 139-character answer to an 800-character task', () => {
    const rubric = BUILTIN_RUBRICS[0];
    const short = '那一刻，我终于明白了母亲的辛苦。她每天早出晚归，为了这个家操碎了心。我望着她花白的头发，心里一阵酸楚，眼泪不由自主地流了下来。从那以后，我暗下决心，一定要好好学习，用优异的成绩报答她的养育之恩。母亲的爱像一盏明灯，照亮我前进的道路，让我在风雨中不再迷茫，勇敢前行。';
    expect(short.length).toBeGreaterThan(120);
    expect(short.length).toBeLessThan(160);
    const g = offlineGrade(short, rubric, 'zh');
    const long = offlineGrade(generateEssay(11, 'zh', { targetChars: 1000 }).text, rubric, 'zh');
    const byKey = Object.fromEntries(g.dimensions.map((d) => [d.key, d]));
    // At most 20 + 60% × ratio of the dimension: about 5 of 20 here.
    expect(byKey.content.score).toBeLessThanOrEqual(6);
    expect(byKey.development.score).toBeLessThanOrEqual(6);
    expect(byKey.content.comment).toMatch(/上限/);
    expect(g.score).toBeLessThan(30);
    expect(long.score).toBeGreaterThan(g.score + 10);
    expect(g.improvements.join()).toMatch(/至少 800 字/);
  });

  it('finds idioms, quotations, parallel clauses and connectives, and shows the teacher where', () => {
    const text =
      '我们要自强不息，要持之以恒。鲁迅说过：“其实地上本没有路，走的人多了，也便成了路。”因此，青春是奋斗的，青春是拼搏的，青春是无悔的。然而成长并不容易，但是只要坚持，总会坚持不懈。\n\n' +
      '总之，我们应当全力以赴。';
    const f = essayFeatures(text, 'zh');
    expect(f.idioms.map((i) => i.text)).toEqual(expect.arrayContaining(['自强不息', '持之以恒', '坚持不懈', '全力以赴']));
    for (const i of f.idioms) expect(text.slice(i.start, i.end)).toBe(i.text);
    expect(f.quotations).toHaveLength(1);
    expect(text.slice(f.quotations[0].start, f.quotations[0].end)).toMatch(/^“其实.*路。”$/);
    expect(f.parallels).toHaveLength(1);
    expect(text.slice(f.parallels[0].start, f.parallels[0].end)).toBe('青春是奋斗的，青春是拼搏的，青春是无悔的');
    expect(f.connectives).toBeGreaterThanOrEqual(4); // 因此 然而 但是 只要 总之
    const g = offlineGrade(text, BUILTIN_RUBRICS[0], 'zh');
    expect(g.strengths.join()).toMatch(/自强不息/);
    expect(g.annotations.filter((a) => a.category === 'highlight').map((a) => a.quote)).toEqual(expect.arrayContaining(['自强不息', '青春是奋斗的，青春是拼搏的，青春是无悔的']));
    for (const a of g.annotations) expect(text.slice(a.start, a.end)).toBe(a.quote);
  });

  it('ranks longer, richer essays above shorter, plainer ones without any calibration', () => {
    const rubric = BUILTIN_RUBRICS[0];
    const plain = '今天我去了学校。我上了课。我回家了。我吃了饭。我写了作业。我睡觉了。'.repeat(8);
    const rich = generateEssay(21, 'zh', { targetChars: 1000 }).text;
    expect(offlineGrade(rich, rubric, 'zh').score).toBeGreaterThan(offlineGrade(plain, rubric, 'zh').score);
  });

  it('checks English spelling against the dictionary, takes capitalized words inside a sentence for names, and marks each typo in the text', () => {
    const text = 'I beleive that Zhang Wei is right. Becuase reading matters, we should read every day.\n\nIn conclusion, reading is important.';
    const f = essayFeatures(text, 'en');
    expect(f.misspellings.map((m) => m.text)).toEqual(['beleive', 'Becuase']);
    expect(f.misspelledShare).toBeGreaterThan(0);
    const g = offlineGrade(text, BUILTIN_RUBRICS[2], 'en');
    const typos = g.annotations.filter((a) => a.category === 'typo');
    expect(typos.map((a) => a.quote)).toEqual(['beleive', 'Becuase']);
    for (const a of typos) expect(text.slice(a.start, a.end)).toBe(a.quote);
    expect(g.improvements.join(' ')).toMatch(/beleive/);
    // Misspelling words of a long enough essay costs mechanics points.
    const essay = generateEssay(5, 'en', { targetWords: 300 }).text;
    const words = [...new Set(essay.match(/\b[a-z]{6,}\b/g)!)].slice(0, 12);
    const typoed = words.reduce((t, w) => t.split(w).join(w.slice(0, 2) + w[3] + w[2] + w.slice(4)), essay);
    const mech = (x: string) => offlineGrade(x, BUILTIN_RUBRICS[2], 'en').dimensions.find((d) => d.key === 'mechanics')!.score;
    expect(essayFeatures(typoed, 'en').misspellings.length).toBeGreaterThan(10);
    expect(mech(essay)).toBeGreaterThan(mech(typoed));
  });

  it('ends a Chinese sentence after its closing quote: a mark never starts at the previous sentence\'s ”', () => {
    const text = '妈妈说：“快走吧。”我就说：“好好好！”后来我们出发了。\n妈妈说：“快走吧。”我就说：“好好好！”';
    const repeated = offlineGrade(text, BUILTIN_RUBRICS[0], 'zh').annotations.filter((a) => a.category === 'style');
    expect(repeated.map((a) => a.quote)).toEqual(['妈妈说：“快走吧。”', '我就说：“好好好！”']);
    for (const a of repeated) expect(text.slice(a.start, a.end)).toBe(a.quote);
  });

  it('takes British spellings for right (the dictionary is American), and still catches a misspelling of one', () => {
    const text = 'We practise every day. My favourite colour is grey. The theatre centre organised a programme; we travelled there to analyse the catalogue in its defence.';
    expect(essayFeatures(text, 'en').misspellings.map((m) => m.text)).toEqual([]);
    expect(essayFeatures('My favourate colur is blue.', 'en').misspellings.map((m) => m.text)).toEqual(['favourate', 'colur']);
  });

  it('names English grammar slips a rule can be sure of, with the fix, and leaves correct English alone', () => {
    const text = 'They says it is easy. I would of gone, but you was late. He don\'t care, and it are more better now.';
    const f = essayFeatures(text, 'en');
    expect(f.grammarSlips.map((g) => [g.text, g.suggestion])).toEqual([
      ['They says', 'They say'],
      ['would of', 'would have'],
      ['you was', 'you were'],
      ["He don't", "He doesn't"],
      ['it are', 'it is'],
      ['more better', 'better'],
    ]);
    const g = offlineGrade(text, BUILTIN_RUBRICS[2], 'en');
    const slips = g.annotations.filter((a) => a.category === 'grammar');
    expect(slips.map((a) => a.suggestion)).toEqual(['They say', 'would have', 'you were', "He doesn't", 'it is', 'better']);
    for (const a of slips) expect(text.slice(a.start, a.end)).toBe(a.quote);
    expect(g.improvements.join(' ')).toMatch(/would of → would have/);
    // Correct sentences near the same words are not slips; Chinese essays are not read for them.
    expect(essayFeatures('They say he has gone. If it were easy, we would have done more. Does he have time? She does not.', 'en').grammarSlips).toEqual([]);
    expect(essayFeatures('They says 我们 would of 去', 'zh').grammarSlips).toEqual([]);
  });

  it('counts uncommon English words by their frequency, not their length', () => {
    const plain = essayFeatures('The children went to the school and they played with their friends in the afternoon.', 'en');
    const rich = essayFeatures('The meticulous curator scrutinized the ephemeral exhibits with unwavering diligence.', 'en');
    expect(rich.sophistication).toBeGreaterThan(plain.sophistication + 0.2);
  });
});
