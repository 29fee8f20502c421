import { randomUUID } from 'node:crypto';
import { BudgetService } from '../src/billing/budget.service';
import { Clock } from '../src/common/clock';
import { EssayErasure } from '../src/grading/essay-erasure.service';
import { MetricsService } from '../src/metrics/metrics.service';
import { GatewayService } from '../src/llm/gateway.service';
import { GradingWorker } from '../src/grading/grading.worker';
import { LLM_MODELS, LlmModels } from '../src/llm/llm-models';
import { ProviderError } from '../src/llm/types';
import type { LedgerEntry } from '../src/billing/ledger.service';
import type { FakeProvider } from './fake-provider/fake-provider';
import { appWithFakeForSuite } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';
import { providerEnv } from './support/providers';
import { freePort, hasExited, startService } from './support/spawn-service';
import { OPERATOR_TOKEN, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * A paid deep review waits in a provider batch for hours. When the instance that sent it stops
 * (a deploy) or dies, the batch is not paid for again: the job's retry, on another instance, takes
 * the call over with its reservation and waits for the same batch.
 */
describe('a deep review waiting in a provider batch outlives the instance that sent it', () => {
  /** The instances' settings; the suite's own app serves the API only, the others run the workers. */
  const ENV = {
    WORKER_POLL_MS: '50',
    SHUTDOWN_GRACE_MS: '200',
    LLM_BATCH_WINDOW_MS: '100',
    LLM_BATCH_POLL_MS: '100',
    JOB_LEASE_MS: '2000',
    LLM_BATCH_MAX_WAIT_MS: '60000',
  };
  const suite = appWithFakeForSuite({ ...ENV, WORKERS_ENABLED: 'false' });
  let fake: FakeProvider;
  let t: TestApp;
  let tenant: TestTenant;
  let teacher: string;
  /** An instance with workers, on the suite's database and fake provider. */
  const worker = (more: Record<string, string> = {}) => t.another({ WORKERS_ENABLED: 'true', ...more });

  beforeEach(async () => {
    ({ fake, t } = suite);
    fake.reset();
    ({ tenant, teacher } = await suite.tenantWithTeacher());
    await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
  });

  const ds = () => t.dataSource;
  const view = async (id: string) => (await t.http.get(`/v1/essays/${id}`).set(bearer(teacher)).expect(200)).body;
  const deepRows = () =>
    ds().query(`SELECT batch, outcome, error_reason, cost_nanos FROM llm_calls WHERE tenant_id = $1 AND purpose = 'deep_review' ORDER BY created_at`, [tenant.tenantId]);
  const batchedGuards = () => ds().query(`SELECT batch_id, state FROM call_guards WHERE tenant_id = $1 AND batch_id IS NOT NULL`, [tenant.tenantId]);
  /** A graded essay (by `worker`'s workers), its deep review ordered and sent in a batch that ends `batchMs` after it was created. */
  const orderIntoBatch = async (seed: number, batchMs: number, order: { dueBy?: string } = {}) => {
    const sub = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(seed, 'zh').text }).expect(202);
    await waitForEssays(t.app, teacher, [sub.body.id], 20_000);
    fake.setBatchLatency(batchMs);
    await t.http.post(`/v1/essays/${sub.body.id}/deep-review`).set(bearer(teacher)).send(order).expect(202);
    // The batch is created and named on the call's guard.
    await waitFor(async () => (await batchedGuards()).length === 1, 15_000, 'the batch named on the guard');
    return sub.body.id as string;
  };
  /** The deep review delivered from the one batch: no second batch, no real-time call, one ledger row, nothing left reserved, the files deleted. */
  const expectDeliveredOnce = async (id: string) => {
    await waitFor(async () => (await view(id)).deepReview?.status === 'delivered', 30_000, 'the deep review delivered');
    expect(fake.batches).toHaveLength(1);
    expect(fake.batches[0].status).toBe('completed');
    expect(fake.requests.filter((r) => r.batchId)).toHaveLength(1);
    expect(fake.requests.filter((r) => !r.batchId && /qwen3-max|glm-5\.3$/.test(String(r.body.model)))).toHaveLength(0);
    const rows = await deepRows();
    expect(rows.map((r: { batch: boolean; outcome: string }) => [r.batch, r.outcome])).toEqual([[true, 'ok']]);
    expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n);
    const { spent } = await expectBooksBalanced(ds(), tenant.tenantId);
    expect(spent).toBeGreaterThanOrEqual(BigInt(rows[0].cost_nanos));
    const [p] = await ds().query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(p.reserved_nanos).toBe('0');
    await waitFor(() => fake.files.length === 0, 10_000, "the batch's files deleted at the provider");
  };

  it('on a stop, hands the batch over instead of cancelling it; the next instance waits for the same batch and settles it once', async () => {
    const sender = await worker();
    const counted = (app: typeof sender) => {
      const registry = app.get(MetricsService).registry;
      return async (event: string) => Number(new RegExp(`event="${event}"} (\\d+)`).exec(await registry.getSingleMetricAsString('inkstone_llm_batch_calls_handed_over_total'))?.[1] ?? 0);
    };
    const senderCount = counted(sender);
    const id = await orderIntoBatch(31, 12_000);
    await sender.close();
    expect(await senderCount('handed_over')).toBe(1);
    // Back in the queue, the interrupted attempt not counted.
    const [job] = await ds().query(`SELECT status, attempts, locked_by FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
    expect(job).toEqual({ status: 'queued', attempts: 0, locked_by: null });
    // Handed over: the batch still runs, its call still in flight with its reservation, nothing settled.
    expect(fake.batches.map((b) => b.status)).not.toContain('cancelling');
    expect(fake.batches.map((b) => b.status)).not.toContain('cancelled');
    expect(await batchedGuards()).toEqual([{ batch_id: fake.batches[0].id, state: 'in_flight' }]);
    expect(await deepRows()).toEqual([]);
    const [held] = await ds().query(`SELECT count(*)::int AS n FROM budget_reservations WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(held.n).toBe(1);
    expect(fake.files.length).toBeGreaterThan(0); // the upload is kept for the batch

    const taker = await worker();
    try {
      await expectDeliveredOnce(id);
      expect(await counted(taker)('taken_over')).toBe(1);
    } finally {
      await taker.close();
    }
  }, 90_000);

  it("the next instance takes the batch over whichever model it would try first: the batch's model's breaker open there, or another model first", async () => {
    const sender = await worker();
    const id = await orderIntoBatch(32, 6_000);
    await sender.close();
    // On the next instance the batch's model is failing (its breaker open for a minute): it would go to the next deep model first.
    const taker = await worker({ WORKERS_ENABLED: 'false', LLM_BREAKER_COOLDOWN_MS: '60000' });
    try {
      // (The deep tier here: dashscope:qwen3-max, then zhipu:glm-5.3; the batch went to the first.)
      const batched = taker.get<LlmModels>(LLM_MODELS).catalog.models.get('dashscope:qwen3-max')!;
      const gateway = taker.get(GatewayService) as unknown as { health: { failed(m: unknown, e: ProviderError): void; allow(m: unknown): boolean } };
      for (let i = 0; i < 10 && gateway.health.allow(batched); i++) gateway.health.failed(batched, new ProviderError('retryable', 'server_error', 'test'));
      expect(gateway.health.allow(batched)).toBe(false);
      taker.get(GradingWorker).start();
      await expectDeliveredOnce(id);
      // The batch's answer says nothing of the model's real-time health: its breaker stays open for everyone's calls.
      expect(gateway.health.allow(batched)).toBe(false);
    } finally {
      await taker.close();
    }
  }, 90_000);

  it('refuses to erase an essay whose deep review waits in a batch handed over (409, nothing cancelled); once delivered, erases it', async () => {
    const sender = await worker();
    const id = await orderIntoBatch(37, 6_000);
    await sender.close();
    const [job] = await ds().query(`SELECT status FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
    expect(job).toEqual({ status: 'queued' });
    // Queued, but its call is at the provider: erasing now would leave its reservation held and the line billed for nothing.
    const refused = await t.http.delete(`/v1/essays/${id}`).set(bearer(tenant.adminKey)).expect(409);
    expect(refused.body.error.code).toBe('CONFLICT');
    expect(await batchedGuards()).toEqual([{ batch_id: fake.batches[0].id, state: 'in_flight' }]);
    const [still] = await ds().query(`SELECT status FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
    expect(still).toEqual({ status: 'queued' });
    const taker = await worker();
    try {
      await expectDeliveredOnce(id);
    } finally {
      await taker.close();
    }
    await t.http.delete(`/v1/essays/${id}`).set(bearer(tenant.adminKey)).expect(200);
    await expectBooksBalanced(ds(), tenant.tenantId);
  }, 90_000);

  it('erases an essay whose batched call no job will take over (its job failed), and one replayed after a restore, at once', async () => {
    const sender = await worker();
    const id = await orderIntoBatch(38, 6_000);
    await sender.close();
    // A replay after a restore erases it, the job waiting or not (it must finish before the service serves).
    const replayed = await t.app.get(EssayErasure).eraseFor(tenant.tenantId, id, null, 'reapplied');
    expect(replayed.again).toBe(false);
    // Another: its job failed on its last attempt while the call waited; the guard is a leftover.
    // (the first essay's guard went with it: the second batch's is the only one named)
    const again = await worker();
    const other = await orderIntoBatch(39, 6_000);
    await again.close();
    await ds().query(`UPDATE jobs SET status = 'failed', locked_by = NULL, locked_until = NULL WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, other]);
    await t.http.delete(`/v1/essays/${other}`).set(bearer(tenant.adminKey)).expect(200);
  }, 90_000);

  it("a deep review with a deadline sent in a batch is waited for there after a stop, even when the retry's own plan would now run it in real time: paid once", async () => {
    // Due in two hours: with this suite's 60-second batch turnaround (LLM_BATCH_MAX_WAIT_MS) and
    // the 30-minute margin, the first plan is the Batch API.
    const sender = await worker();
    const id = await orderIntoBatch(34, 10_000, { dueBy: new Date(Date.now() + 2 * 3_600_000).toISOString() });
    const [planned] = await ds().query(`SELECT plan->>'mode' AS mode FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
    expect(planned.mode).toBe('batch');
    await sender.close();
    // The next instance comes up 100 minutes later (by its clock): too late for a batch planned now,
    // so its plan for the retry is real time; the batch already sent still runs and will be billed.
    const later = jest.spyOn(Clock.prototype, 'now').mockImplementation(() => new Date(Date.now() + 100 * 60_000));
    let taker: Awaited<ReturnType<TestApp['another']>> | undefined;
    try {
      taker = await worker();
      await waitFor(async () => (await ds().query(`SELECT plan->>'mode' AS mode FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]))[0].mode === 'now', 15_000, 'the retry planned');
      await expectDeliveredOnce(id);
    } finally {
      later.mockRestore();
      await taker?.close();
    }
  }, 90_000);

  it("a deep review waiting in a provider batch takes no place in the instance's pool: another school's deep review due soon is delivered meanwhile", async () => {
    const w = await worker({ DEEP_REVIEW_CONCURRENCY: '1' });
    try {
      const id = await orderIntoBatch(35, 12_000);
      const other = await suite.tenantWithTeacher();
      await t.http.put('/v1/billing/settings').set(bearer(other.tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
      const sub = await t.http.post('/v1/essays').set(bearer(other.teacher)).send({ text: generateEssay(36, 'zh').text }).expect(202);
      await waitForEssays(t.app, other.teacher, [sub.body.id], 20_000);
      // Due in 20 minutes, within the 30-minute margin: real time, now.
      await t.http.post(`/v1/essays/${sub.body.id}/deep-review`).set(bearer(other.teacher)).send({ dueBy: new Date(Date.now() + 20 * 60_000).toISOString() }).expect(202);
      const otherView = async () => (await t.http.get(`/v1/essays/${sub.body.id}`).set(bearer(other.teacher)).expect(200)).body;
      await waitFor(async () => (await otherView()).deepReview?.status === 'delivered', 8_000, "the other school's deep review delivered");
      expect(fake.batches.map((b) => b.status)).toEqual(['in_progress']); // the first school's still waits
      await waitFor(async () => (await view(id)).deepReview?.status === 'delivered', 30_000, 'the batched deep review delivered');
      expect((await deepRows()).map((r: { batch: boolean; outcome: string }) => [r.batch, r.outcome])).toEqual([[true, 'ok']]);
      const [job] = await ds().query(`SELECT status, in_batch FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
      expect(job).toEqual({ status: 'done', in_batch: false });
    } finally {
      await w.close();
    }
  }, 90_000);

  it("a deep review whose waiting-in-a-batch mark the database refuses is still delivered once from its batch, its job's mark clear when done", async () => {
    // The database refuses the mark's writes, and only them: a running job's in_batch changed while it stays running.
    await ds().query(`CREATE OR REPLACE FUNCTION test_refuse_in_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'in_batch write refused (test)'; END $$`);
    await ds().query(
      `CREATE TRIGGER test_refuse_in_batch BEFORE UPDATE ON jobs FOR EACH ROW
         WHEN (OLD.status = 'running' AND NEW.status = 'running' AND OLD.in_batch IS DISTINCT FROM NEW.in_batch) EXECUTE FUNCTION test_refuse_in_batch()`,
    );
    const w = await worker();
    try {
      const id = await orderIntoBatch(37, 3_000);
      // While the batch runs the job holds its place as any running job does (the mark was not written).
      const [waiting] = await ds().query(`SELECT status, in_batch FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
      expect(waiting).toEqual({ status: 'running', in_batch: false });
      await expectDeliveredOnce(id);
      const [job] = await ds().query(`SELECT status, in_batch, attempts FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
      expect(job).toEqual({ status: 'done', in_batch: false, attempts: 1 });

      // Now only the mark's clearing is refused (the batch's answer came back): the job ends all the same, its mark cleared with it.
      await ds().query(`DROP TRIGGER test_refuse_in_batch ON jobs`);
      await ds().query(
        `CREATE TRIGGER test_refuse_in_batch BEFORE UPDATE ON jobs FOR EACH ROW
           WHEN (OLD.status = 'running' AND NEW.status = 'running' AND OLD.in_batch AND NOT NEW.in_batch) EXECUTE FUNCTION test_refuse_in_batch()`,
      );
      fake.reset();
      const second = await orderIntoBatch(38, 3_000);
      const jobOf = async () =>
        (await ds().query(`SELECT j.status, j.in_batch FROM jobs j JOIN orders o ON o.tenant_id = j.tenant_id AND o.id = j.order_id WHERE o.tenant_id = $1 AND o.essay_id = $2`, [tenant.tenantId, second]))[0];
      await waitFor(async () => (await jobOf()).in_batch === true, 5_000, 'the second job marked waiting in its batch');
      await waitFor(async () => (await view(second)).deepReview?.status === 'delivered', 30_000, 'the second deep review delivered');
      await waitFor(async () => (await jobOf()).status === 'done', 5_000, 'the second job done');
      expect(await jobOf()).toEqual({ status: 'done', in_batch: false });
    } finally {
      await ds().query(`DROP TRIGGER IF EXISTS test_refuse_in_batch ON jobs`);
      await ds().query(`DROP FUNCTION IF EXISTS test_refuse_in_batch()`);
      await w.close();
    }
  }, 60_000);

  it('a stop hands a waiting batch over at once: the drain does not wait out its grace for a batch that takes hours', async () => {
    // A grace longer than this test's own timeout: a drain that waited for the batch would fail it.
    const sender = await worker({ SHUTDOWN_GRACE_MS: '600000' });
    const id = await orderIntoBatch(36, 12_000);
    await sender.close();
    expect(fake.batches.map((b) => b.status)).not.toContain('cancelled');
    const [job] = await ds().query(`SELECT status, attempts FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review'`, [tenant.tenantId]);
    expect(job).toEqual({ status: 'queued', attempts: 0 });
    const taker = await worker();
    try {
      await expectDeliveredOnce(id);
    } finally {
      await taker.close();
    }
  }, 60_000);

  it('when the batch cannot be named on its calls, a stop cancels it as before and the next instance sends the call again: charged once', async () => {
    const sender = await worker();
    jest.spyOn(sender.get(BudgetService), 'markBatched').mockRejectedValueOnce(new Error('connection terminated'));
    const sub = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(34, 'zh').text }).expect(202);
    await waitForEssays(t.app, teacher, [sub.body.id], 20_000);
    fake.setBatchLatency(60_000);
    await t.http.post(`/v1/essays/${sub.body.id}/deep-review`).set(bearer(teacher)).expect(202);
    await waitFor(() => fake.batches.length === 1, 15_000, 'the batch created');
    await sender.close();
    expect(fake.batches.map((b) => b.status)).toEqual(['cancelled']);
    expect(await batchedGuards()).toEqual([]);
    fake.setBatchLatency(0);
    const taker = await worker();
    try {
      await waitFor(async () => (await view(sub.body.id)).deepReview?.status === 'delivered', 30_000, 'the deep review delivered');
      const rows = await deepRows();
      // Paid once: the line the cancelled batch had run is answered from its output (its end waited
      // for); the retry finds that answer in the cache, at no cost.
      expect(rows.filter((r: { outcome: string; cost_nanos: string }) => r.outcome === 'ok' && r.cost_nanos !== '0')).toHaveLength(1);
      expect(rows.filter((r: { outcome: string; cost_nanos: string }) => r.outcome !== 'ok').every((r: { cost_nanos: string }) => r.cost_nanos === '0')).toBe(true);
      await expectBooksBalanced(ds(), tenant.tenantId);
    } finally {
      await taker.close();
    }
  }, 90_000);

  it("keeps a batch's files when it cannot tell whether another call still waits to read them", async () => {
    const sender = await worker();
    const id = await orderIntoBatch(35, 8_000);
    await sender.close();
    const taker = await worker();
    const asked = jest.spyOn(taker.get(BudgetService), 'othersAwaitingBatch').mockRejectedValueOnce(new Error('connection terminated'));
    try {
      await waitFor(async () => (await view(id)).deepReview?.status === 'delivered', 30_000, 'the deep review delivered');
      await waitFor(() => asked.mock.calls.length === 1, 5_000, 'the files question asked');
      expect(fake.files.length).toBeGreaterThan(0); // left to the provider's expiry, logged by the batch's id
      expect((await deepRows()).map((r: { batch: boolean; outcome: string }) => [r.batch, r.outcome])).toEqual([[true, 'ok']]);
    } finally {
      await taker.close();
    }
  }, 90_000);

  it("gives a batch taken over up when its sender would have (LLM_BATCH_MAX_WAIT_MS after its creation): cancelled, and the line it had run answered from its output, charged once at the batch price", async () => {
    const sender = await worker({ LLM_BATCH_MAX_WAIT_MS: '5000' });
    const id = await orderIntoBatch(33, 30_000);
    await sender.close();
    const taker = await worker({ LLM_BATCH_MAX_WAIT_MS: '5000' });
    try {
      await waitFor(async () => (await view(id)).deepReview?.status === 'delivered', 30_000, 'the deep review delivered');
      expect(fake.batches.map((b) => b.status)).toEqual(['cancelled']);
      const rows = await deepRows();
      // (Its cancelling waited for: a line the provider ran and billed is not made again in real time.)
      expect(rows.map((r: { batch: boolean; outcome: string; error_reason: string | null; cost_nanos: string }) => [r.batch, r.outcome, r.error_reason, r.cost_nanos === '0'])).toEqual([
        [true, 'ok', null, false],
      ]);
      await expectBooksBalanced(ds(), tenant.tenantId);
      const [p] = await ds().query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(p.reserved_nanos).toBe('0');
      // Answered from the batch, as a completed one's call is: its guard says so (nothing left waiting).
      expect((await batchedGuards()).map((g: { state: string }) => g.state)).toEqual(['answered']);
    } finally {
      await taker.close();
    }
  }, 90_000);

  it('after a kill, the job retried elsewhere takes the call over from its guard and waits for the same batch', async () => {
    const doomed = await startService({ INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, DATABASE_URL: t.config.databaseUrl!, LOG_LEVEL: 'warn', ...providerEnv(fake, ENV) }, await freePort());
    let taker: Awaited<ReturnType<TestApp['another']>> | undefined;
    try {
      const id = await orderIntoBatch(32, 10_000);
      await doomed.stop('SIGKILL');
      expect(fake.batches[0].status).not.toBe('cancelled');
      taker = await worker();
      await expectDeliveredOnce(id);
    } finally {
      if (!hasExited(doomed.child)) await doomed.stop('SIGKILL');
      await taker?.close();
    }
  }, 90_000);

  it("after a kill between the batch's creation and its naming, the job's retry finds the batch by its upload and waits for it: paid once", async () => {
    const doomed = await startService({ INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, DATABASE_URL: t.config.databaseUrl!, LOG_LEVEL: 'warn', ...providerEnv(fake, ENV) }, await freePort());
    let taker: Awaited<ReturnType<TestApp['another']>> | undefined;
    try {
      const sub = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(37, 'zh').text }).expect(202);
      await waitForEssays(t.app, teacher, [sub.body.id], 20_000);
      fake.setBatchLatency(3_000);
      // The provider creates the batch but is slow to say so: the sender dies before it learns the batch's id.
      fake.setBatchCreateDelay(60_000);
      await t.http.post(`/v1/essays/${sub.body.id}/deep-review`).set(bearer(teacher)).expect(202);
      await waitFor(() => fake.batches.length === 1, 15_000, 'the batch created at the provider');
      const [named] = await ds().query(
        `SELECT g.batch_id, g.batch_file_id, g.expires_at > now() + interval '55 seconds' AS guard_held, r.expires_at > now() + interval '55 seconds' AS reservation_held
           FROM call_guards g JOIN budget_reservations r ON r.tenant_id = g.tenant_id AND r.id = g.reservation_id
          WHERE g.tenant_id = $1 AND g.batch_provider IS NOT NULL`,
        [tenant.tenantId],
      );
      // Named with the upload, the guard and the reservation now last as long as the batch may (LLM_BATCH_MAX_WAIT_MS 60 s).
      expect(named).toEqual({ batch_id: null, batch_file_id: fake.batches[0].input_file_id, guard_held: true, reservation_held: true });
      await doomed.stop('SIGKILL');
      fake.setBatchCreateDelay(0);
      taker = await worker();
      await expectDeliveredOnce(sub.body.id);
      // The taker named the batch it found on the call's guard.
      expect(await batchedGuards()).toEqual([{ batch_id: fake.batches[0].id, state: 'answered' }]);
    } finally {
      if (!hasExited(doomed.child)) await doomed.stop('SIGKILL');
      await taker?.close();
    }
  }, 90_000);

  it("after a kill while the batch was still being collected (nothing sent), the call's guard runs out with the collection window and the job's retry sends it: paid once", async () => {
    const doomed = await startService(
      { INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, DATABASE_URL: t.config.databaseUrl!, LOG_LEVEL: 'warn', ...providerEnv(fake, { ...ENV, LLM_BATCH_WINDOW_MS: '4000', BUDGET_RESERVATION_TTL_MS: '3000' }) },
      await freePort(),
    );
    let taker: Awaited<ReturnType<TestApp['another']>> | undefined;
    try {
      const sub = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(38, 'zh').text }).expect(202);
      await waitForEssays(t.app, teacher, [sub.body.id], 20_000);
      await t.http.post(`/v1/essays/${sub.body.id}/deep-review`).set(bearer(teacher)).expect(202);
      await waitFor(async () => (await ds().query(`SELECT 1 FROM call_guards WHERE tenant_id = $1 AND essay_id = $2 AND state = 'in_flight'`, [tenant.tenantId, sub.body.id])).length === 1, 15_000, "the deep review's guard taken");
      // Held for the collection window and the reservation TTL (7 s), not for the batch's longest wait (60 s).
      const [held] = await ds().query(`SELECT expires_at < now() + interval '15 seconds' AS short FROM call_guards WHERE tenant_id = $1 AND essay_id = $2 AND state = 'in_flight'`, [tenant.tenantId, sub.body.id]);
      expect(held.short).toBe(true);
      await doomed.stop('SIGKILL');
      expect(fake.files).toEqual([]); // nothing uploaded
      taker = await worker({ BUDGET_SWEEP_INTERVAL_MS: '500' });
      await waitFor(async () => (await view(sub.body.id)).deepReview?.status === 'delivered', 40_000, 'the deep review delivered');
      // The killed process's reservation is swept once it runs out (a row at 0: nothing was sent).
      await waitFor(async () => (await ds().query(`SELECT 1 FROM budget_reservations WHERE tenant_id = $1`, [tenant.tenantId])).length === 0, 20_000, 'the reservations swept');
      expect(fake.batches.map((b) => b.status)).toEqual(['completed']);
      expect(fake.requests.filter((r) => r.batchId)).toHaveLength(1);
      expect(fake.requests.filter((r) => !r.batchId && /qwen3-max|glm-5\.3$/.test(String(r.body.model)))).toHaveLength(0);
      const rows = await deepRows();
      expect(rows.filter((r: { outcome: string }) => r.outcome === 'ok').map((r: { batch: boolean }) => r.batch)).toEqual([true]);
      expect(rows.filter((r: { outcome: string }) => r.outcome !== 'ok').every((r: { cost_nanos: string }) => r.cost_nanos === '0')).toBe(true);
      await expectBooksBalanced(ds(), tenant.tenantId);
    } finally {
      if (!hasExited(doomed.child)) await doomed.stop('SIGKILL');
      await taker?.close();
    }
  }, 90_000);

  it('a sender that outlived its lease settles nothing once its call was taken over: the line is charged once, by the taker', async () => {
    const budget = t.app.get(BudgetService);
    const guard = { key: 'a'.repeat(64), inFlightMs: 60_000 };
    const sent = await budget.reserveGuarded(tenant.tenantId, 5_000_000n, guard, 55_000);
    if (sent.kind !== 'reserved') throw new Error(`not reserved: ${sent.kind}`);
    const r = sent.reservation;
    expect(await budget.markBatched('dashscope', 'batch_x', [{ tenantId: tenant.tenantId, key: guard.key, token: r.guard!.token, line: 'line-1', reservationId: r.id }])).toBe(1);
    // Another tenant's guard of the same key is not named by this batch.
    const other = await new Factory(t.app).newTenant({ monthlyBudget: '10.00' });
    expect(await budget.markBatched('dashscope', 'batch_x', [{ tenantId: other.tenantId, key: guard.key, token: r.guard!.token, line: 'line-1', reservationId: r.id }])).toBe(0);

    const taken = await budget.reserveGuarded(tenant.tenantId, 5_000_000n, guard, 55_000);
    if (taken.kind !== 'adopted') throw new Error(`not taken over: ${taken.kind}`);
    expect(taken.batch).toEqual({ provider: 'dashscope', batchId: 'batch_x', fileId: null, line: 'line-1', reservationId: r.id, guardedAt: expect.any(Number) });
    expect(taken.reservation.id).toBe(r.id);
    expect(taken.reservation.amount).toBe(5_000_000n);

    const entry = (who: string): LedgerEntry => ({
      tenantId: tenant.tenantId,
      requestId: who,
      callGroup: randomUUID(),
      attempt: 1,
      purpose: 'deep_review',
      provider: 'dashscope',
      model: 'qwen3-max',
      cacheStatus: 'miss',
      outcome: 'ok',
      inputTokens: 100,
      cachedInputTokens: 0,
      outputTokens: 50,
      usageSource: 'provider',
      costNanos: 1_000_000n,
      savedNanos: 0n,
      compressionSavedTokens: 0,
      latencyMs: 5,
      streamed: false,
      batch: true,
    });
    const answer = { provider: 'dashscope', model: 'qwen3-max', content: '{}', finishReason: 'stop', inputTokens: 100, cachedInputTokens: 0, outputTokens: 50, costNanos: 1_000_000n };
    // The stale sender settles first: nothing charged, nothing written.
    const stale = await budget.settle({ ...r, guard: { ...r.guard!, batched: true } }, 1_000_000n, entry('stale'), { answer });
    expect(stale).toBe(0n);
    expect(await ds().query(`SELECT 1 FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId])).toHaveLength(0);
    // The taker settles the same line: charged once.
    expect(await budget.settle(taken.reservation, 1_000_000n, entry('taker'), { answer })).toBe(1_000_000n);
    const rows = await ds().query(`SELECT request_id, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(rows).toEqual([{ request_id: 'taker', cost_nanos: '1000000' }]);
    const { spent } = await expectBooksBalanced(ds(), tenant.tenantId);
    expect(spent).toBe(1_000_000n);
    const [p] = await ds().query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(p.reserved_nanos).toBe('0');
    // A retry now replays the answer.
    expect((await budget.reserveGuarded(tenant.tenantId, 5_000_000n, guard, 55_000)).kind).toBe('answered');
  });
});
