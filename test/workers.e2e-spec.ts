import { GradingService } from '../src/grading/grading.service';
import { BudgetService } from '../src/billing/budget.service';
import { rowsOf } from '../src/db/tenant-scope';
import { GradingWorker } from '../src/grading/grading.worker';
import { JobQueue } from '../src/jobs/job-queue';
import { EssayEvents } from '../src/grading/essay-events';
import { FakeProvider, startFakeProvider } from './fake-provider/fake-provider';
import { generateEssay } from './support/essays';
import { bearer, Factory } from './support/factories';
import { waitForEssays } from './support/grading';
import { providerEnv } from './support/providers';
import { freePort, hasExited, startService } from './support/spawn-service';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { sessionsWaitingForLocks, withHeldTransactions } from './support/held-transactions';
import { serverUrl } from './support/test-database';
import { EssaysRepository } from '../src/grading/essays.repository';
import { CONFIG } from '../src/config/app-config';
import { expectBooksBalanced } from './support/books';

/** The durable queue: retries, graceful shutdown, and a worker process killed mid-batch. */
describe('grading workers', () => {
  let fake: FakeProvider;

  beforeAll(async () => {
    fake = await startFakeProvider();
  });
  afterAll(() => fake.close());
  beforeEach(() => fake.reset());

  async function jobs(t: TestApp, tenantId: string) {
    return t.dataSource.query(`SELECT status, attempts, locked_by FROM jobs WHERE tenant_id = $1`, [tenantId]);
  }

  it('a wake while the loop is claiming is not lost, and a stop during a claim does not wait out the poll interval', async () => {
    // Polls once a minute: only wakes start a claim, and a lost one shows as a minute's wait.
    const t = await createTestApp({ ...providerEnv(fake), WORKER_POLL_MS: '60000' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      const queue = t.app.get(JobQueue);
      const real = queue.claim.bind(queue);
      // The next claim is held after it has read the queue, until released.
      let held: { entered: boolean; release: () => void } | null = null;
      const holdNext = () => {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const h = { entered: false, release };
        held = h;
        return { h, gate };
      };
      let gate: Promise<void> | null = null;
      jest.spyOn(queue, 'claim').mockImplementation(async (...args: Parameters<JobQueue['claim']>) => {
        const jobs = await real(...args);
        const h = held;
        if (h && gate) {
          const g = gate;
          held = null;
          gate = null;
          h.entered = true;
          await g;
        }
        return jobs;
      });
      const submit = async (seed: number) =>
        (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(seed, 'zh').text }).expect(202)).body.id as string;

      const events = t.app.get(EssayEvents);
      // 1. A wake with nothing queued (as a finished job's or another instance's is): the claim finds
      // nothing and is held after reading the queue. An essay queued meanwhile wakes the loop mid-claim.
      let hold = holdNext();
      gate = hold.gate;
      events.queued();
      await waitFor(() => hold.h.entered, 10_000, 'the claim to be under way');
      const first = await submit(301);
      hold.h.release();
      // Lost, that wake would leave the essay for the next poll, a minute away.
      const [view] = await waitForEssays(t.app, tenant.adminKey, [first], 20_000);
      expect(view.status).toBe('graded');

      // 2. A stop asked for while a claim that finds nothing is held: the worker stops once the claim is back.
      hold = holdNext();
      gate = hold.gate;
      events.queued();
      await waitFor(() => hold.h.entered, 10_000, 'the claim to be under way');
      const stopping = t.app.get(GradingWorker).stop();
      hold.h.release();
      const outcome = await Promise.race([stopping.then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still waiting after 20 s'), 20_000))]);
      expect(outcome).toBe('stopped');
    } finally {
      await t.close();
    }
  }, 60_000);

  it('retries a failed grading with backoff and then succeeds', async () => {
    // Deep tier: no offline fallback, so a provider outage is retried by the queue.
    const t = await createTestApp({ ...providerEnv(fake), LLM_MAX_RETRIES: '0', WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '100', LLM_DEEP_MODELS: 'dashscope:qwen3-max' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      await t.app.get(GradingService).updateSettings(tenant.tenantId, { directDeep: true });
      fake.enqueue('dashscope', [{ kind: 'preset', name: 'server_error' }, { kind: 'preset', name: 'server_error' }]);
      const view = await new Factory(t.app).gradedEssay(tenant.adminKey, { seed: 1, tier: 'deep' });
      expect(view.status).toBe('graded');
      const [job] = await jobs(t, tenant.tenantId);
      expect(job).toMatchObject({ status: 'done', attempts: 3 });
    } finally {
      await t.close();
    }
  });

  it('waits at most JOB_RETRY_MAX_MS between attempts: a late attempt of many is tried again within it, not refused as a date past any PostgreSQL holds', async () => {
    const t = await createTestApp({ ...providerEnv(fake), WORKERS_ENABLED: 'false', WORKER_POLL_MS: '50', JOB_MAX_ATTEMPTS: '50', JOB_RETRY_BASE_MS: '3600000', JOB_RETRY_MAX_MS: '900000' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(8, 'zh').text }).expect(202);
      // Its 45th attempt: doubled from an hour 44 times, the wait was ~2^44 hours.
      await t.dataSource.query(`UPDATE jobs SET attempts = 44 WHERE tenant_id = $1`, [tenant.tenantId]);
      const attempt = jest.spyOn(t.app.get(GradingService), 'grade').mockRejectedValue(new Error('a database hiccup'));
      t.app.get(GradingWorker).start();
      await waitFor(async () => (await jobs(t, tenant.tenantId))[0]?.status === 'queued' && attempt.mock.calls.length === 1, 10_000, 'the attempt put back in the queue');
      const [row] = await t.dataSource.query(`SELECT attempts, extract(epoch FROM run_after - now()) AS wait_s FROM jobs WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(row.attempts).toBe(45);
      expect(Number(row.wait_s)).toBeGreaterThan(0.6 * 900 - 5);
      expect(Number(row.wait_s)).toBeLessThanOrEqual(900);
    } finally {
      await t.close();
    }
  });

  it('retries a deep grading no sooner than its provider may answer again (its breaker open): an outage shorter than the attempts is outlived', async () => {
    // One failure opens the deep model's breaker for 2 s; the queue's own backoff is 20 ms.
    const t = await createTestApp({ ...providerEnv(fake), LLM_MAX_RETRIES: '0', WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '20', JOB_MAX_ATTEMPTS: '3', LLM_BREAKER_FAILURES: '1', LLM_BREAKER_COOLDOWN_MS: '2000', LLM_PROVIDER_PROBE_MS: '2000', LLM_DEEP_MODELS: 'dashscope:qwen3-max' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      await t.app.get(GradingService).updateSettings(tenant.tenantId, { directDeep: true });
      fake.enqueue('dashscope', [{ kind: 'preset', name: 'server_error' }]);
      const view = await new Factory(t.app).gradedEssay(tenant.adminKey, { seed: 3, tier: 'deep' });
      // Retried at 20 and 40 ms, both attempts met the open breaker and the essay failed.
      expect(view.status).toBe('graded');
      const [job] = await jobs(t, tenant.tenantId);
      expect(job.status).toBe('done');
      expect(job.attempts).toBeLessThanOrEqual(3);
    } finally {
      await t.close();
    }
  });

  it('fails an essay clearly once its attempts are used up', async () => {
    const t = await createTestApp({ ...providerEnv(fake), LLM_MAX_RETRIES: '0', WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '20', JOB_MAX_ATTEMPTS: '2', LLM_DEEP_MODELS: 'dashscope:qwen3-max' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      await t.app.get(GradingService).updateSettings(tenant.tenantId, { directDeep: true });
      fake.enqueue('dashscope', Array(4).fill({ kind: 'preset', name: 'server_error' }));
      const view = await new Factory(t.app).gradedEssay(tenant.adminKey, { seed: 2, tier: 'deep' });
      expect(view.status).toBe('failed');
      expect(view.failure).toEqual({ code: 'GRADING_FAILED', reason: expect.stringMatching(/No provider could answer/) });
      expect(await jobs(t, tenant.tenantId)).toEqual([{ status: 'failed', attempts: 2, locked_by: null }]);
    } finally {
      await t.close();
    }
  });

  it("a last attempt that fails after another worker took its job over writes nothing and tells the essay's followers nothing: the other worker's grading stands", async () => {
    const t = await createTestApp({ ...providerEnv(fake), LLM_MAX_RETRIES: '0', WORKER_POLL_MS: '50', JOB_MAX_ATTEMPTS: '1', LLM_DEEP_MODELS: 'dashscope:qwen3-max' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      await t.app.get(GradingService).updateSettings(tenant.tenantId, { directDeep: true });
      fake.enqueue('dashscope', Array(2).fill({ kind: 'preset', name: 'server_error' }));
      const grading = t.app.get(GradingService);
      const real = grading.failEssay.bind(grading);
      const failing = jest.spyOn(grading, 'failEssay').mockImplementation(async (job, ...rest) => {
        // The job's lease ran out while its call failed, and another instance's worker took it over.
        await t.dataSource.query(`UPDATE jobs SET locked_by = 'another-instance', attempts = attempts + 1 WHERE tenant_id = $1 AND id = $2`, [job.tenantId, job.id]);
        return real(job, ...rest);
      });
      const heard: string[] = [];
      const id = (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(4, 'zh').text, tier: 'deep' }).expect(202)).body.id as string;
      const off = t.app.get(EssayEvents).on(id, (e) => heard.push(e.status));
      await waitFor(() => failing.mock.results.length === 1, 20_000, 'the last attempt to fail');
      const outcome = await failing.mock.results[0].value;
      off();
      expect(outcome).toEqual({ kind: 'done', status: 'superseded' });
      // Before: its followers heard 'failed' (a console's stream ends there) while the essay went on grading elsewhere.
      expect(heard).not.toContain('failed');
      const view = (await t.http.get(`/v1/essays/${id}`).set(bearer(tenant.adminKey)).expect(200)).body;
      expect([view.status, view.failure ?? null]).toEqual(['grading', null]);
      expect(await jobs(t, tenant.tenantId)).toEqual([{ status: 'running', attempts: 2, locked_by: 'another-instance' }]);
    } finally {
      await t.close();
    }
  });

  it('an attempt that stalled past its lease, when this same process claimed the job again, holds nothing: it neither puts the live attempt back in the queue nor ends its lease renewal', async () => {
    const t = await createTestApp({ ...providerEnv(fake), WORKER_POLL_MS: '50', JOB_LEASE_MS: '2000', JOB_RETRY_BASE_MS: '20' });
    // The first attempt stalls (until `unstall`), then fails; the second stays at work until the end.
    let unstall: (() => void) | undefined;
    const stalled = new Promise<void>((r) => (unstall = r));
    let finishSecond: (() => void) | undefined;
    const second = new Promise<void>((r) => (finishSecond = r));
    try {
      const tenant = await new Factory(t.app).newTenant();
      const grading = t.app.get(GradingService);
      const attempts = jest.spyOn(grading, 'grade').mockImplementation(async () => {
        if (attempts.mock.calls.length === 1) {
          await stalled;
          throw new Error('the stalled attempt fails at last');
        }
        await second;
        return { kind: 'failed', code: 'TEST' } as never;
      });
      await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(5, 'zh').text }).expect(202);
      await waitFor(() => attempts.mock.calls.length === 1, 10_000, 'the first attempt');
      // Its lease ran out (the process starved) and a recovery put it back: this process claims it again.
      await t.dataSource.query(`UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, run_after = now() WHERE tenant_id = $1`, [tenant.tenantId]);
      await waitFor(() => attempts.mock.calls.length === 2, 10_000, 'the second attempt');
      const [live] = await jobs(t, tenant.tenantId);
      expect(live).toMatchObject({ status: 'running', attempts: 2 });
      unstall!();
      // Longer than two leases: the live attempt's lease is still renewed, and the stalled one's
      // failure put nothing back in the queue (before: the job was queued and claimed a third time).
      await new Promise((r) => setTimeout(r, 5_000));
      expect(attempts).toHaveBeenCalledTimes(2);
      const [row] = await t.dataSource.query(`SELECT status, attempts, locked_by, locked_until > now() AS held FROM jobs WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(row).toEqual({ status: 'running', attempts: 2, locked_by: live.locked_by, held: true });
    } finally {
      unstall?.();
      finishSecond?.();
      await t.close();
    }
  }, 30_000);

  it("a claim is named on its job apart from this process's other claims of it: a stale claim's writes (end, retry, wait, batch mark, plan, renewal) change nothing", async () => {
    const t = await createTestApp({ ...providerEnv(fake), WORKERS_ENABLED: 'false' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      const queue = t.app.get(JobQueue);
      await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(6, 'zh').text }).expect(202);
      const mine = async () => (await queue.claim(5, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
      const [stale] = await mine();
      await t.dataSource.query(`UPDATE jobs SET locked_until = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
      await t.app.get(GradingService).recoverInterrupted();
      const [live] = await mine();
      expect(live.id).toBe(stale.id);
      expect(live.holder).not.toBe(stale.holder);
      const row = async () => (await t.dataSource.query(`SELECT status, attempts, locked_by, in_batch, plan, locked_until FROM jobs WHERE id = $1`, [live.id]))[0];
      const before = await row();
      const plan = { mode: 'off_peak' as const, startAt: new Date(Date.now() + 3_600_000).toISOString(), model: 'deepseek:deepseek-chat', window: null, plannedAt: new Date().toISOString(), firstPlannedAt: new Date().toISOString() };
      expect(await queue.retryLater(stale, 'stalled', 3_600_000)).toBe(false);
      expect(await queue.defer(stale, plan)).toBe(false);
      await queue.markInBatch(stale, true);
      await queue.recordPlan(stale, plan);
      await queue.heartbeat([stale], 3_600_000);
      expect(await queue.release([stale])).toEqual([]);
      expect(await t.dataSource.transaction((tx) => queue.complete(tx, stale))).toBe(false);
      expect(await t.dataSource.transaction((tx) => queue.fail(tx, stale, 'stalled'))).toBe(false);
      expect(await row()).toEqual(before);
      // The live claim's own writes go through.
      await queue.heartbeat([live], 3_600_000);
      expect((await row()).locked_until.getTime()).toBeGreaterThan(before.locked_until.getTime());
      expect(await t.dataSource.transaction((tx) => queue.complete(tx, live))).toBe(true);
    } finally {
      await t.close();
    }
  });

  it("tells a school an unexpected error's words never: a failed essay and a refunded deep review say the service failed, the log has the error", async () => {
    const t = await createTestApp({ ...providerEnv(fake), WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '20', JOB_MAX_ATTEMPTS: '1' });
    try {
      const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
      const admin = bearer(tenant.adminKey);
      await t.http.put('/v1/billing/settings').set(admin).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
      const [graded] = await waitForEssays(t.app, tenant.adminKey, [(await t.http.post('/v1/essays').set(admin).send({ text: generateEssay(23, 'zh').text }).expect(202)).body.id]);
      // The database (or a driver) fails in a way the service does not expect, with words of its own.
      const internal = () => Promise.reject(new Error('relation "tenant_secrets_backup" does not exist at pg_internal.c:42'));
      const grading = t.app.get(GradingService);
      const spies = [jest.spyOn(grading, 'grade').mockImplementation(internal), jest.spyOn(grading, 'deepReview').mockImplementation(internal)];
      try {
        const { body: order } = await t.http.post(`/v1/essays/${graded.id}/deep-review`).set(admin).expect(202);
        const [failed] = await waitForEssays(t.app, tenant.adminKey, [(await t.http.post('/v1/essays').set(admin).send({ text: generateEssay(24, 'zh').text }).expect(202)).body.id]);
        expect(failed.failure).toEqual({ code: 'GRADING_FAILED', reason: 'an internal error of the service (logged; send the essay again)' });
        await waitFor(async () => (await t.http.get(`/v1/orders/${order.orderId}`).set(admin)).body.status === 'refunded', 10_000, 'order refunded');
        const refunded = (await t.http.get(`/v1/orders/${order.orderId}`).set(admin).expect(200)).body;
        expect(refunded.refundReason).toBe('every premium model failed: an internal error of the service (logged; send the essay again)');
        expect(JSON.stringify([failed, refunded])).not.toContain('tenant_secrets_backup');
      } finally {
        spies.forEach((s) => s.mockRestore());
      }
    } finally {
      await t.close();
    }
  });

  it('fails the essay and refunds the paid order of jobs whose worker died on their last attempt, charging nothing more', async () => {
    const t = await createTestApp({ ...providerEnv(fake), WORKER_POLL_MS: '50', JOB_LEASE_MS: '2000', JOB_MAX_ATTEMPTS: '2' });
    try {
      const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
      const admin = bearer(tenant.adminKey);
      await t.http.put('/v1/billing/settings').set(admin).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
      const first = await t.http.post('/v1/essays').set(admin).send({ text: generateEssay(20, 'zh').text }).expect(202);
      const [graded] = await waitForEssays(t.app, tenant.adminKey, [first.body.id]);
      expect(graded.status).toBe('graded');
      // With the workers stopped, a paid deep review and a new essay wait in the queue...
      await t.app.get(GradingWorker).stop(0);
      const { body: order } = await t.http.post(`/v1/essays/${graded.id}/deep-review`).set(admin).expect(202);
      expect(order.status).toBe('paid');
      const second = await t.http.post('/v1/essays').set(admin).send({ text: generateEssay(21, 'zh').text }).expect(202);
      // ...and are taken by a worker that dies on their last attempt: its lease runs out.
      const taken = rowsOf<{ kind: string }>(await t.dataSource.query(
        `UPDATE jobs SET status = 'running', attempts = max_attempts, locked_by = 'dead-worker', locked_until = now() - interval '1 second'
          WHERE tenant_id = $1 AND status = 'queued' RETURNING kind`,
        [tenant.tenantId],
      ));
      expect(taken.map((j) => j.kind).sort()).toEqual(['deep_review', 'grade']);
      const ledgerRows = async () => (await t.dataSource.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]))[0].n;
      const callsBefore = await ledgerRows();
      const requestsBefore = fake.requestCount;

      t.app.get(GradingWorker).start();
      const [failed] = await waitForEssays(t.app, tenant.adminKey, [second.body.id]);
      expect(failed.status).toBe('failed');
      expect(failed.failure).toEqual({ code: 'GRADING_FAILED', reason: 'grading was interrupted too many times' });
      await waitFor(async () => (await t.http.get(`/v1/orders/${order.orderId}`).set(admin)).body.status === 'refunded', 10_000, 'order refunded');
      const refunded = await t.http.get(`/v1/orders/${order.orderId}`).set(admin).expect(200);
      expect(refunded.body.refundReason).toBe('the deep review was interrupted too many times');
      expect(await jobs(t, tenant.tenantId)).toEqual(
        expect.arrayContaining([
          { status: 'done', attempts: 1, locked_by: null },
          { status: 'failed', attempts: 2, locked_by: null },
          { status: 'failed', attempts: 2, locked_by: null },
        ]),
      );
      // The first essay keeps its grade; no model was called and nothing was charged for the failed jobs.
      const [kept] = await waitForEssays(t.app, tenant.adminKey, [graded.id]);
      expect(kept.status).toBe('graded');
      expect(kept.grade.score).toBe(graded.grade.score);
      expect(fake.requestCount).toBe(requestsBefore);
      expect(await ledgerRows()).toBe(callsBefore);
    } finally {
      await t.close();
    }
  }, 60_000);

  // Server only: two sessions at once (the embedded database runs one transaction at a time).
  (serverUrl() ? it : it.skip)("keeps a job handed back to the queue out of other workers' reach until its essay is queued again", async () => {
    // Before: the job was released in one statement and the essay put back to queued in the next;
    // between the two another instance could claim the job and start the essay, and the late
    // requeue then put it back to queued under that running job, whose grade could not be stored.
    const t = await createTestApp({ ...providerEnv(fake), WORKERS_ENABLED: 'false' });
    try {
      const ds = t.dataSource;
      const tenant = await new Factory(t.app).newTenant();
      await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(3, 'zh').text }).expect(202);
      const queue = t.app.get(JobQueue);
      const [job] = (await queue.claim(10, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
      expect(await t.app.get(EssaysRepository).startGrading(ds.manager, tenant.tenantId, job.essayId)).not.toBeNull();
      // Another instance's queue (a worker id of its own).
      const other = new JobQueue(ds, t.app.get(CONFIG));
      const othersClaim = async () => (await other.claim(10, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
      const status = async () => (await ds.query(`SELECT status FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, job.essayId]))[0].status;
      await withHeldTransactions(ds, 1, async ([held]) => {
        // The essay's row is held elsewhere: the hand-back stops between its two writes.
        await held.query(`SELECT 1 FROM essays WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenant.tenantId, job.essayId]);
        const handing = t.app.get(GradingService).returnToQueue([job]);
        await waitFor(async () => (await sessionsWaitingForLocks(ds)) === 1, 10_000, 'the hand-back waiting for the essay');
        expect(await othersClaim()).toEqual([]);
        await held.rollbackTransaction();
        expect(await handing).toBe(1);
      });
      expect(await status()).toBe('queued');
      const [again] = await othersClaim();
      expect(again?.id).toBe(job.id);
      expect(await t.app.get(EssaysRepository).startGrading(ds.manager, tenant.tenantId, job.essayId)).not.toBeNull();
      expect(await status()).toBe('grading');
    } finally {
      await t.close();
    }
  });

  it('on shutdown finishes what it can and returns the rest to the queue, which another instance then grades', async () => {
    const env = { ...providerEnv(fake), WORKER_POLL_MS: '50', WORKER_CONCURRENCY: '4', SHUTDOWN_GRACE_MS: '300' };
    const t = await createTestApp({ ...env, WORKERS_ENABLED: 'false' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      fake.setLatency(3_000);
      const res = await t.http
        .post('/v1/essays/batch')
        .set(bearer(tenant.adminKey))
        .send({ essays: Array.from({ length: 6 }, (_, i) => ({ text: generateEssay(10 + i, 'zh').text })) })
        .expect(202);
      const worker = await t.another({ ...env, WORKERS_ENABLED: 'true' });
      await waitFor(async () => (await jobs(t, tenant.tenantId)).filter((j: { status: string }) => j.status === 'running').length === 4);
      await worker.get(GradingWorker).stop();
      const after = await jobs(t, tenant.tenantId);
      expect(after.every((j: { status: string; locked_by: string | null }) => j.status === 'queued' && j.locked_by === null)).toBe(true);
      expect(after.every((j: { attempts: number }) => j.attempts === 0)).toBe(true); // an interrupted attempt does not count
      await worker.close();
      fake.setLatency(0);
      const rescuer = await t.another({ ...env, WORKER_CONCURRENCY: '8', WORKERS_ENABLED: 'true' });
      const views = await waitForEssays(t.app, tenant.adminKey, res.body.ids);
      expect(views.every((v) => v.status === 'graded')).toBe(true);
      await rescuer.close();
      const budget = t.app.get(BudgetService);
      await budget.sweep();
      const [period] = await t.dataSource.query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(period.reserved_nanos).toBe('0');
    } finally {
      await t.close();
    }
  }, 60_000);

  it("keeps renewing the leases of the gradings it finishes during a stop's grace: another instance does not take them over", async () => {
    const env = { ...providerEnv(fake), LLM_FIRST_BYTE_TIMEOUT_MS: '10000', LLM_TOTAL_TIMEOUT_MS: '15000', WORKER_POLL_MS: '50', JOB_LEASE_MS: '1500', SHUTDOWN_GRACE_MS: '10000' };
    const t = await createTestApp({ ...env, WORKERS_ENABLED: 'false' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      fake.setLatency(3_500);
      // Both instances up before the essay comes (an instance's start can take longer than the call
      // on a loaded machine); the one that claims it is stopped, the other's recovery runs meanwhile.
      const instances = [await t.another({ ...env, WORKERS_ENABLED: 'true' }), await t.another({ ...env, WORKERS_ENABLED: 'true' })];
      const res = await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(21, 'zh').text }).expect(202);
      await waitFor(async () => fake.requests.length === 1, 10_000, 'the grading at the provider');
      const worker = instances.find((i) => i.get(GradingWorker).active === 1)!;
      const rescuer = instances.find((i) => i !== worker)!;
      // The stop waits for the grading (3.5 s, more than twice the lease).
      expect(worker?.get(GradingWorker).active).toBe(1); // (still under way: else the stop had nothing to wait for)
      const stopping = Date.now();
      await worker.get(GradingWorker).stop();
      expect(Date.now() - stopping).toBeGreaterThan(1_500); // it outlasted the lease
      fake.setLatency(0);
      const [view] = await waitForEssays(t.app, tenant.adminKey, [res.body.id]);
      expect(view.status).toBe('graded');
      // Finished by the instance that made the call, on its one attempt: never taken over.
      expect(await jobs(t, tenant.tenantId)).toEqual([{ status: 'done', attempts: 1, locked_by: null }]);
      await rescuer.close();
      await worker.close();
    } finally {
      fake.setLatency(0);
      await t.close();
    }
  }, 60_000);

  it("waits on its last attempt for the call an earlier attempt still has at a provider (no attempt spent), then takes its answer: graded, paid once", async () => {
    const env = { ...providerEnv(fake), LLM_FIRST_BYTE_TIMEOUT_MS: '10000', LLM_TOTAL_TIMEOUT_MS: '15000', WORKER_POLL_MS: '50', JOB_MAX_ATTEMPTS: '2', JOB_RETRY_BASE_MS: '100' };
    const t = await createTestApp({ ...env, WORKERS_ENABLED: 'false' });
    try {
      const tenant = await new Factory(t.app).newTenant();
      fake.setLatency(3_000);
      // Two instances that take one job at a time, both up before the essay comes: the one that makes
      // the first attempt is busy with it, so the other claims the job when it is back in the queue.
      const one = { ...env, WORKERS_ENABLED: 'true', WORKER_CONCURRENCY: '1' };
      const [first, second] = [await t.another(one), await t.another(one)];
      const res = await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(22, 'zh').text }).expect(202);
      await waitFor(async () => fake.requests.length === 1, 10_000, 'the first attempt at the provider');
      // Its worker is taken for dead (as after a stall): the job goes back to the queue, its attempt
      // counted, and the other instance's claim is its last.
      const taken = await t.dataSource.query(`UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, run_after = now() WHERE tenant_id = $1 AND status = 'running' RETURNING id`, [tenant.tenantId]);
      expect(rowsOf(taken)).toHaveLength(1); // (the first call still under way)
      const [view] = await waitForEssays(t.app, tenant.adminKey, [res.body.id], 30_000);
      await second.close();
      await first.close();
      expect(view.status).toBe('graded');
      expect(fake.requests).toHaveLength(1);
      const [job] = await jobs(t, tenant.tenantId);
      expect(job).toMatchObject({ status: 'done', attempts: 2 });
      await expectBooksBalanced(t.dataSource, tenant.tenantId);
    } finally {
      fake.setLatency(0);
      await t.close();
    }
  }, 60_000);

  it('grades every essay exactly once when a worker process is killed mid-batch while a second instance runs', async () => {
    const env = {
      ...providerEnv(fake),
      WORKER_POLL_MS: '50',
      WORKER_CONCURRENCY: '6',
      JOB_LEASE_MS: '2000',
      BUDGET_RESERVATION_TTL_MS: '1000',
      BUDGET_SWEEP_INTERVAL_MS: '500',
    };
    const t = await createTestApp({ ...env, WORKERS_ENABLED: 'false' });
    const doomed = await startService({ INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, DATABASE_URL: t.config.databaseUrl!, LOG_LEVEL: 'warn', ...env }, await freePort());
    try {
      const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
      fake.setLatency(400);
      const res = await t.http
        .post('/v1/essays/batch')
        .set(bearer(tenant.adminKey))
        .send({ essays: Array.from({ length: 40 }, (_, i) => ({ text: generateEssay(100 + i, 'zh').text, studentRef: `k${i}` })) })
        .expect(202);
      // The doomed process works alone for a while, then a second instance joins.
      await waitFor(async () => {
        const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1 AND status = 'graded'`, [tenant.tenantId]);
        return n >= 5;
      }, 20_000);
      // Slower answers from now on: work is left for the second instance to find however fast the
      // machine (at 400 ms the doomed process alone finished all 40 while the second one started).
      fake.setLatency(1_000);
      const second = await t.another({ ...env, WORKERS_ENABLED: 'true' });
      await waitFor(async () => (await jobs(t, tenant.tenantId)).some((j: { status: string; locked_by: string }) => j.status === 'running'), 5_000);
      await doomed.stop('SIGKILL');
      const views = await waitForEssays(t.app, tenant.adminKey, res.body.ids, 60_000);
      expect(views.map((v) => v.status)).toEqual(Array(40).fill('graded'));
      // Exactly once: one finished job per essay, one grade each, every grade valid.
      const js = await jobs(t, tenant.tenantId);
      expect(js).toHaveLength(40);
      expect(js.every((j: { status: string }) => j.status === 'done')).toBe(true);
      const graded = await t.dataSource.query(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1 AND graded_at IS NOT NULL`, [tenant.tenantId]);
      expect(graded[0].n).toBe(40);
      // No reservation is left behind, and the ledger still sums to the spend.
      await waitFor(async () => {
        await t.app.get(BudgetService).sweep();
        const [p] = await t.dataSource.query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
        return p.reserved_nanos === '0';
      }, 10_000);
      await expectBooksBalanced(t.dataSource, tenant.tenantId);
      // A grading the killed process had paid for but not stored is not paid for twice: the retry hits the cache.
      const calls = await t.dataSource.query(
        `SELECT essay_id, count(*) FILTER (WHERE cache_status = 'miss' AND outcome = 'ok')::int AS paid FROM llm_calls WHERE tenant_id = $1 GROUP BY essay_id`,
        [tenant.tenantId],
      );
      expect(calls.every((c: { paid: number }) => c.paid <= 1)).toBe(true);
      await second.close();
    } finally {
      if (!hasExited(doomed.child)) await doomed.stop('SIGKILL');
      await t.close();
    }
  }, 120_000);
});
