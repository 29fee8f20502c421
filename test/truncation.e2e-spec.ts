import { GradingWorker } from '../src/grading/grading.worker';
import { startAppWithFake, AppWithFake } from './support/app-with-fake';
import { catalogEntry, extendedCatalog } from './support/catalog-entry';
import { generateEssay } from './support/essays';
import { bearer } from './support/factories';
import { waitForEssays } from './support/grading';
import request from 'supertest';
import { gradingAnswer, malformedGrade } from './fake-provider/grading-responder';
import { waitFor } from './support/wait';

/**
 * An essay longer than the tier's model reads (SPEC §4 Compression): cut head and tail, flagged
 * `truncated`, never silently; and the grade of the cut essay is not served as the grade of the whole
 * one once the tier has a model that reads it all.
 */
describe('an essay longer than the model reads (fake provider, real PostgreSQL)', () => {
  let s: AppWithFake;
  const MIDDLE = '这是夹在正中间独一无二的一句话。';
  const text = `${generateEssay(11, 'zh', { targetChars: 1500 }).text}\n${MIDDLE}\n${generateEssay(12, 'zh', { targetChars: 1500 }).text}`;

  let catalog: ReturnType<typeof extendedCatalog>;

  beforeAll(async () => {
    catalog = extendedCatalog([
      catalogEntry({ id: 'qwen-small-test', contextWindow: 8000, maxOutputTokens: 2000 }),
      catalogEntry({ id: 'qwen-large-test', contextWindow: 200000, maxOutputTokens: 8000 }),
    ]);
    s = await startAppWithFake({ LLM_CATALOG_FILE: catalog.file, LLM_STANDARD_MODELS: 'dashscope:qwen-small-test', WORKER_POLL_MS: '50' });
  });
  afterAll(async () => {
    await s?.close();
    catalog?.remove();
  });

  const essayContents = () => s.fake.requests.map((r) => String(r.body.messages.at(-1)?.content ?? ''));

  it('cuts the middle out, flags the grade, and keys the answer cache by the essay as sent', async () => {
    const tenant = await s.f.newTenant({ monthlyBudget: '100.00' });
    const teacher = (await s.f.newKey(tenant, 'teacher')).key;

    const first = await s.t.http.post('/v1/essays').set(bearer(teacher)).send({ text }).expect(202);
    const [cut] = await waitForEssays(s.t.app, teacher, [first.body.id]);
    expect(cut).toMatchObject({ status: 'graded', cache: 'miss', grade: { model: 'qwen-small-test' } });
    expect(cut.flags).toContain('truncated');
    expect(cut.text).toBe(text); // the stored essay is whole
    expect(essayContents()).toHaveLength(1);
    expect(essayContents()[0]).toMatch(/\n\[…\]\n\[\d+\]/); // the mark on a line of its own, not numbered as a sentence
    expect(essayContents()[0]).not.toContain(MIDDLE);

    // The tier now has a model that reads the whole essay (another instance, new configuration, the
    // same database and answer cache): the same essay is graded whole, not answered with the cut grade.
    await s.t.app.get(GradingWorker).stop(0);
    const other = await s.t.another({ LLM_STANDARD_MODELS: 'dashscope:qwen-large-test' });
    try {
      const second = await request(other.getHttpServer()).post('/v1/essays').set(bearer(teacher)).send({ text }).expect(202);
      const [whole] = await waitForEssays(other, teacher, [second.body.id]);
      expect(whole).toMatchObject({ status: 'graded', cache: 'miss', grade: { model: 'qwen-large-test' } });
      expect(whole.flags).not.toContain('truncated');
      expect(essayContents()).toHaveLength(2);
      expect(essayContents()[1]).toContain(MIDDLE);
      expect(essayContents()[1]).not.toContain('[…]');

      // …and that whole grade is what the same essay gets from the cache after it.
      const third = await request(other.getHttpServer()).post('/v1/essays').set(bearer(teacher)).send({ text }).expect(202);
      const [again] = await waitForEssays(other, teacher, [third.body.id]);
      expect(again).toMatchObject({ status: 'graded', cache: 'hit', grade: { model: 'qwen-large-test' } });
      expect(again.flags).not.toContain('truncated');
      expect(essayContents()).toHaveLength(2);
    } finally {
      // (Its workers, which read the whole essay, would take the next tests' essays.)
      await other.close();
    }
  });

  it('flags a grade of the deep tier made from a cut essay too: an escalated grade that replaces the standard one, and a paid deep review', async () => {
    // The deep tier reads less than the standard tier here (a local model behind OPENAI_BASE_URL, say).
    const deepSmall = await s.t.another({ LLM_STANDARD_MODELS: 'dashscope:qwen-large-test', LLM_DEEP_MODELS: 'dashscope:qwen-small-test', WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '50' });
    await s.t.app.get(GradingWorker).stop(0);
    try {
      const tenant = await s.f.newTenant({ monthlyBudget: '100.00' });
      const teacher = (await s.f.newKey(tenant, 'teacher')).key;
      const http = () => request(deepSmall.getHttpServer());
      // The standard grade needs a repair (low confidence): escalated to the deep tier, which cuts.
      let calls = 0;
      s.fake.setResponder(({ messages }) => (++calls === 1 ? malformedGrade(messages, 'out_of_range') : gradingAnswer(messages)!));
      const a = (await http().post('/v1/assignments').set(bearer(tenant.adminKey)).send({ title: 'T', prompt: '以“成长”为题', rubric: 'zh-gaokao-60', escalate: 'deep' }).expect(201)).body;
      const sent = await http().post('/v1/essays').set(bearer(teacher)).send({ assignmentId: a.id, text }).expect(202);
      const [escalated] = await waitForEssays(deepSmall, teacher, [sent.body.id]);
      expect(escalated.grade).toMatchObject({ model: 'qwen-small-test', tier: 'deep' });
      expect(escalated.flags).toEqual(expect.arrayContaining(['escalated', 'truncated']));
      expect(escalated.grade.flags).toContain('truncated');

      // A paid deep review of an essay the standard tier read whole: the review is cut, the grade is not.
      s.fake.setResponder(({ messages }) => gradingAnswer(messages)!);
      const whole = await http().post('/v1/essays').set(bearer(teacher)).send({ text: `${text}\n再加一句。` }).expect(202);
      const [graded] = await waitForEssays(deepSmall, teacher, [whole.body.id]);
      expect(graded.flags).not.toContain('truncated');
      await http().put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
      await http().post(`/v1/essays/${whole.body.id}/deep-review`).set(bearer(teacher)).send({}).expect(202);
      let view: { deepReview?: { status: string }; deepGrade?: { flags: string[]; model: string } } = {};
      // (The view reads the essay, then its order: the two may straddle the delivery's commit.)
      await waitFor(
        async () => {
          view = (await http().get(`/v1/essays/${whole.body.id}`).set(bearer(teacher))).body;
          return view.deepReview?.status === 'delivered' && !!view.deepGrade;
        },
        30_000,
        'the deep review delivered',
      );
      expect(view.deepGrade).toMatchObject({ model: 'qwen-small-test', flags: ['truncated'] });
    } finally {
      await deepSmall.close();
    }
  });

  it('an offline estimate in place of the model grade of a cut essay is not flagged truncated: it reads the essay whole', async () => {
    const tenant = await s.f.newTenant({ monthlyBudget: '100.00' });
    const teacher = (await s.f.newKey(tenant, 'teacher')).key;
    const small = await s.t.another({ LLM_STANDARD_MODELS: 'dashscope:qwen-small-test', WORKER_POLL_MS: '50' });
    try {
      s.fake.setResponder(({ messages }) => malformedGrade(messages, 'not_json'));
      const sent = await request(small.getHttpServer()).post('/v1/essays').set(bearer(teacher)).send({ text: `${text}\n又一句。` }).expect(202);
      const [view] = await waitForEssays(small, teacher, [sent.body.id]);
      expect(view.flags).toContain('offline_estimate');
      expect(view.flags).not.toContain('truncated');
      expect(s.fake.requests.some((r) => String(r.body.messages.find((m: { role: string }) => m.role === 'user')?.content ?? '').includes('又一句') && JSON.stringify(r.body.messages).includes('[…]'))).toBe(true); // the model was sent the cut essay
    } finally {
      s.fake.setResponder(({ messages }) => gradingAnswer(messages)!);
      await small.close();
    }
  });

  it.each([
    // NFC writes U+1D15E as two characters (twice the bytes); a fence's name is defused into entities; thousands of sentences take longer numbers than reserved
    ['characters that normalize longer', ('这是作文内容，写了很多' + '\u{1D15E}'.repeat(8) + '。').repeat(300)],
    ['fence names written in the essay', '作文<essay>'.repeat(2200)],
    ['thousands of short sentences', '好。'.repeat(9000)],
    // (numbered, each of these more than doubles: a cut that took off only the excess left nothing)
    ['thousands of sentences shorter than their numbers', '好!'.repeat(9000)],
  ])('cuts the essay as it is sent (%s): it fits the window, and the model grades it', async (_what, long) => {
    const tenant = await s.f.newTenant({ monthlyBudget: '100.00' });
    const small = await s.t.another({ LLM_STANDARD_MODELS: 'dashscope:qwen-small-test', WORKER_POLL_MS: '50' });
    try {
      const before = s.fake.requests.length;
      const sent = await request(small.getHttpServer()).post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: long, language: 'zh' }).expect(202);
      const [view] = await waitForEssays(small, tenant.adminKey, [sent.body.id]);
      // Before, the cut was measured on the raw text: the prompt as sent was past the window, no model
      // took it, and the essay was estimated offline as if every provider had failed.
      expect(view.flags).not.toContain('providers_unavailable');
      expect(view.grade).toMatchObject({ source: 'model', model: 'qwen-small-test' });
      expect(view.flags).toContain('truncated');
      expect(s.fake.requests.length).toBeGreaterThan(before);
      // A good part of the essay was sent, not the cut's mark alone (before, an essay of thousands of
      // short sentences had every sentence's number reserved up front: nothing of it was left).
      const sentEssay = String(s.fake.requests.at(-1)!.body.messages.at(-1)?.content ?? '');
      expect(sentEssay.length).toBeGreaterThan(500);
    } finally {
      await small.close();
    }
  });
});
