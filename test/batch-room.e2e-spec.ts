import { startAppWithFake, AppWithFake } from './support/app-with-fake';
import { generateEssay } from './support/essays';
import { bearer } from './support/factories';
import { waitForEssays } from './support/grading';
import { waitFor } from './support/wait';

/**
 * Jobs whose calls wait in provider batches (for minutes or a day) take no place in an instance's
 * worker pool: the places are for work. An instance holds up to BATCH_WAITERS_PER_PLACE such jobs a
 * place; while it does, only work due too soon for a batch is claimed, and the rest waits in the
 * queue, unclaimed. Counted as places past that bound, two schools' deep reviews in batches filled
 * the pool, and a third school's review due in twenty minutes was not claimed until a batch ended.
 */
describe("calls waiting in provider batches never hold back another school's urgent work (fake provider, real PostgreSQL)", () => {
  let s: AppWithFake;

  beforeAll(async () => {
    // Two places a pool (DEEP_REVIEW_CONCURRENCY): up to twenty calls waiting in batches.
    s = await startAppWithFake({
      LLM_STANDARD_MODELS: 'dashscope:qwen-flash',
      LLM_DEEP_MODELS: 'dashscope:qwen3-max',
      DEEP_REVIEW_CONCURRENCY: '2',
      LIMIT_ESSAYS_GRADING: '1',
      LLM_BATCH_WINDOW_MS: '100',
      LLM_BATCH_POLL_MS: '100',
      LLM_BATCH_MAX_WAIT_MS: '120000',
      WORKER_POLL_MS: '50',
    });
  });
  afterAll(async () => s?.close());

  const school = async () => {
    const tenant = await s.f.newTenant({ monthlyBudget: '1000.00' });
    const teacher = (await s.f.newKey(tenant, 'teacher')).key;
    await s.t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
    return { tenant, teacher };
  };
  const graded = async (teacher: string, seeds: number[]) => {
    const res = await s.t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ rubric: 'zh-gaokao-60', essays: seeds.map((n) => ({ text: generateEssay(n, 'zh').text })) }).expect(202);
    await waitForEssays(s.t.app, teacher, res.body.ids, 60_000);
    return res.body.ids as string[];
  };
  const count = async (sql: string) => Number((await s.t.dataSource.query(sql))[0].n);

  it("a school's review due in twenty minutes is delivered while two schools' reviews wait in batches past the instance's bound", async () => {
    const a = await school();
    const b = await school();
    const c = await school();
    const aIds = await graded(a.teacher, Array.from({ length: 11 }, (_, i) => 1100 + i));
    const bIds = await graded(b.teacher, Array.from({ length: 11 }, (_, i) => 1200 + i));
    const [cId] = await graded(c.teacher, [1300]);
    s.fake.setBatchLatency(90_000);
    for (const id of aIds) await s.t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(a.teacher)).send({}).expect(202);
    for (const id of bIds) await s.t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(b.teacher)).send({}).expect(202);
    // Twenty wait in batches (ten a place); the other two wait in the queue, unclaimed, and are not made in real time.
    await waitFor(async () => (await count(`SELECT count(*)::int AS n FROM jobs WHERE kind = 'deep_review' AND in_batch`)) === 20, 30_000, 'twenty in batches');
    const unclaimed = `SELECT count(*)::int AS n FROM jobs WHERE kind = 'deep_review' AND status = 'queued' AND attempts = 0 AND last_error IS NULL`;
    await waitFor(async () => (await count(unclaimed)) === 2, 15_000, 'two in the queue');
    // Even as retries of an attempt that planned a batch (which take a batch of theirs over, if it
    // has one), due in an hour: a batch could take them, so they are not claimed while there is no room.
    const now = new Date().toISOString();
    await s.t.dataSource.query(
      `UPDATE jobs SET due_by = now() + interval '1 hour', plan = jsonb_build_object('mode', 'batch', 'startAt', $1::text, 'model', 'dashscope:qwen3-max', 'window', null, 'plannedAt', $1::text, 'firstPlannedAt', $1::text)
        WHERE kind = 'deep_review' AND status = 'queued'`,
      [now],
    );
    await s.t.http.post(`/v1/essays/${cId}/deep-review`).set(bearer(c.teacher)).send({ dueBy: new Date(Date.now() + 20 * 60_000).toISOString() }).expect(202);
    await waitFor(async () => (await s.t.http.get(`/v1/essays/${cId}`).set(bearer(c.teacher))).body.deepReview?.status === 'delivered', 15_000, "the third school's review delivered");
    // Only the third school's review was made in real time on the premium model; nothing of the others twice.
    const realTimeDeep = s.fake.requests.filter((r) => !r.batchId && r.body.model === 'qwen3-max');
    expect(realTimeDeep).toHaveLength(1);
    expect(await count(`SELECT count(*)::int AS n FROM jobs WHERE kind = 'deep_review' AND in_batch`)).toBe(20);
    expect(await count(unclaimed)).toBe(2);
  }, 180_000);
});
