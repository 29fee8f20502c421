import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { EssayRetention } from '../src/grading/essay-retention';
import { GradingWorker } from '../src/grading/grading.worker';
import { inShadowSample } from '../src/grading/grading.service';
import { EssaysRepository } from '../src/grading/essays.repository';
import { OrdersRepository } from '../src/billing/orders.repository';
import { ClusterBus } from '../src/db/cluster-bus';
import { signPayload } from '../src/common/signature';
import { GatewayService } from '../src/llm/gateway.service';
import { ResponseCache } from '../src/llm/response-cache';
import { randomUUID } from 'node:crypto';
import { FakeProvider } from './fake-provider/fake-provider';
import { expectBooksBalanced } from './support/books';
import { generateEssay, nearCopy } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';
import { startAppWithFake } from './support/app-with-fake';
import { createTestApp, TestApp } from './support/test-app';
import { EssayStreamService } from '../src/grading/essay-stream.service';
import { EssayEvents } from '../src/grading/essay-events';
import { JobQueue } from '../src/jobs/job-queue';
import { waitFor } from './support/wait';
import { streamBody } from './support/event-stream';

/**
 * DELETE /v1/essays/:id erases a student's essay: its personal data and everything derived from
 * its text go (grades, overrides, near-duplicate index, cached answers in every instance, replay
 * guards); the money stays (ledger, spend, orders delivered), and queued work is cancelled.
 */
describe('erasing an essay (fake provider, real PostgreSQL)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let close: () => Promise<void>;
  let tenant: TestTenant;
  let teacher: string;

  beforeAll(async () => {
    ({ fake, t, f, close } = await startAppWithFake({ WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '50' }));
  });
  afterAll(() => close());
  beforeEach(async () => {
    fake.reset();
    t.app.get(GatewayService).resetHealth();
    tenant = await f.newTenant({ monthlyBudget: '100.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });

  const erase = (id: string, key = teacher) => t.http.delete(`/v1/essays/${id}`).set(bearer(key));
  const q = async (sql: string, params: unknown[] = []) => (await t.dataSource.query(sql, params)) as Array<Record<string, any>>;
  const count = async (table: string, essayId: string) =>
    (await q(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essayId]))[0].n as number;
  const ledger = () =>
    q(`SELECT count(*)::int AS n, coalesce(sum(cost_nanos), 0)::text AS cost FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]).then((r) => r[0]);

  it('erases the text, the grades, the overrides, the index and the cached answers, and keeps the money', async () => {
    const text = generateEssay(41, 'zh').text;
    const first = await f.gradedEssay(teacher, { text, studentRef: 's-041', title: '我的母亲' });
    expect(first.status).toBe('graded');
    await t.http.patch(`/v1/essays/${first.id}/grade`).set(bearer(teacher)).send({ comment: '王小明同学，结尾再具体些' }).expect(200);
    // The same text (and title) again is answered from the cache: the row is read, and this instance's tier now holds it.
    const again = await f.gradedEssay(teacher, { text, title: '我的母亲' });
    expect(again.cache).toBe('hit');
    expect(fake.requests).toHaveLength(1);
    expect(await count('llm_cache', first.id)).toBe(1);
    expect(await count('essay_signatures', first.id)).toBe(1);
    expect(await count('essay_lsh', first.id)).toBeGreaterThan(0);
    expect(await count('grade_overrides', first.id)).toBe(1);
    expect(await count('call_guards', first.id)).toBe(1); // the grading's replay guard, with the answer
    const before = await ledger();
    const { spent } = await expectBooksBalanced(t.dataSource, tenant.tenantId);

    const res = await erase(first.id).expect(200);
    expect(res.body).toEqual({ id: first.id, erasedAt: expect.any(String) });

    const [row] = await q(`SELECT * FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, first.id]);
    expect(row).toMatchObject({ text: '', title: null, student_ref: null, grade: null, model_grade: null, deep_grade: null, shadow_grade: null, status: 'graded' });
    expect(row.erased_at.toISOString()).toBe(res.body.erasedAt);
    for (const table of ['llm_cache', 'essay_signatures', 'essay_lsh', 'grade_overrides', 'call_guards']) expect([table, await count(table, first.id)]).toEqual([table, 0]);
    expect(await q(`SELECT 1 FROM llm_cache WHERE tenant_id = $1`, [tenant.tenantId])).toEqual([]);
    // The money stays: every ledger row, the spend, the balance.
    expect(await ledger()).toEqual(before);
    expect((await expectBooksBalanced(t.dataSource, tenant.tenantId)).spent).toBe(spent);

    // Gone from every view; the other essay is untouched.
    const got = await t.http.get(`/v1/essays/${first.id}`).set(bearer(teacher)).expect(404);
    expect(got.body.error.message).toContain('erased');
    expect(got.body.error.details).toEqual({ erasedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) }); // for the console to say when, in the school's time
    const list = await t.http.get('/v1/essays').set(bearer(teacher)).expect(200);
    expect(list.body.data.map((e: { id: string }) => e.id)).toEqual([again.id]);
    expect((await t.http.get(`/v1/essays/${again.id}`).set(bearer(teacher)).expect(200)).body.text).toBe(text);
    await t.http.patch(`/v1/essays/${first.id}/grade`).set(bearer(teacher)).send({ comment: 'x' }).expect(404);

    // Erasing again answers the first erasure.
    expect((await erase(first.id).expect(200)).body).toEqual(res.body);

    // The text sent again is a miss: no instance's tier kept the answer, no row was left.
    const third = await f.gradedEssay(teacher, { text });
    expect(third.cache).toBe('miss');
    expect(fake.requests).toHaveLength(2);
  });

  it('keeps the cost on the tombstone', async () => {
    const essay = await f.gradedEssay(teacher, { seed: 42 });
    const [{ cost_nanos: cost }] = await q(`SELECT cost_nanos FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, essay.id]);
    expect(BigInt(cost)).toBeGreaterThan(0n);
    await erase(essay.id).expect(200);
    expect((await q(`SELECT cost_nanos FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, essay.id]))[0].cost_nanos).toBe(cost);
  });

  it("drops the answer from another instance's in-process tier", async () => {
    const other: NestFastifyApplication = await t.another({ WORKERS_ENABLED: 'false' });
    const essay = await f.gradedEssay(teacher, { seed: 43 });
    const [{ cache_key: key }] = await q(`SELECT cache_key FROM llm_cache WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
    const otherCache = other.get(ResponseCache);
    // Once its cache index has seen the key, the other instance reads the row, and its tier then holds the answer.
    await waitFor(async () => (await otherCache.get(tenant.tenantId, key)) !== null, 5_000, 'the other instance to read the answer');
    const [{ content }] = await q(`SELECT content FROM llm_cache WHERE tenant_id = $1 AND cache_key = $2`, [tenant.tenantId, key]);
    await q(`UPDATE llm_cache SET content = 'changed under the tier' WHERE tenant_id = $1 AND cache_key = $2`, [tenant.tenantId, key]);
    expect((await otherCache.get(tenant.tenantId, key))?.content).toBe(content); // answered from its tier, not the row
    await erase(essay.id).expect(200);
    await waitFor(async () => (await otherCache.get(tenant.tenantId, key)) === null, 5_000, "the other instance's tier to drop the answer");
  });

  it("answers 404 for another tenant's essay and erases nothing", async () => {
    const essay = await f.gradedEssay(teacher, { seed: 44 });
    const other = await f.newTenant();
    const res = await erase(essay.id, other.adminKey).expect(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
    await erase('not-a-uuid').expect(404);
    await erase('00000000-0000-4000-8000-000000000000').expect(404);
    const view = await t.http.get(`/v1/essays/${essay.id}`).set(bearer(teacher)).expect(200);
    expect(view.body.text.length).toBeGreaterThan(0);
    expect(view.body.grade).not.toBeNull();
  });

  it('refuses with 409 while the essay is at the provider, and erases it once graded', async () => {
    fake.setLatency(3_000); // time enough to erase while it is at the provider, even on a loaded machine
    let id: string;
    try {
      id = await f.essay(teacher, { seed: 45 });
      await waitFor(async () => {
        const [j] = await q(`SELECT status FROM jobs WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id]);
        return j?.status === 'running' && fake.requests.length > 0;
      }, 10_000, 'the grading to be at the provider');
      const res = await erase(id).expect(409);
      expect(res.body.error.code).toBe('CONFLICT');
      const [row] = await q(`SELECT text, erased_at FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]);
      expect(row.erased_at).toBeNull();
      expect(row.text.length).toBeGreaterThan(0);
    } finally {
      fake.setLatency(0);
    }
    const [graded] = await waitForEssays(t.app, teacher, [id!]);
    expect(graded.status).toBe('graded');
    await erase(id!).expect(200);
    expect(await count('llm_cache', id!)).toBe(0);
  });

  it("erases a graded essay while its shadow grading waits in a provider batch (no grading the school sees): the shadow stores nothing, its call is paid once", async () => {
    await t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowRate: 0.2 }).expect(200);
    fake.setBatchLatency(5_000); // the shadow call waits in its batch while the essay is erased
    try {
      let id = '';
      for (let seed = 700; seed < 800 && !id; seed++) {
        const submitted = await f.essay(teacher, { seed });
        if (inShadowSample(submitted, 0.2)) id = submitted;
      }
      expect(id).not.toBe('');
      const shadowJob = async () => (await q(`SELECT status, in_batch FROM jobs WHERE tenant_id = $1 AND essay_id = $2 AND kind = 'shadow'`, [tenant.tenantId, id]))[0];
      await waitFor(async () => (await shadowJob())?.in_batch === true, 20_000, 'the shadow call waiting in its batch');
      expect((await t.http.get(`/v1/essays/${id}`).set(bearer(teacher)).expect(200)).body.status).toBe('graded');
      await erase(id).expect(200);
      await waitFor(async () => ['done', 'failed'].includes((await shadowJob()).status), 30_000, 'the shadow job ended');
      const [row] = await q(`SELECT text, grade, shadow_grade, erased_at FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]);
      expect([row.text, row.grade, row.shadow_grade, row.erased_at === null]).toEqual(['', null, null, false]);
      const shadowCalls = await q(`SELECT outcome FROM llm_calls WHERE tenant_id = $1 AND essay_id = $2 AND purpose = 'shadow'`, [tenant.tenantId, id]);
      expect(shadowCalls).toEqual([{ outcome: 'ok' }]);
      await expectBooksBalanced(t.dataSource, tenant.tenantId);
      // Its answer, cached after the erasure, is a late row: the next sweep deletes it.
      expect((await t.app.get(EssayRetention).sweep()).lateRows).toBeGreaterThanOrEqual(1);
      expect(await count('llm_cache', id)).toBe(0);
    } finally {
      fake.setBatchLatency(0);
    }
  });

  it('erases an essay whose grading no worker holds any more (its lease long run out, as a restore brings a job back), cancelling the job', async () => {
    // An app of its own without workers: no recovery sweep returns the job to the queue meanwhile.
    const w = await createTestApp({ WORKERS_ENABLED: 'false' });
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(46, 'zh').text }).expect(202)).body.id;
      const [job] = (await w.app.get(JobQueue).claim(10, 60_000)).filter((j) => j.tenantId === school.tenantId);
      expect(await w.app.get(EssaysRepository).startGrading(w.dataSource.manager, school.tenantId, id)).not.toBeNull();
      // Held by a live worker: 409, nothing erased.
      await w.http.delete(`/v1/essays/${id}`).set(bearer(school.adminKey)).expect(409);
      // Its worker gone an hour ago:
      await w.dataSource.query(`UPDATE jobs SET locked_until = now() - interval '1 hour' WHERE tenant_id = $1 AND id = $2`, [school.tenantId, job.id]);
      await w.http.delete(`/v1/essays/${id}`).set(bearer(school.adminKey)).expect(200);
      const [row] = await w.dataSource.query(`SELECT status, locked_by FROM jobs WHERE tenant_id = $1 AND id = $2`, [school.tenantId, job.id]);
      expect(row).toEqual({ status: 'failed', locked_by: null });
      const [essay] = await w.dataSource.query(`SELECT status, text, erased_at FROM essays WHERE tenant_id = $1 AND id = $2`, [school.tenantId, id]);
      expect(essay).toMatchObject({ status: 'failed', text: '', erased_at: expect.any(Date) });
      // The worker, were it only stalled, finds the job no longer its own: nothing it graded is stored.
      const done = await w.dataSource.transaction((tx) => w.app.get(JobQueue).complete(tx, job));
      expect(done).toBe(false);
    } finally {
      await w.close();
    }
  });

  it('catches up on an event its stream missed (a notice lost between instances): it ends with the status at its next keep-alive', async () => {
    const w = await createTestApp({ WORKERS_ENABLED: 'false', HTTP_EVENTS_KEEP_ALIVE_MS: '200' });
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(48, 'zh').text }).expect(202)).body.id;
      const stream = streamBody(w.http.get(`/v1/essays/${id}/events`).set(bearer(school.adminKey)));
      const streams = async () => (await w.http.get('/v1/limits').set(bearer(school.adminKey)).expect(200)).body.usage.eventStreams;
      await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
      // The essay fails with no event sent (as when the instance that failed it lost its notice).
      await w.dataSource.query(`UPDATE essays SET status = 'failed' WHERE tenant_id = $1 AND id = $2`, [school.tenantId, id]);
      const body = await stream; // before, it stayed open, kept alive, until the client left
      expect([...body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])).toEqual(['status', 'status', 'end']);
      expect(body).toContain('"status":"failed"');
      expect(await streams()).toBe(0);
    } finally {
      await w.close();
    }
  });

  it("ends an essay's open event streams when the instance stops (a retry hint, no end), so the stop is not held by them", async () => {
    const w = await createTestApp({ WORKERS_ENABLED: 'false', HTTP_EVENTS_KEEP_ALIVE_MS: '500' });
    let closed = false;
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(49, 'zh').text }).expect(202)).body.id;
      const stream = streamBody(w.http.get(`/v1/essays/${id}/events`).set(bearer(school.adminKey)));
      const streams = async () => (await w.http.get('/v1/limits').set(bearer(school.adminKey)).expect(200)).body.usage.eventStreams;
      await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
      // Before, the close waited for the stream (kept alive) until the client left: for as long as the essay waited.
      const stopped = await Promise.race([w.close().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still open after 10 s'), 10_000))]);
      closed = true;
      expect(stopped).toBe('stopped');
      const body = await stream;
      // (its first status may or may not have been read by then) no end: the client reconnects
      expect(body).not.toMatch(/^event: end$/m);
      expect(body).toMatch(/^retry: 1000$/m);
    } finally {
      if (!closed) await w.close();
    }
  });

  it("keeps relaying an essay's events to its open stream through the workers' shutdown grace, until the server closes", async () => {
    const w = await createTestApp({ WORKERS_ENABLED: 'false' });
    let closed = false;
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(51, 'zh').text }).expect(202)).body.id;
      const stream = streamBody(w.http.get(`/v1/essays/${id}/events`).set(bearer(school.adminKey)));
      const streams = async () => (await w.http.get('/v1/limits').set(bearer(school.adminKey)).expect(200)).body.usage.eventStreams;
      await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
      // The workers' grace (a grading in flight finishing): the essay is graded then, and says so.
      jest.spyOn(w.app.get(GradingWorker), 'beforeApplicationShutdown').mockImplementation(async () => {
        await w.dataSource.query(`UPDATE essays SET status = 'failed' WHERE tenant_id = $1 AND id = $2`, [school.tenantId, id]);
        w.app.get(EssayEvents).emit({ tenantId: school.tenantId, essayId: id, status: 'failed' });
        await new Promise((r) => setTimeout(r, 1_500));
      });
      await w.close();
      closed = true;
      // Before, the events were no longer heard from the start of the stop: the stream ended with the retry hint alone.
      const body = await stream;
      expect([...body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])).toEqual(['status', 'status', 'end']);
      expect(body).toContain('"status":"failed"');
    } finally {
      if (!closed) await w.close();
    }
  });

  it('answers an event stream asked for while the server closes with the retry hint alone: 200, not an error an EventSource would stop on', async () => {
    const w = await createTestApp({ WORKERS_ENABLED: 'false' });
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(50, 'zh').text }).expect(202)).body.id;
      w.app.get(EssayStreamService).closing(); // as the server's preClose does
      const res = await w.http.get(`/v1/essays/${id}/events`).set(bearer(school.adminKey)).buffer(true).parse((r, done) => {
        let text = '';
        r.on('data', (c: Buffer) => (text += c.toString()));
        r.on('end', () => done(null, text));
      });
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.body).toBe('retry: 1000\n\n');
      expect((await w.http.get('/v1/limits').set(bearer(school.adminKey)).expect(200)).body.usage.eventStreams).toBe(0);
    } finally {
      await w.close();
    }
  });

  it("ends an essay's open event stream when the essay is erased, and gives the stream's slot back", async () => {
    // An app of its own without workers: the essay stays queued while its stream is open.
    const w = await createTestApp({ WORKERS_ENABLED: 'false' });
    try {
      const school = await new Factory(w.app).newTenant();
      const id = (await w.http.post('/v1/essays').set(bearer(school.adminKey)).send({ text: generateEssay(47, 'zh').text }).expect(202)).body.id;
      const stream = streamBody(w.http.get(`/v1/essays/${id}/events`).set(bearer(school.adminKey)));
      const streams = async () => (await w.http.get('/v1/limits').set(bearer(school.adminKey)).expect(200)).body.usage.eventStreams;
      await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
      await w.http.delete(`/v1/essays/${id}`).set(bearer(school.adminKey)).expect(200);
      const body = await stream; // before, it stayed open (kept alive) until the client left
      expect([...body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])).toEqual(['status', 'end']);
      expect(body).toContain('"status":"erased"');
      expect(await streams()).toBe(0);
    } finally {
      await w.close();
    }
  });

  it("erases every essay of one student (admin only), lists one being graded as busy, and leaves other students' alone", async () => {
    const a1 = await f.gradedEssay(teacher, { seed: 51, studentRef: 'stu-51' });
    const a2 = await f.gradedEssay(teacher, { seed: 52, studentRef: 'stu-51' });
    const other = await f.gradedEssay(teacher, { seed: 53, studentRef: 'stu-53' });
    const eraseStudent = (studentRef: unknown, key = tenant.adminKey) => t.http.post('/v1/essays/erase').set(bearer(key)).send({ studentRef });
    await eraseStudent('stu-51', teacher).expect(403);
    await eraseStudent('bad!').expect(400);
    await eraseStudent(' padded').expect(400);
    await eraseStudent(undefined).expect(400);
    fake.setLatency(3_000); // time enough to erase while it is at the provider, even on a loaded machine
    let a3: string;
    try {
      a3 = await f.essay(teacher, { seed: 54, studentRef: 'stu-51' });
      await waitFor(async () => (await q(`SELECT status FROM jobs WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, a3]))[0]?.status === 'running', 10_000, 'the grading to run');
      const res = await eraseStudent('stu-51').expect(200);
      expect(res.body).toEqual({ studentRef: 'stu-51', erased: [a1.id, a2.id], busy: [a3], more: false });
    } finally {
      fake.setLatency(0);
    }
    await waitForEssays(t.app, teacher, [a3!]);
    expect((await eraseStudent('stu-51').expect(200)).body).toEqual({ studentRef: 'stu-51', erased: [a3!], busy: [], more: false });
    expect((await eraseStudent('stu-51').expect(200)).body.erased).toEqual([]);
    const left = await q(`SELECT id, student_ref FROM essays WHERE tenant_id = $1 AND erased_at IS NULL`, [tenant.tenantId]);
    expect(left).toEqual([{ id: other.id, student_ref: 'stu-53' }]);
    // Another tenant's student of the same id is not touched.
    const otherTenant = await f.newTenant();
    expect((await eraseStudent('stu-53', otherTenant.adminKey).expect(200)).body.erased).toEqual([]);
    await t.http.get(`/v1/essays/${other.id}`).set(bearer(teacher)).expect(200);
  });

  describe('what an erased essay leaves', () => {
    it('is out of its assignment: counts, distribution and the grades CSV', async () => {
      const a = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '删除后', prompt: '写一篇记叙文', rubric: 'zh-gaokao-60' }).expect(201)).body;
      const kept = await f.gradedEssay(teacher, { seed: 81, assignmentId: a.id, studentRef: 'stu-keep' });
      const gone = await f.gradedEssay(teacher, { seed: 82, assignmentId: a.id, studentRef: 'stu-gone' });
      await erase(gone.id).expect(200);
      const detail = (await t.http.get(`/v1/assignments/${a.id}`).set(bearer(teacher)).expect(200)).body;
      expect(detail.counts).toMatchObject({ total: 1, graded: 1 });
      const listed = (await t.http.get('/v1/assignments').set(bearer(teacher)).expect(200)).body.data.find((x: { id: string }) => x.id === a.id);
      expect(listed.counts.total).toBe(1);
      const csv = (await t.http.get(`/v1/assignments/${a.id}/grades.csv`).set(bearer(teacher)).expect(200)).text;
      expect(csv).toContain('stu-keep');
      expect(csv).not.toContain('stu-gone');
      expect(kept.status).toBe('graded');
    });

    it('is no near-duplicate of a later essay, nor its grade reused', async () => {
      await t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ reuseResubmissionGrades: true }).expect(200);
      const text = generateEssay(83, 'zh').text;
      const first = await f.gradedEssay(teacher, { text, studentRef: 'stu-83' });
      // Before the erasure, a near copy by the same student takes the earlier grade, and one by
      // another student is flagged against it.
      const copy = await f.gradedEssay(teacher, { text: nearCopy(text, 1, 1), studentRef: 'stu-83' });
      expect(copy.flags).toContain('reused_grade');
      const theirs = await f.gradedEssay(teacher, { text: nearCopy(text, 3, 1), studentRef: 'stu-84' });
      expect(theirs.flags).toContain('possible_copy');
      expect([first.id, copy.id]).toContain(theirs.similarTo?.essayId);
      await erase(first.id).expect(200);
      await erase(copy.id).expect(200);
      await erase(theirs.id).expect(200);
      const later = await f.gradedEssay(teacher, { text: nearCopy(text, 2, 1), studentRef: 'stu-83' });
      expect(later.flags).not.toContain('possible_copy');
      expect(later.similarTo).toBeNull();
      expect(later.flags).not.toContain('reused_grade');
    });

    it('takes no deep-review order, and no worker writes to it', async () => {
      await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '5.00', paymentMode: 'invoice' }).expect(200);
      const essay = await f.gradedEssay(teacher, { seed: 84 });
      await erase(essay.id).expect(200);
      await t.http.post(`/v1/essays/${essay.id}/deep-review`).set(bearer(teacher)).expect(404);
      // The order's own check, for an erasure that commits between the essay's read and the order.
      const orders = t.app.get(OrdersRepository);
      const created = await orders.create({ tenantId: tenant.tenantId, id: randomUUID(), essayId: essay.id, price: 5_000_000_000n, mode: 'invoice', createdBy: tenant.adminKeyId });
      expect(created).toBe(false);
      expect(await count('orders', essay.id)).toBe(0);
      expect(await count('jobs', essay.id)).toBe(1); // its grading's, done
      // A worker whose job outlived its lease finds nothing to grade or store.
      const essays = t.app.get(EssaysRepository);
      expect(await essays.startGrading(t.dataSource.manager, tenant.tenantId, essay.id)).toBeNull();
      expect(await essays.read(tenant.tenantId, essay.id)).toBeNull();
      const [row] = await q(`SELECT status, text, grade FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, essay.id]);
      expect(row).toEqual({ status: 'graded', text: '', grade: null });
    });

    it('cancels an order still awaiting payment (webhook mode), with the reason; a payment that comes after is shown as money to return', async () => {
      await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: 'whsec_erasure_test_0123456789' }).expect(200);
      const essay = await f.gradedEssay(teacher, { seed: 85 });
      const { body: o } = await t.http.post(`/v1/essays/${essay.id}/deep-review`).set(bearer(teacher)).expect(202);
      expect(o.status).toBe('awaiting_payment');
      await erase(essay.id).expect(200);
      expect((await t.http.get(`/v1/orders/${o.orderId}`).set(bearer(teacher)).expect(200)).body).toMatchObject({
        status: 'cancelled',
        refundReason: 'the essay was erased before its deep review was delivered',
        cancelledAt: expect.any(String),
        refundedAt: null,
        unappliedPayments: '0.00',
      });
      // Nothing was paid: the month report counts no refund.
      const report = (await t.http.get('/v1/reports/month').set(bearer(tenant.adminKey)).expect(200)).body;
      expect(report.deepReviews).toMatchObject({ sold: 0, refunded: 0 });
      // A payment that arrives afterwards is recorded and changes nothing: no deep review is queued.
      const body = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'payment.succeeded', data: { orderId: o.orderId, amount: '9.90' } });
      await t.http
        .post(`/v1/payments/webhook/${tenant.tenantId}`)
        .set('Content-Type', 'application/json')
        .set('X-Inkstone-Signature', signPayload('whsec_erasure_test_0123456789', body))
        .send(body)
        .expect(200);
      // The money came in for nothing: the order shows it, to be returned to the payer.
      expect((await t.http.get(`/v1/orders/${o.orderId}`).set(bearer(teacher)).expect(200)).body).toMatchObject({ status: 'cancelled', unappliedPayments: '9.90' });
      expect(await q(`SELECT kind, status FROM jobs WHERE tenant_id = $1 AND essay_id = $2 ORDER BY created_at`, [tenant.tenantId, essay.id])).toEqual([{ kind: 'grade', status: 'done' }]);
    });

    it("a bus that lost messages (resync) drops its whole in-process tier", async () => {
      const essay = await f.gradedEssay(teacher, { seed: 86 });
      const [{ cache_key: key, content }] = await q(`SELECT cache_key, content FROM llm_cache WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
      const cache = t.app.get(ResponseCache);
      await waitFor(async () => (await cache.get(tenant.tenantId, key)) !== null, 5_000, 'the answer to be read');
      await q(`UPDATE llm_cache SET content = 'changed under the tier' WHERE tenant_id = $1 AND cache_key = $2`, [tenant.tenantId, key]);
      expect((await cache.get(tenant.tenantId, key))?.content).toBe(content);
      (t.app.get(ClusterBus) as unknown as { deliver(topic: string, payload: unknown): void }).deliver('resync', {});
      expect((await cache.get(tenant.tenantId, key))?.content).toBe('changed under the tier');
    });
  });

  describe('retention', () => {
    const settings = (body: Record<string, unknown>, key = tenant.adminKey) => t.http.put('/v1/grading/settings').set(bearer(key)).send(body);

    it('is a grading setting: whole days from 1 to 3650, or null to keep essays until erased; admin only', async () => {
      expect((await t.http.get('/v1/grading/settings').set(bearer(tenant.adminKey)).expect(200)).body.essayRetentionDays).toBeNull();
      expect((await settings({ essayRetentionDays: 365 }).expect(200)).body.essayRetentionDays).toBe(365);
      // Another setting changed alone leaves it as it is.
      expect((await settings({ directDeep: false }).expect(200)).body.essayRetentionDays).toBe(365);
      for (const bad of [0, 3651, 1.5, '30', -1]) await settings({ essayRetentionDays: bad }).expect(400);
      await settings({ essayRetentionDays: 30 }, teacher).expect(403);
      expect((await settings({ essayRetentionDays: null }).expect(200)).body.essayRetentionDays).toBeNull();
    });

    it("erases the tenant's essays older than its retention, oldest first, and nothing of a tenant that keeps its essays", async () => {
      const old1 = await f.gradedEssay(teacher, { seed: 61, studentRef: 'stu-61' });
      const old2 = await f.gradedEssay(teacher, { seed: 62 });
      const recent = await f.gradedEssay(teacher, { seed: 63 });
      const keeper = await f.newTenant();
      const keeperTeacher = (await f.newKey(keeper, 'teacher')).key;
      const kept = await f.gradedEssay(keeperTeacher, { seed: 64 });
      const backdate = (tenantId: string, id: string, days: number) =>
        q(`UPDATE essays SET created_at = now() - make_interval(days => $3) WHERE tenant_id = $1 AND id = $2`, [tenantId, id, days]);
      await backdate(tenant.tenantId, old1.id, 45);
      await backdate(tenant.tenantId, old2.id, 31);
      await backdate(tenant.tenantId, recent.id, 29);
      await backdate(keeper.tenantId, kept.id, 400);
      await settings({ essayRetentionDays: 30 }).expect(200);

      const sweep = await t.app.get(EssayRetention).sweep();
      expect(sweep).toEqual({ erased: 2, busy: 0, failed: 0, lateRows: 0 });
      const rows = await q(`SELECT id, erased_at IS NOT NULL AS erased, erased_by, text = '' AS blank FROM essays WHERE tenant_id = $1 ORDER BY created_at`, [tenant.tenantId]);
      expect(rows).toEqual([
        { id: old1.id, erased: true, erased_by: null, blank: true },
        { id: old2.id, erased: true, erased_by: null, blank: true },
        { id: recent.id, erased: false, erased_by: null, blank: false },
      ]);
      await t.http.get(`/v1/essays/${kept.id}`).set(bearer(keeperTeacher)).expect(200);
      expect(await t.app.get(EssayRetention).sweep()).toEqual({ erased: 0, busy: 0, failed: 0, lateRows: 0 });
    });

    it("takes the tenants in turn: a tenant's large backlog does not keep another tenant's expired essays stored until it is through", async () => {
      const backdate = (tenantId: string, id: string, days: number) =>
        q(`UPDATE essays SET created_at = now() - make_interval(days => $3) WHERE tenant_id = $1 AND id = $2`, [tenantId, id, days]);
      const backlog = [];
      for (const [i, days] of [400, 399, 398].entries()) {
        const e = await f.gradedEssay(teacher, { seed: 65 + i });
        await backdate(tenant.tenantId, e.id, days);
        backlog.push(e.id);
      }
      await settings({ essayRetentionDays: 30 }).expect(200);
      const other = await f.newTenant();
      const otherTeacher = (await f.newKey(other, 'teacher')).key;
      const late = await f.gradedEssay(otherTeacher, { seed: 68 });
      await backdate(other.tenantId, late.id, 40);
      await settings({ essayRetentionDays: 30 }, other.adminKey).expect(200);
      const mine = new Set([...backlog, late.id]);
      const order = (await t.app.get(EssaysRepository).pastRetention(1_000)).filter((e) => mine.has(e.id)).map((e) => e.id);
      // Each tenant's oldest, then each one's second oldest, …: the other school's essay comes second, not last.
      expect(order).toEqual([backlog[0], late.id, backlog[1], backlog[2]]);
      await t.app.get(EssayRetention).sweep();
      expect(await q(`SELECT count(*)::int AS n FROM essays WHERE id = ANY($1::uuid[]) AND erased_at IS NOT NULL`, [[...mine]])).toEqual([{ n: 4 }]);
    });
  });

  describe('the sweep after erasures', () => {
    it("removes what a grading that outlived its lease wrote for an essay after its erasure, from every table and every instance's tier", async () => {
      const essay = await f.gradedEssay(teacher, { seed: 91 });
      const [cached] = await q(`SELECT * FROM llm_cache WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
      const [guard] = await q(`SELECT * FROM call_guards WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
      const [signature] = await q(`SELECT * FROM essay_signatures WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
      const lsh = await q(`SELECT * FROM essay_lsh WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, essay.id]);
      await erase(essay.id).expect(200);
      // What the late grading writes once the erasure has committed: its settlement's cache row and
      // guard, its near-duplicate rows (put back as they were), and a read that fills this instance's tier.
      const columns = (row: Record<string, any>) => Object.keys(row).filter((c) => row[c] !== null);
      const putBack = (table: string, row: Record<string, any>) =>
        q(`INSERT INTO ${table} (${columns(row).join(', ')}) VALUES (${columns(row).map((_, i) => `$${i + 1}`).join(', ')})`, columns(row).map((c) => row[c]));
      await putBack('llm_cache', cached);
      await putBack('call_guards', guard);
      await putBack('essay_signatures', signature);
      for (const row of lsh) await putBack('essay_lsh', row);
      const cache = t.app.get(ResponseCache);
      await waitFor(async () => (await cache.get(tenant.tenantId, cached.cache_key)) !== null, 5_000, 'the late answer to be read');

      const sweep = await t.app.get(EssayRetention).sweep();
      expect(sweep).toEqual({ erased: 0, busy: 0, failed: 0, lateRows: 3 + lsh.length });
      for (const table of ['llm_cache', 'call_guards', 'essay_signatures', 'essay_lsh']) expect([table, await count(table, essay.id)]).toEqual([table, 0]);
      expect(await cache.get(tenant.tenantId, cached.cache_key)).toBeNull();
    });
  });

  describe('queued work', () => {
    const stopWorkers = () => t.app.get(GradingWorker).stop(0);
    const startWorkers = () => t.app.get(GradingWorker).start();

    it('fails a queued grading with ERASED: no provider call, nothing spent', async () => {
      await stopWorkers();
      let id: string;
      try {
        id = await f.essay(teacher, { seed: 46, studentRef: 's-046' });
        await erase(id).expect(200);
      } finally {
        startWorkers();
      }
      const [row] = await q(`SELECT status, failure_code, text, student_ref FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id!]);
      expect(row).toEqual({ status: 'failed', failure_code: 'ERASED', text: '', student_ref: null });
      expect(await q(`SELECT status, last_error FROM jobs WHERE tenant_id = $1 AND essay_id = $2`, [tenant.tenantId, id!])).toEqual([
        { status: 'failed', last_error: 'the essay was erased' },
      ]);
      // A worker that starts now finds nothing to do for it.
      await new Promise((r) => setTimeout(r, 300));
      expect(fake.requests).toHaveLength(0);
      expect((await ledger()).n).toBe(0);
    });

    it("lets a tenant erase one student's essays at a time on an instance: a second call meanwhile is 429, and nothing is lost", async () => {
      await stopWorkers();
      try {
        const essays = Array.from({ length: 60 }, (_, i) => ({ text: generateEssay(700 + i, 'zh').text, studentRef: 'stu-flood' }));
        const ids = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays }).expect(202)).body.ids as string[];
        const call = () => t.http.post('/v1/essays/erase').set(bearer(tenant.adminKey)).send({ studentRef: 'stu-flood' });
        const both = await Promise.all([call(), new Promise((r) => setTimeout(r, 20)).then(call)]);
        expect(both.map((r) => r.status).sort()).toEqual([200, 429]);
        const first = both.find((r) => r.status === 200)!;
        const second = both.find((r) => r.status === 429)!;
        expect(second.body.error.code).toBe('RATE_LIMITED');
        expect(second.headers['retry-after']).toBe('1');
        // The call that went through erased them all; once it ended, a call goes through again and finds nothing left.
        expect([...first.body.erased].sort()).toEqual([...ids].sort());
        expect((await call().expect(200)).body.erased).toEqual([]);
        expect(await q(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1 AND student_ref IS NOT NULL`, [tenant.tenantId])).toEqual([{ n: 0 }]);
      } finally {
        startWorkers();
      }
    });

    it('refunds a paid deep review not yet delivered and cancels its job; a delivered one stays delivered and its replay guard goes', async () => {
      await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '5.00', paymentMode: 'invoice' }).expect(200);
      // Delivered: the deep review ran, its call's guard keeps the answer for a replay.
      const delivered = await f.gradedEssay(teacher, { seed: 47 });
      const { body: done } = await t.http.post(`/v1/essays/${delivered.id}/deep-review`).set(bearer(teacher)).expect(202);
      await waitFor(async () => (await t.http.get(`/v1/orders/${done.orderId}`).set(bearer(teacher))).body.status === 'delivered', 20_000, 'the deep review');
      expect(await count('call_guards', delivered.id)).toBeGreaterThan(0);
      // Paid and waiting: the worker is stopped before it can run.
      const waiting = await f.gradedEssay(teacher, { seed: 48 });
      await stopWorkers();
      try {
        const { body: open } = await t.http.post(`/v1/essays/${waiting.id}/deep-review`).set(bearer(teacher)).expect(202);
        expect(open.status).toBe('paid');
        await erase(waiting.id).expect(200);
        const order = (await t.http.get(`/v1/orders/${open.orderId}`).set(bearer(teacher)).expect(200)).body;
        expect(order).toMatchObject({ status: 'refunded', refundReason: 'the essay was erased before its deep review was delivered' });
        expect(await q(`SELECT status, last_error FROM jobs WHERE tenant_id = $1 AND order_id = $2`, [tenant.tenantId, open.orderId])).toEqual([
          { status: 'failed', last_error: 'the essay was erased' },
        ]);
      } finally {
        startWorkers();
      }
      await erase(delivered.id).expect(200);
      expect(await count('call_guards', delivered.id)).toBe(0);
      expect((await t.http.get(`/v1/orders/${done.orderId}`).set(bearer(teacher)).expect(200)).body.status).toBe('delivered');
      await expectBooksBalanced(t.dataSource, tenant.tenantId);
    });
  });
});
