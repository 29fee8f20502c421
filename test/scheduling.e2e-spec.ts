import { DataSource } from 'typeorm';
import { Clock } from '../src/common/clock';
import { parseCny } from '../src/common/money';
import { GatewayService } from '../src/llm/gateway.service';
import { FakeProvider } from './fake-provider/fake-provider';
import { gradingAnswer, malformedGrade } from './fake-provider/grading-responder';
import { generateEssay, nearCopy } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { waitFor } from './support/wait';
import { serverUrl } from './support/test-database';
import { sessionsWaitingForLocks, withHeldTransactions } from './support/held-transactions';
import { JobQueue } from '../src/jobs/job-queue';
import { GradingWorker } from '../src/grading/grading.worker';
import { ModelGrader } from '../src/grading/model-grader';
import { EssaysRepository } from '../src/grading/essays.repository';
import { randomUUID } from 'node:crypto';
import { expectBooksBalanced } from './support/books';

/**
 * Off-peak scheduling: work with a deadline runs where it costs least and still in time. The
 * standard tier here is DeepSeek's flash model (peak Monday–Friday 09–12 and 14–18 Beijing time at
 * double price); the deep tier is qwen3-max (half price through the Batch API, 24-hour turnaround).
 * The app's clock is set to a Tuesday morning at peak; the database's clock cannot be moved, so
 * "time passing" is the test moving the waiting job's run_after to now.
 */
/**
 * The scenario's dates, moved forward by whole 52-week steps until they are in the future: the
 * queue compares a job's run_after with the database's real clock, so a scenario day that has
 * passed would make the waiting jobs due at once. 364 days keep the weekday (a Tuesday around
 * 1 December, no public holiday near it).
 */
const STEP_MS = 364 * 86_400_000;
const SHIFT_MS = STEP_MS * Math.max(0, Math.ceil((Date.now() + 3 * 86_400_000 - Date.parse('2026-12-01T10:15:00+08:00')) / STEP_MS));
const beijing = (local: string) => new Date(Date.parse(`${local}+08:00`) + SHIFT_MS);
/** The same, as a deadline to send: an ISO string. */
const due = (local: string) => beijing(local).toISOString();
const TUESDAY_PEAK = beijing('2026-12-01T10:15:00');
const LUNCH_OFF_PEAK = beijing('2026-12-01T12:00:30');
/** qwen3-max in real time, nano-yuan per token: input, cached input, output */
const QWEN3_MAX = { input: 2500n, cached: 500n, output: 10_000n };

describe('off-peak scheduling: class sets and deep reviews with a deadline', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let ds: DataSource;
  let tenant: TestTenant;
  let teacher: string;
  let clock: jest.SpyInstance<Date, []>;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({
      LLM_STANDARD_MODELS: 'deepseek:deepseek-flash',
      LLM_DEEP_MODELS: 'dashscope:qwen3-max',
      LLM_BATCH_WINDOW_MS: '200',
      LLM_BATCH_POLL_MS: '50',
      // The providers' promise: a batch finishes within 24 hours (the plan counts on all of it).
      LLM_BATCH_MAX_WAIT_MS: '86400000',
      WORKER_POLL_MS: '50',
    }));
    f = new Factory(t.app);
    ds = t.dataSource;
    clock = jest.spyOn(t.app.get(Clock), 'now');
  });
  afterAll(async () => {
    clock.mockRestore();
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    clock.mockImplementation(() => new Date(TUESDAY_PEAK));
    fake.reset();
    t.app.get(GatewayService).resetHealth();
    tenant = await f.newTenant({ monthlyBudget: '100.00', timezone: 'Asia/Shanghai' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });

  const assignment = async (dueBy?: string | null) =>
    (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '第三单元', prompt: '以“那一刻”为题写一篇记叙文', rubric: 'zh-gaokao-60', dueBy }).expect(201)).body;
  const submit = async (assignmentId: string, seeds: number[]) =>
    (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId, essays: seeds.map((s) => ({ text: generateEssay(s, 'zh').text })) }).expect(202)).body.ids as string[];
  const view = async (id: string) => (await t.http.get(`/v1/essays/${id}`).set(bearer(teacher)).expect(200)).body;
  const jobsOf = (ids: string[]) =>
    ds.query(`SELECT essay_id, kind, status, attempts, run_after, plan FROM jobs WHERE tenant_id = $1 AND essay_id = ANY($2::uuid[]) ORDER BY created_at`, [tenant.tenantId, ids]);
  const ledger = () =>
    ds.query(`SELECT essay_id, purpose, batch, price_window, cost_nanos, schedule_saved_nanos, input_tokens, cached_input_tokens, output_tokens, outcome FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at`, [
      tenant.tenantId,
    ]);
  /** The tenant's monthly report for the month of its (one) ledger period. */
  const monthReport = async () => {
    const [{ period }] = await ds.query(`SELECT DISTINCT period FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    return (await t.http.get(`/v1/reports/month?period=${period}`).set(bearer(tenant.adminKey)).expect(200)).body;
  };
  const waitGraded = (ids: string[]) =>
    waitFor(async () => (await Promise.all(ids.map(view))).every((v) => v.status === 'graded' || v.status === 'needs_review'), 20_000, 'essays graded');

  it('waits for the off-peak window when the class set is due tomorrow, and says per essay what that saved', async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    expect(a.dueBy).toBe(beijing('2026-12-02T08:00:00').toISOString());
    const ids = await submit(a.id, [11, 12]);

    // A worker plans each: 10:15 is peak; the 12:00 window is half the price and well before the deadline.
    await waitFor(async () => (await jobsOf(ids)).every((j: { plan: unknown; status: string }) => j.plan && j.status === 'queued'), 10_000, 'jobs planned');
    for (const j of await jobsOf(ids)) {
      expect(j.plan).toMatchObject({ mode: 'off_peak', startAt: beijing('2026-12-01T12:00:00').toISOString(), model: 'deepseek:deepseek-flash', firstPlannedAt: TUESDAY_PEAK.toISOString() });
      expect(new Date(j.run_after).toISOString()).toBe(beijing('2026-12-01T12:00:00').toISOString());
      expect(j.attempts).toBe(0); // waiting is not an attempt
    }
    const waiting = await view(ids[0]);
    expect(waiting.status).toBe('queued');
    expect(waiting.schedule).toMatchObject({ dueBy: a.dueBy, plan: { mode: 'off_peak', startAt: beijing('2026-12-01T12:00:00').toISOString() } });
    expect(fake.requests).toHaveLength(0); // no provider call, nothing charged while it waits
    expect((await ledger()).length).toBe(0);

    // Lunchtime: the window is open.
    clock.mockImplementation(() => new Date(LUNCH_OFF_PEAK));
    await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND status = 'queued'`, [tenant.tenantId]);
    await waitGraded(ids);

    const rows = await ledger();
    expect(rows).toHaveLength(2);
    for (const id of ids) {
      const v = await view(id);
      const row = rows.find((r: { essay_id: string }) => r.essay_id === id);
      expect(row.price_window).toBeNull(); // the base (off-peak) price
      // At peak every DeepSeek price is double: the same usage would have cost twice as much at 10:15.
      expect(row.schedule_saved_nanos).toBe(row.cost_nanos);
      // It ran in the window it waited for, and says so.
      expect(v.grade.schedule).toEqual({ dueBy: a.dueBy, mode: 'off_peak', saved: v.grade.cost });
      expect(parseCny(v.grade.schedule.saved)).toBe(BigInt(row.cost_nanos));
      expect(v.schedule.plan).toMatchObject({ mode: 'off_peak', startAt: LUNCH_OFF_PEAK.toISOString() });
    }
    for (const j of await jobsOf(ids)) expect([j.status, j.attempts]).toEqual(['done', 1]);
    // The month's report says what scheduling saved: the essays' savings, to the nano-yuan.
    const report = await monthReport();
    expect(parseCny(report.savedByScheduling)).toBe(rows.reduce((a: bigint, r: { schedule_saved_nanos: string }) => a + BigInt(r.schedule_saved_nanos), 0n));
    expect(report.savedByScheduling).not.toBe('0.00');
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  it("claims no saving on a resubmission that took its earlier grade: no call was made, so it saved nothing (the earlier essay's saving is the earlier essay's)", async () => {
    await t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ reuseResubmissionGrades: true }).expect(200);
    const a = await assignment(due('2026-12-02T08:00:00'));
    const text = generateEssay(31, 'zh').text;
    const [first] = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: a.id, essays: [{ text, studentRef: 'stu-31' }] }).expect(202)).body.ids as string[];
    await waitFor(async () => (await jobsOf([first])).every((j: { plan: unknown }) => j.plan), 10_000, 'job planned');
    clock.mockImplementation(() => new Date(LUNCH_OFF_PEAK));
    await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND status = 'queued'`, [tenant.tenantId]);
    await waitGraded([first]);
    const earlier = (await view(first)).grade;
    expect(earlier.schedule).toMatchObject({ mode: 'off_peak' });
    expect(parseCny(earlier.schedule.saved)).toBeGreaterThan(0n);

    const again = (await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: nearCopy(text, 1, 1), studentRef: 'stu-31', assignmentId: a.id }).expect(202)).body.id as string;
    await waitGraded([again]);
    const reused = await view(again);
    expect(reused.flags).toContain('reused_grade');
    expect(reused.grade.cost).toBe('0.00');
    // Its own deadline and plan, and nothing saved; before, the earlier essay's schedule was copied
    // with its saving, and the essays' savings added up to twice what the month report says.
    expect(reused.grade.schedule).toEqual({ dueBy: a.dueBy, mode: expect.any(String), saved: '0.00' });
    const rows = await ledger();
    expect(rows).toHaveLength(1);
    const report = await monthReport();
    expect(parseCny(report.savedByScheduling)).toBe(parseCny(earlier.schedule.saved) + parseCny(reused.grade.schedule.saved));
  });

  it('keeps, on a grade escalated to the deep tier, what its scheduled standard run saved: the essay says it, and the month report is the sum of the essays', async () => {
    let calls = 0;
    fake.setResponder(({ messages }) => (++calls === 1 ? malformedGrade(messages, 'out_of_range') : gradingAnswer(messages)!));
    const a = (
      await t.http
        .post('/v1/assignments')
        .set(bearer(tenant.adminKey))
        .send({ title: '第三单元', prompt: '以“那一刻”为题写一篇记叙文', rubric: 'zh-gaokao-60', dueBy: due('2026-12-02T08:00:00'), escalate: 'deep' })
        .expect(201)
    ).body;
    const [id] = await submit(a.id, [13]);
    await waitFor(async () => (await jobsOf([id])).every((j: { plan: unknown; status: string }) => j.plan && j.status === 'queued'), 10_000, 'job planned');
    clock.mockImplementation(() => new Date(LUNCH_OFF_PEAK));
    await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND status = 'queued'`, [tenant.tenantId]);
    await waitGraded([id]);
    const v = await view(id);
    expect(v.flags).toContain('escalated');
    expect(v.grade.tier).toBe('deep');
    const rows = await ledger();
    expect(rows.map((r: { purpose: string }) => r.purpose)).toEqual(['grading', 'grading', 'escalation']);
    const saved = rows.reduce((sum: bigint, r: { schedule_saved_nanos: string | null }) => sum + BigInt(r.schedule_saved_nanos ?? 0), 0n);
    expect(saved).toBeGreaterThan(0n);
    // Before, the deep grade took the standard one's place without its schedule: the essay said nothing saved.
    expect(v.grade.schedule).toEqual({ dueBy: a.dueBy, mode: 'off_peak', saved: expect.any(String) });
    expect(parseCny(v.grade.schedule.saved)).toBe(saved);
    expect(parseCny((await monthReport()).savedByScheduling)).toBe(saved);
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  it("shows an essay an interrupted attempt left 'grading' as queued again when its retry waits for the window", async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const [id] = await submit(a.id, [19]);
    await waitFor(async () => (await jobsOf([id]))[0]?.plan?.mode === 'off_peak', 10_000, 'the job planned for the window');
    // A worker killed mid-grading: recovery puts its job back to run now; the essay is left as it was.
    await ds.query(`UPDATE essays SET status = 'grading' WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]);
    await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
    // The retry plans again (still peak here) and waits for the window once more.
    await waitFor(async () => {
      const [j] = await jobsOf([id]);
      return j.status === 'queued' && new Date(j.run_after).getTime() === beijing('2026-12-01T12:00:00').getTime();
    }, 10_000, 'the retry deferred');
    // (the essay is moved just after its job)
    await waitFor(async () => (await view(id)).status === 'queued', 5_000, "the essay shown as queued, not 'grading'");
    expect(fake.requests).toHaveLength(0);
  });

  it("waits for the window on the database's clock when this instance's clock lags behind it: not claimed and deferred again in a loop until it catches up", async () => {
    // This instance's clock 10 seconds before the 12:00 window, on a day the database's clock has
    // passed (not shifted): the database holds 12:00 as past.
    clock.mockImplementation(() => new Date('2026-12-01T11:59:50+08:00'));
    const a = await assignment(new Date('2026-12-02T08:00:00+08:00').toISOString());
    const queue = t.app.get(JobQueue);
    const defer = jest.spyOn(queue, 'defer');
    try {
      const [id] = await submit(a.id, [31]);
      await waitFor(async () => (await jobsOf([id]))[0]?.plan?.mode === 'off_peak', 10_000, 'the job planned for the window');
      await new Promise((r) => setTimeout(r, 3_000));
      // Before: deferred to 12:00 (past for the database), claimed at once, planned for 12:00 again: ~150 times in 3 s.
      expect(defer.mock.calls.length).toBeLessThanOrEqual(2);
      const [job] = await ds.query(`SELECT status, plan, extract(epoch FROM run_after - now()) AS wait_s FROM jobs WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
      expect(job.status).toBe('queued');
      expect(job.plan.startAt).toBe(new Date('2026-12-01T12:00:00+08:00').toISOString());
      // It waits what the plan still had to wait (10 s, less the 3 s since), on the database's clock.
      expect(Number(job.wait_s)).toBeGreaterThan(1);
      expect(Number(job.wait_s)).toBeLessThanOrEqual(10);
      expect(fake.requests).toHaveLength(0);
      await ds.query(`UPDATE jobs SET status = 'failed' WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
    } finally {
      defer.mockRestore();
    }
  });

  it("leaves the essay to the worker that took its job over while this one planned: not moved back to queued under that worker's grading", async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const [id] = await submit(a.id, [29]);
    await waitFor(async () => (await jobsOf([id]))[0]?.plan?.mode === 'off_peak', 10_000, 'the job planned for the window');
    const queue = t.app.get(JobQueue);
    const grader = t.app.get(ModelGrader);
    const realDefer = queue.defer.bind(queue);
    const realPlan = grader.plan.bind(grader);
    const realTransaction = ds.transaction.bind(ds);
    let deferred: boolean | undefined;
    let armed = false;
    // While this worker plans, its lease runs out and another worker claims the job and starts
    // grading the essay: written just before the deferral's transaction begins (the next one after
    // the plan; the embedded database runs one transaction at a time, so not inside it).
    const plan = jest.spyOn(grader, 'plan').mockImplementation((...args) => {
      armed = true;
      return realPlan(...args);
    });
    const transaction = jest.spyOn(ds, 'transaction').mockImplementation((async (...args: unknown[]) => {
      if (armed) {
        armed = false;
        await ds.query(`UPDATE jobs SET locked_by = 'another-worker' WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
      }
      return (realTransaction as (...a: unknown[]) => Promise<unknown>)(...args);
    }) as never);
    const defer = jest.spyOn(queue, 'defer').mockImplementation(async (job, p, tx) => {
      deferred = await realDefer(job, p, tx);
      return deferred;
    });
    try {
      await ds.query(`UPDATE essays SET status = 'grading' WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]);
      await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
      await waitFor(() => deferred !== undefined, 10_000, 'the worker deferring');
    } finally {
      plan.mockRestore();
      transaction.mockRestore();
      defer.mockRestore();
    }
    expect(deferred).toBe(false);
    expect((await view(id)).status).toBe('grading'); // the other worker's
    // (the job is the other worker's: put it back for the next test's clean slate)
    await ds.query(`UPDATE jobs SET status = 'failed', locked_by = NULL WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
  });

  it('does not defer a retry whose earlier attempt planned a batch (its call may wait there): it runs now', async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const [id] = await submit(a.id, [19]);
    await waitFor(async () => (await jobsOf([id])).every((j: { plan: { mode: string } | null; status: string }) => j.plan?.mode === 'off_peak' && j.status === 'queued'), 10_000, 'the job deferred');
    // As left by an attempt that sent its call in a batch and was handed over on a stop.
    await ds.query(`UPDATE jobs SET plan = jsonb_set(plan, '{mode}', '"batch"'), run_after = now() WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
    await waitGraded([id]);
    const [job] = await jobsOf([id]);
    expect(job.plan).toMatchObject({ mode: 'now', startAt: TUESDAY_PEAK.toISOString(), batchedBefore: true });
    const [row] = await ledger();
    expect(row).toMatchObject({ essay_id: id, batch: false, price_window: 'peak', outcome: 'ok' });
    await expectBooksBalanced(ds, tenant.tenantId);
    // A second stop leaves the job as that retry planned it (now, its batch remembered): still not deferred.
    const [second] = await submit(a.id, [20]);
    await waitFor(async () => (await jobsOf([second])).every((j: { plan: { mode: string } | null; status: string }) => j.plan?.mode === 'off_peak' && j.status === 'queued'), 10_000, 'the second job deferred');
    await ds.query(`UPDATE jobs SET plan = plan || '{"mode": "now", "batchedBefore": true}'::jsonb, run_after = now() WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, second]);
    await waitGraded([second]);
    expect((await jobsOf([second]))[0].plan).toMatchObject({ mode: 'now', batchedBefore: true });
  });

  it('without a deadline, grades at once as before (peak price, no schedule)', async () => {
    const a = await assignment();
    expect(a.dueBy).toBeNull();
    const [id] = await submit(a.id, [13]);
    await waitGraded([id]);
    const v = await view(id);
    expect(v.schedule).toBeNull();
    expect(v.grade.schedule).toBeUndefined();
    const [row] = await ledger();
    expect(row.price_window).toBe('peak');
    expect(row.schedule_saved_nanos).toBeNull();
  });

  it('never misses a deadline to save money: due before the window (less the margin) grades now, at peak', async () => {
    const a = await assignment(due('2026-12-01T12:20:00')); // 12:20 − 30 min margin is before 12:00
    const [id] = await submit(a.id, [14]);
    await waitGraded([id]);
    const v = await view(id);
    expect(v.schedule.plan.mode).toBe('now');
    expect(v.grade.schedule).toEqual({ dueBy: a.dueBy, mode: 'now', saved: '0.00' });
    const [row] = await ledger();
    expect(row.price_window).toBe('peak');
  });

  it('a deadline moved earlier, or cleared, reaches the gradings already waiting for the window: they grade now', async () => {
    const moved = await assignment(due('2026-12-02T08:00:00'));
    const cleared = await assignment(due('2026-12-02T08:00:00'));
    const [early] = await submit(moved.id, [17]);
    const [plain] = await submit(cleared.id, [18]);
    await waitFor(async () => (await jobsOf([early, plain])).every((j: { plan: { mode: string } | null; status: string }) => j.plan?.mode === 'off_peak' && j.status === 'queued'), 10_000, 'jobs deferred');
    expect(fake.requests).toHaveLength(0);

    // Now due at 12:20: waiting for the 12:00 window (less the 30-minute margin) would miss it.
    const sooner = due('2026-12-01T12:20:00');
    await t.http.patch(`/v1/assignments/${moved.id}`).set(bearer(teacher)).send({ dueBy: sooner }).expect(200);
    await t.http.patch(`/v1/assignments/${cleared.id}`).set(bearer(teacher)).send({ dueBy: null }).expect(200);
    await waitGraded([early, plain]);

    const v = await view(early);
    expect(v.schedule).toMatchObject({ dueBy: sooner, plan: { mode: 'now' } });
    expect(v.grade.schedule).toEqual({ dueBy: sooner, mode: 'now', saved: '0.00' });
    const p = await view(plain);
    expect(p.grade.schedule).toBeUndefined();
    const rows = await ledger();
    expect(rows.map((r: { price_window: string }) => r.price_window)).toEqual(['peak', 'peak']);
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  it('a deadline moved while a worker plans a grading on the old one reaches it: the grading does not wait for the old plan\'s window', async () => {
    // An app of its own, without workers, on the real clock: this test claims and defers the job itself.
    const w = await createTestApp({ WORKERS_ENABLED: 'false' });
    try {
      const school = await new Factory(w.app).newTenant();
      const nextWeek = new Date(Date.now() + 7 * 86_400_000).toISOString();
      const a = (await w.http.post('/v1/assignments').set(bearer(school.adminKey)).send({ title: '下周交', prompt: 'P', rubric: 'zh-gaokao-60', dueBy: nextWeek }).expect(201)).body;
      await w.http.post('/v1/essays/batch').set(bearer(school.adminKey)).send({ assignmentId: a.id, essays: [{ text: generateEssay(19, 'zh').text }] }).expect(202);
      const queue = w.app.get(JobQueue);
      const claim = async () => (await queue.claim(10, 60_000, 'grade', true)).filter((j) => j.tenantId === school.tenantId);
      const [job] = await claim();
      expect(job.dueBy?.toISOString()).toBe(nextWeek);
      // The teacher makes it due within the hour while the worker plans on next week's deadline…
      const soon = new Date(Date.now() + 3_600_000).toISOString();
      await w.http.patch(`/v1/assignments/${a.id}`).set(bearer(school.adminKey)).send({ dueBy: soon }).expect(200);
      // …and the worker, its plan made, puts the job back to wait for tomorrow's cheap window.
      const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
      const plan = { mode: 'off_peak' as const, startAt: tomorrow, model: 'deepseek:deepseek-flash', window: 'night', plannedAt: new Date().toISOString(), firstPlannedAt: new Date().toISOString() };
      expect(await queue.defer(job, plan)).toBe(true);
      const [row] = await w.dataSource.query(`SELECT status, due_by, run_after <= now() AS due_now FROM jobs WHERE tenant_id = $1 AND id = $2`, [school.tenantId, job.id]);
      expect(row).toMatchObject({ status: 'queued', due_now: true });
      expect(new Date(row.due_by).toISOString()).toBe(soon);
      // Due at once: claimed again, with the new deadline to plan against.
      const [again] = await claim();
      expect(again?.id).toBe(job.id);
      expect(again.dueBy?.toISOString()).toBe(soon);
      // A deadline that did not move (here stored to the microsecond, as a JS Date cannot hold it):
      // the job waits for its plan's window, as before.
      await w.dataSource.query(`UPDATE jobs SET due_by = due_by + interval '0.000321 seconds' WHERE tenant_id = $1 AND id = $2`, [school.tenantId, job.id]);
      expect(await queue.defer(again, plan)).toBe(true);
      const [waiting] = await w.dataSource.query(`SELECT run_after FROM jobs WHERE tenant_id = $1 AND id = $2`, [school.tenantId, job.id]);
      expect(new Date(waiting.run_after).toISOString()).toBe(tomorrow);
    } finally {
      await w.close();
    }
  });

  // (Two sessions at once: on a PostgreSQL server only.)
  (serverUrl() ? it : it.skip)('an essay submitted while a teacher moves the deadline takes the new one: queueing it waits for the move', async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const sooner = beijing('2026-12-01T15:00:00');
    // The teacher's PATCH, held open once it has written the assignment and moved the deadlines of its
    // gradings (none yet): the transaction AssignmentsService.update runs.
    await withHeldTransactions(ds, 1, async ([patch]) => {
      await patch.query(`UPDATE assignments SET due_by = $3 WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, a.id, sooner]);
      await t.app.get(JobQueue).moveDeadline(patch.manager, tenant.tenantId, a.id, sooner);
      let stored = false;
      const submitted = submit(a.id, [931]).then((ids) => ((stored = true), ids));
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) === 1, 10_000, 'the essay waiting for the move');
      expect(stored).toBe(false);
      await patch.commitTransaction();
      const [id] = await submitted;
      const [job] = await ds.query(`SELECT due_by FROM jobs WHERE tenant_id = $1 AND essay_id = $2 AND kind = 'grade'`, [tenant.tenantId, id]);
      expect(new Date(job.due_by).toISOString()).toBe(sooner.toISOString());
    });
  });

  (serverUrl() ? it : it.skip)('an essay being queued when a teacher moves the deadline is found by the move: the PATCH waits for it', async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const sooner = due('2026-12-01T15:00:00');
    // The essay's transaction (EssaysService.store's two statements), held open once both have run.
    await withHeldTransactions(ds, 1, async ([submit]) => {
      const essayId = randomUUID();
      const essay = t.app.get(EssaysRepository).insertQueuedStatement(tenant.tenantId, { assignmentId: a.id, rubricKey: 'zh-gaokao-60', rubricVersion: 1, submittedBy: tenant.adminKeyId }, [
        { id: essayId, text: generateEssay(932, 'zh').text, language: 'zh', tier: 'standard', title: null, studentRef: null },
      ]);
      const job = t.app.get(JobQueue).enqueueStatement(tenant.tenantId, [{ essayId, kind: 'grade', deadlineOf: { assignmentId: a.id, now: TUESDAY_PEAK } }]).statement;
      for (const st of [essay, job]) await submit.query(st.sql, st.params);
      let moved = false;
      const patched = t.http.patch(`/v1/assignments/${a.id}`).set(bearer(teacher)).send({ dueBy: sooner }).then((r) => ((moved = true), r));
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) === 1, 10_000, "the PATCH waiting for the essay's transaction");
      expect(moved).toBe(false);
      await submit.commitTransaction();
      expect((await patched).status).toBe(200);
      const [row] = await ds.query(`SELECT due_by FROM jobs WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essayId]);
      expect(new Date(row.due_by).toISOString()).toBe(sooner);
    });
  });

  it('when the budget is gone by the time the window opens, grades offline as any grading would: nothing charged, nothing lost', async () => {
    const a = await assignment(due('2026-12-02T08:00:00'));
    const [id] = await submit(a.id, [16]);
    await waitFor(async () => (await jobsOf([id]))[0]?.plan?.mode === 'off_peak', 10_000, 'deferred');
    // Meanwhile the admin lowers the cap to nothing (policy offline, the default).
    await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '0.00' }).expect(200);
    clock.mockImplementation(() => new Date(LUNCH_OFF_PEAK));
    await ds.query(`UPDATE jobs SET run_after = now() WHERE tenant_id = $1 AND status = 'queued'`, [tenant.tenantId]);
    await waitGraded([id]);
    const v = await view(id);
    expect(v.grade.source).toBe('offline');
    expect(v.flags).toEqual(expect.arrayContaining(['offline_estimate', 'budget_exhausted']));
    expect(v.grade.schedule).toBeUndefined(); // no provider call, nothing saved or spent
    expect(fake.requests).toHaveLength(0);
    const { spent } = await expectBooksBalanced(ds, tenant.tenantId);
    expect(spent).toBe(0n);
  });

  it('refuses a deadline in the past or too far ahead, and clears one with null', async () => {
    const past = await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'x', prompt: 'y', rubric: 'zh-gaokao-60', dueBy: due('2026-11-01T08:00:00') }).expect(400);
    expect(past.body.error.details[0]).toEqual({ field: 'dueBy', message: 'dueBy must be in the future' });
    await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'x', prompt: 'y', rubric: 'zh-gaokao-60', dueBy: due('2027-06-01T08:00:00') }).expect(400);
    await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'x', prompt: 'y', rubric: 'zh-gaokao-60', dueBy: 'tomorrow' }).expect(400);
    // A time without its offset is not an instant: whose 08:00 would it be? Refused, not guessed.
    const local = due('2026-12-02T08:00:00').replace(/Z$/, '');
    const unzoned = await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'x', prompt: 'y', rubric: 'zh-gaokao-60', dueBy: local }).expect(400);
    expect(unzoned.body.error.details[0]).toEqual({ field: 'dueBy', message: 'dueBy must be an ISO 8601 date-time with its offset, e.g. 2026-12-03T08:00:00+08:00' });
    // An offset no zone has is a 400 (the database refused it: a 500); one it has is stored as its instant.
    const far = await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'x', prompt: 'y', rubric: 'zh-gaokao-60', dueBy: `${due('2026-12-02T08:00:00').slice(0, 19)}+16:00` }).expect(400);
    expect(far.body.error.details[0].field).toBe('dueBy');
    const kathmandu = `${due('2026-12-02T08:00:00').slice(0, 19)}+05:45`;
    expect((await assignment(kathmandu)).dueBy).toBe(new Date(kathmandu).toISOString());
    const a = await assignment(due('2026-12-02T08:00:00'));
    const cleared = await t.http.patch(`/v1/assignments/${a.id}`).set(bearer(teacher)).send({ dueBy: null }).expect(200);
    expect(cleared.body.dueBy).toBeNull();
    const [id] = await submit(a.id, [15]);
    await waitGraded([id]);
    expect((await view(id)).schedule).toBeNull();
  });

  describe('deep reviews', () => {
    const sell = () => t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'invoice' }).expect(200);
    const gradedEssay = async (seed: number) => {
      const a = await assignment();
      const [id] = await submit(a.id, [seed]);
      await waitGraded([id]);
      return id;
    };
    const waitDelivered = (id: string) => waitFor(async () => (await view(id)).deepReview?.status === 'delivered', 20_000, 'deep review delivered');
    const deepCalls = async () => (await ledger()).filter((r: { purpose: string }) => r.purpose === 'deep_review');
    /** The essay's deep review was delivered from one real-time call on a plan of 'now', and says it saved nothing. */
    const expectRealTimeReview = async (id: string, dueBy: string) => {
      await waitDelivered(id);
      expect(fake.requests.filter((r) => r.batchId)).toHaveLength(0);
      const [call] = await deepCalls();
      expect([call.batch, call.outcome]).toEqual([false, 'ok']);
      const v = await view(id);
      expect(v.deepReview.schedule.plan.mode).toBe('now');
      expect(v.deepGrade.schedule).toEqual({ dueBy, mode: 'now', saved: '0.00' });
    };

    it('"by tomorrow morning" runs in real time when the 24-hour batch could not finish by then', async () => {
      await sell();
      const id = await gradedEssay(21);
      fake.reset();
      const order = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'tomorrow_morning' }).expect(202);
      expect(order.body.dueBy).toBe(beijing('2026-12-02T08:00:00').toISOString()); // 08:00 tomorrow, the tenant's zone
      await expectRealTimeReview(id, order.body.dueBy);
    });

    it('"by tomorrow morning" orders and plans an essay too long for the deep model on the prompt as sent (cut to fit, as the call sends it): real time, never the 24-hour batch', async () => {
      await sell();
      // A long assignment prompt and an essay past qwen3-max's input: the call cuts the essay to fit.
      const a = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '长文', prompt: '以“那一刻”为题写一篇记叙文，'.repeat(200), rubric: 'zh-gaokao-60' }).expect(201)).body;
      let text = '';
      for (let seed = 30; text.length < 19_000; seed++) text += generateEssay(seed, 'zh').text;
      text = text.slice(0, 19_500);
      const [id] = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: a.id, essays: [{ text }] }).expect(202)).body.ids as string[];
      await waitGraded([id]);
      fake.reset();
      const order = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'tomorrow_morning' }).expect(202);
      await expectRealTimeReview(id, order.body.dueBy);
    });

    it('brings an open order forward when it is ordered again with an earlier deadline (never back): its job runs in real time, not in the batch of the first order', async () => {
      await sell();
      const id = await gradedEssay(27);
      fake.reset();
      const worker = t.app.get(GradingWorker);
      await worker.stop(0);
      let order;
      try {
        const order1 = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).expect(202)).body; // paid at once (invoice), no deadline
        expect(order1.dueBy).toBeNull();
        order = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'tomorrow_morning' }).expect(202)).body;
        expect(order.orderId).toBe(order1.orderId);
        expect(order.dueBy).toBe(beijing('2026-12-02T08:00:00').toISOString());
        // A later deadline does not put it back.
        const later = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: due('2026-12-09T08:00:00') }).expect(202)).body;
        expect([later.orderId, later.dueBy]).toEqual([order.orderId, order.dueBy]);
        const jobs = await ds.query(`SELECT due_by FROM jobs WHERE tenant_id = $1 AND order_id = $2`, [tenant.tenantId, order.orderId]);
        expect(jobs.map((j: { due_by: Date }) => new Date(j.due_by).toISOString())).toEqual([order.dueBy]);
      } finally {
        worker.start();
      }
      await expectRealTimeReview(id, order.dueBy);
    });

    it('keeps the deadline of a review already under way (its call waiting in a provider batch, or handed over in one at a stop): ordering again says so, and claims no earlier one', async () => {
      await sell();
      const id = await gradedEssay(28);
      const worker = t.app.get(GradingWorker);
      await worker.stop(0);
      try {
        const order = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).expect(202)).body;
        // As a worker leaves it once its call is in the 24-hour batch.
        await ds.query(`UPDATE jobs SET status = 'running', in_batch = true WHERE tenant_id = $1 AND order_id = $2`, [tenant.tenantId, order.orderId]);
        const again = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'tomorrow_morning' }).expect(202)).body;
        expect([again.orderId, again.dueBy]).toEqual([order.orderId, null]);
        expect(await ds.query(`SELECT due_by FROM jobs WHERE tenant_id = $1 AND order_id = $2`, [tenant.tenantId, order.orderId])).toEqual([{ due_by: null }]);
        // Handed over at a stop: queued again, its call still waiting in the batch, named on its guard.
        await ds.query(`UPDATE jobs SET status = 'queued', in_batch = false WHERE tenant_id = $1 AND order_id = $2`, [tenant.tenantId, order.orderId]);
        await ds.query(
          `INSERT INTO call_guards (tenant_id, key, state, token, expires_at, essay_id, batch_provider, batch_id, batch_line, reservation_id)
           VALUES ($1, repeat('a', 64), 'in_flight', gen_random_uuid(), now() + interval '1 hour', $2, 'dashscope', 'batch_handed_over', 'line-1', gen_random_uuid())`,
          [tenant.tenantId, id],
        );
        const handedOver = (await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'tomorrow_morning' }).expect(202)).body;
        expect(handedOver.dueBy).toBeNull();
        await ds.query(`DELETE FROM call_guards WHERE tenant_id = $1 AND key = repeat('a', 64)`, [tenant.tenantId]);
      } finally {
        worker.start();
      }
      await waitDelivered(id);
    });

    it("counts the batch's collection window in its turnaround: due less than window + 24 hours + margin away, it runs in real time", async () => {
      await sell();
      const id = await gradedEssay(25);
      fake.reset();
      // 24 h (LLM_BATCH_MAX_WAIT_MS) + 30 min margin + 100 ms: the 200 ms collection window does not fit.
      const dueBy = new Date(TUESDAY_PEAK.getTime() + 86_400_000 + 30 * 60_000 + 100).toISOString();
      await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy }).expect(202);
      await waitDelivered(id);
      expect(fake.requests.filter((r) => r.batchId)).toHaveLength(0);
      expect((await view(id)).deepReview.schedule.plan.mode).toBe('now');
    });

    it('due in three days goes through the Batch API and saves what the batch price saves', async () => {
      await sell();
      const id = await gradedEssay(22);
      fake.reset();
      const order = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: due('2026-12-04T08:00:00') }).expect(202);
      await waitDelivered(id);
      expect(fake.requests.filter((r) => r.batchId).length).toBeGreaterThan(0);
      const [call] = await deepCalls();
      expect(call.batch).toBe(true);
      const realtime =
        BigInt(call.input_tokens - call.cached_input_tokens) * QWEN3_MAX.input + BigInt(call.cached_input_tokens) * QWEN3_MAX.cached + BigInt(call.output_tokens) * QWEN3_MAX.output;
      expect(BigInt(call.schedule_saved_nanos)).toBe(realtime - BigInt(call.cost_nanos));
      expect(BigInt(call.schedule_saved_nanos)).toBeGreaterThan(0n);
      const v = await view(id);
      expect(v.deepGrade.schedule).toMatchObject({ dueBy: order.body.dueBy, mode: 'batch' });
      expect(parseCny(v.deepGrade.schedule.saved)).toBe(BigInt(call.schedule_saved_nanos));
      // Claimed once in the month's report: as what the batch saved, not again as scheduling.
      const report = await monthReport();
      expect(report.savedByScheduling).toBe('0.00');
      expect(parseCny(report.savedByBatch)).toBeGreaterThan(0n);
      await expectBooksBalanced(ds, tenant.tenantId);
    });

    it('makes a scheduled batch call in real time when the batch fails, and still delivers once', async () => {
      await sell();
      const id = await gradedEssay(24);
      fake.reset();
      fake.failNextBatch('dashscope', 'failed');
      await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: due('2026-12-04T08:00:00') }).expect(202);
      await waitDelivered(id);
      const calls = await deepCalls();
      expect(calls.map((c: { batch: boolean; outcome: string }) => [c.batch, c.outcome])).toEqual([
        [true, 'retryable'],
        [false, 'ok'],
      ]);
      // Planned for the batch, paid at the real-time price: it saved nothing, and says so.
      const v = await view(id);
      expect(v.deepGrade.schedule).toMatchObject({ mode: 'batch', saved: '0.00' });
      expect(v.deepReview.status).toBe('delivered');
      await expectBooksBalanced(ds, tenant.tenantId);
    });

    it('refuses a deadline it cannot read, before anything is ordered', async () => {
      await sell();
      const id = await gradedEssay(23);
      const bad = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy: 'next week' }).expect(400);
      expect(bad.body.error.details[0].field).toBe('dueBy');
      // A date alone, or a time without its offset, says no instant: refused too.
      for (const dueBy of [due('2026-12-03T08:00:00').slice(0, 10), due('2026-12-03T08:00:00').replace(/Z$/, '')]) {
        const unzoned = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).send({ dueBy }).expect(400);
        expect(unzoned.body.error.details[0].message).toMatch(/with its offset/);
      }
      expect((await view(id)).deepReview).toBeNull();
      // No body at all: ordered as before (through the Batch API, no deadline).
      const plain = await t.http.post(`/v1/essays/${id}/deep-review`).set(bearer(teacher)).expect(202);
      expect(plain.body.dueBy).toBeNull();
    });
  });
});
