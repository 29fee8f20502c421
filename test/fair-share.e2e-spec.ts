import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { BudgetService } from '../src/billing/budget.service';
import { GradingService } from '../src/grading/grading.service';
import { JobQueue } from '../src/jobs/job-queue';
import { CONFIG } from '../src/config/app-config';
import { LimitsService } from '../src/tenancy/limits.service';
import { EssaysService } from '../src/grading/essays.service';
import type { TenantsRepository } from '../src/tenancy/tenants.repository';
import { GatewayService } from '../src/llm/gateway.service';
import { ClusterBus } from '../src/db/cluster-bus';
import { DatabaseConnection } from '../src/db/database';
import { FakeProvider, startFakeProvider } from './fake-provider/fake-provider';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { storedEssays, waitForEssays } from './support/grading';
import { providerEnv } from './support/providers';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { serverUrl } from './support/test-database';
import { startAppWithFake } from './support/app-with-fake';

/** Opens an SSE stream and collects its events until it ends or is closed. */
function openStream(app: NestFastifyApplication, path: string, key: string) {
  const port = (app.getHttpServer().address() as AddressInfo).port;
  const events: Array<{ event: string; data: any }> = [];
  let status = 0;
  let body = '';
  const req = http.get({ host: '127.0.0.1', port, path, headers: bearer(key) });
  const done = new Promise<void>((resolve) => {
    req.on('response', (res) => {
      status = res.statusCode!;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        for (let i = body.indexOf('\n\n'); i >= 0; i = body.indexOf('\n\n')) {
          const block = body.slice(0, i);
          body = body.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      });
      res.on('end', resolve);
      res.on('close', resolve);
    });
    req.on('error', () => resolve());
  });
  return { events, status: () => status, done, close: () => req.destroy() };
}

describe('fair share: per-tenant limits, a fair queue, and instances that agree', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ WORKERS_ENABLED: 'false', LIMIT_REQUESTS_PER_SECOND_PER_KEY: '2', LIMIT_REQUEST_BURST_PER_KEY: '3', HTTP_STREAM_STALL_MS: '3000' }));
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    f = new Factory(t.app);
  });
  afterAll(async () => {
    try {
      await t.close();
    } finally {
      await fake.close();
    }
  });
  beforeEach(async () => {
    fake.reset();
    fake.setLatency(0);
    tenant = await f.newTenant();
    teacher = (await f.newKey(tenant, 'teacher')).key;
    // Generous per-key limits, except in the test of the per-key limit.
    await t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ requestsPerSecondPerKey: 100000, requestBurstPerKey: 100000 }).expect(200);
  });

  const setLimits = (limits: Record<string, number | null>) => t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send(limits).expect(200);

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const takenWithin = (slot: Promise<unknown>, ms: number) => Promise.race([slot.then(() => true), sleep(ms).then(() => false)]);
  /**
   * For the share tests: the slots of one kind a tenant waits for, queued in turn (`queue(i)` takes
   * one and records `i` in `order` when it is taken), every slot taken kept in `releases`.
   */
  const slotsInTurn = async (take: () => Promise<() => void>) => {
    await sleep(300); // earlier tests' reads no longer count as reading
    const releases: Array<() => void> = [];
    const order: number[] = [];
    const waiting: Array<Promise<() => void>> = [];
    const queue = (i: number) => waiting.push(take().then((release) => (order.push(i), releases.push(release), release)));
    const releaseAll = async () => {
      for (const release of releases) release();
      for (const release of await Promise.all(waiting)) release();
    };
    return { releases, order, queue, releaseAll };
  };

  it('limits requests per key with a token bucket: 429 with Retry-After and RateLimit headers, nothing stored, other keys unaffected', async () => {
    await setLimits({ requestsPerSecondPerKey: null, requestBurstPerKey: null }); // back to the defaults of this app: 2/s, burst 3
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.http.get('/v1/limits').set(bearer(teacher));
      statuses.push(res.status);
      expect(res.headers['ratelimit-limit']).toBe('3');
    }
    expect(statuses).toEqual([200, 200, 200]);
    const refused = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(1, 'zh').text }).expect(429);
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    expect(Number(refused.headers['ratelimit-reset'])).toBeGreaterThanOrEqual(1);
    expect(await storedEssays(t.dataSource, tenant.tenantId)).toEqual([]);
    // The admin's key has a bucket of its own.
    await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200);
  });

  it('limits requests per tenant across all its keys: more keys buy no larger share; another tenant is unaffected', async () => {
    await setLimits({ requestsPerSecondPerTenant: 1, requestBurstPerTenant: 4, requestsPerSecondPerKey: 1, requestBurstPerKey: 3 });
    const keys = [teacher, ...(await Promise.all([f.newKey(tenant, 'teacher'), f.newKey(tenant, 'teacher')])).map((k) => k.key)];
    // Two requests from each of three keys, each key well within its own bucket: the tenant's holds four.
    const answers = [];
    for (const key of [...keys, ...keys]) answers.push(await t.http.get('/v1/limits').set(bearer(key)));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 429, 429]);
    // The headers were the tenant's bucket, nearer to refusing than any key's.
    expect(answers[3].headers['ratelimit-limit']).toBe('4');
    expect(answers[3].headers['ratelimit-remaining']).toBe('0');
    const refused = answers[4];
    expect(refused.body.error).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining("tenant's keys together") });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Another tenant's requests go on.
    const other = await f.newTenant();
    await t.http.get('/v1/limits').set(bearer(other.adminKey)).expect(200);
    // A refused request took no token from its key: with the tenant's limit lifted, the key that was
    // refused once still has two of its three (it spent one), then its own bucket refuses.
    await setLimits({ requestsPerSecondPerTenant: null, requestBurstPerTenant: null });
    const again = [];
    for (let i = 0; i < 3; i++) again.push(await t.http.get('/v1/limits').set(bearer(keys[1])));
    expect(again.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(again[2].body.error.message).toContain('This key sent');
  });

  it('keeps a tenant within its active API keys: 429 past the limit, even for keys asked for at once; a revoked key makes room', async () => {
    // The tenant has two keys (its first admin key and the teacher's).
    expect((await t.http.get('/v1/limits').set(bearer(teacher)).expect(200)).body.usage.apiKeys).toBe(2);
    await setLimits({ apiKeys: 5 });
    // Eight asked for at once: three fit.
    const asked = await Promise.all(Array.from({ length: 8 }, (_, i) => t.http.post('/v1/api-keys').set(bearer(tenant.adminKey)).send({ name: `burst ${i}`, role: 'teacher' })));
    expect(asked.filter((r) => r.status === 201)).toHaveLength(3);
    const refused = asked.filter((r) => r.status !== 201);
    expect(refused.map((r) => r.status)).toEqual([429, 429, 429, 429, 429]);
    expect(refused[0].body.error).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('revoke one') });
    expect(refused[0].headers['retry-after']).toBeDefined();
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL`, [tenant.tenantId]);
    expect(n).toBe(5);
    expect((await t.http.get('/v1/limits').set(bearer(teacher)).expect(200)).body.usage.apiKeys).toBe(5);
    // Revoking one makes room for one.
    await t.http.delete(`/v1/api-keys/${asked.find((r) => r.status === 201)!.body.id}`).set(bearer(tenant.adminKey)).expect(204);
    await t.http.post('/v1/api-keys').set(bearer(tenant.adminKey)).send({ name: 'after a revocation', role: 'teacher' }).expect(201);
    await t.http.post('/v1/api-keys').set(bearer(tenant.adminKey)).send({ name: 'one too many', role: 'teacher' }).expect(429);
    // Another tenant's keys are its own count.
    const other = await f.newTenant();
    await t.http.post('/v1/api-keys').set(bearer(other.adminKey)).send({ name: 'other school', role: 'teacher' }).expect(201);
  });

  it('keeps a tenant within its rubric versions: making or editing a rubric past the limit is 429, even at once; another tenant is its own count', async () => {
    const school = await f.newTenant();
    await t.http.put(`/v1/tenants/${school.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ rubricVersions: 4, requestsPerSecondPerKey: 1000, requestBurstPerKey: 1000 }).expect(200); // (this app's key bucket holds 3)
    const rubric = (key: string) => ({ key, name: '初中作文', language: 'zh', totalRule: 'sum', dimensions: [{ key: 'content', name: '内容', max: 30, kind: 'content', description: '中心明确' }] });
    const admin = bearer(school.adminKey);
    await t.http.post('/v1/rubrics').set(admin).send(rubric('junior')).expect(201);
    // Edits are versions too: one edit, then six asked for at once (three new rubrics, three edits): two fit.
    const { key: _k, ...body } = rubric('junior');
    await t.http.put('/v1/rubrics/junior').set(admin).send(body).expect(200);
    const asked = await Promise.all([
      ...[1, 2, 3].map((i) => t.http.post('/v1/rubrics').set(admin).send(rubric(`burst-${i}`))),
      ...[1, 2, 3].map(() => t.http.put('/v1/rubrics/junior').set(admin).send(body)),
    ]);
    expect(asked.filter((r) => r.status === 201 || r.status === 200)).toHaveLength(2);
    const refused = asked.filter((r) => r.status !== 201 && r.status !== 200);
    expect(refused.map((r) => r.status)).toEqual([429, 429, 429, 429]);
    expect(refused[0].body.error).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('its limit of 4 rubric versions') });
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM rubrics WHERE tenant_id = $1`, [school.tenantId]);
    expect(n).toBe(4);
    expect((await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.rubricVersions).toBe(4);
    // At the limit, a key that is not there or one taken is still said as such (raising the limit would not help). Before: 429.
    await t.http.put('/v1/rubrics/not-there').set(admin).send(body).expect(404);
    expect((await t.http.post('/v1/rubrics').set(admin).send(rubric('junior')).expect(409)).body.error.message).toContain('exists');
    // What was written is whole: the versions of "junior" run on without a gap.
    const [{ versions }] = await t.dataSource.query(`SELECT array_agg(version ORDER BY version) AS versions FROM rubrics WHERE tenant_id = $1 AND key = 'junior'`, [school.tenantId]);
    expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
    // Another tenant makes its own.
    const other = await f.newTenant();
    await t.http.post('/v1/rubrics').set(bearer(other.adminKey)).send(rubric('junior')).expect(201);
  });

  it("counts the limits view's usage at most once a second a tenant (once for views asked at once), and again at once after something counted is made here", async () => {
    const school = await f.newTenant();
    const admin = bearer(school.adminKey);
    // The view's own counts (made without a transaction; a limit check passes its own).
    const counted = jest.spyOn((t.app.get(LimitsService) as unknown as { tenants: TenantsRepository }).tenants, 'countUpTo');
    const viewCounts = () => counted.mock.calls.filter(([id, , , tx]) => id === school.tenantId && tx === undefined).length;
    try {
      // The operator's change of the tenant's limits answers with the view, counted anew (3 counts:
      // keys, rubric versions, assignments); ten views right after count again at most once more
      // (once a second; without the cache, 30 more).
      await t.http.put(`/v1/tenants/${school.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ requestsPerSecondPerKey: 1000, requestBurstPerKey: 1000 }).expect(200);
      expect(viewCounts()).toBe(3);
      const views = await Promise.all(Array.from({ length: 10 }, () => t.http.get('/v1/limits').set(admin)));
      expect(views.map((r) => r.status)).toEqual(views.map(() => 200));
      expect(views.map((r) => r.body.usage.assignments)).toEqual(views.map(() => 0));
      expect(viewCounts()).toBeLessThanOrEqual(6);
      // Made or revoked on this instance: the next view counts it, at once.
      await t.http.post('/v1/assignments').set(admin).send({ title: '计数', prompt: '以“计数”为题', rubric: 'zh-gaokao-60' }).expect(201);
      expect((await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.assignments).toBe(1);
      const keys = async () => (await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.apiKeys as number;
      const before = await keys();
      const made = (await t.http.post('/v1/api-keys').set(admin).send({ name: 'counted', role: 'teacher' }).expect(201)).body.id;
      expect(await keys()).toBe(before + 1);
      await t.http.delete(`/v1/api-keys/${made}`).set(admin).expect(204);
      expect(await keys()).toBe(before);
      // A second after its last count, the view counts again.
      const n = viewCounts();
      await new Promise((r) => setTimeout(r, 1_100));
      await t.http.get('/v1/limits').set(admin).expect(200);
      expect(viewCounts()).toBe(n + 3);
      // A count the database cancels at its timeout is not kept: that view is 503 DATABASE_BUSY, and
      // the next one counts again and answers, with what was made meanwhile.
      await t.http.post('/v1/assignments').set(admin).send({ title: '计数二', prompt: '以“计数”为题', rubric: 'zh-gaokao-60' }).expect(201);
      counted.mockRejectedValueOnce(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }));
      expect((await t.http.get('/v1/limits').set(admin).expect(503)).body.error.code).toBe('DATABASE_BUSY');
      expect((await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.assignments).toBe(2);
    } finally {
      counted.mockRestore();
    }
  });

  it('keeps a tenant within its assignments: past the limit 429, even for several made at once, and nothing stored', async () => {
    const school = await f.newTenant();
    await t.http.put(`/v1/tenants/${school.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ assignments: 3, requestsPerSecondPerKey: 1000, requestBurstPerKey: 1000 }).expect(200);
    const admin = bearer(school.adminKey);
    const assignment = (i: number) => ({ title: `第${i}单元作文`, prompt: '以“那一刻，我长大了”为题，写一篇记叙文。', rubric: 'zh-gaokao-60' });
    await t.http.post('/v1/assignments').set(admin).send(assignment(0)).expect(201);
    const asked = await Promise.all([1, 2, 3, 4, 5].map((i) => t.http.post('/v1/assignments').set(admin).send(assignment(i))));
    expect(asked.filter((r) => r.status === 201)).toHaveLength(2);
    const refused = asked.filter((r) => r.status !== 201);
    expect(refused.map((r) => r.status)).toEqual([429, 429, 429]);
    expect(refused[0].body.error).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('its limit of 3 assignments') });
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM assignments WHERE tenant_id = $1`, [school.tenantId]);
    expect(n).toBe(3);
    expect((await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.assignments).toBe(3);
    // Counted up to the limit only: lowered below what the tenant has, usage shows the limit, and a new one is refused.
    await t.http.put(`/v1/tenants/${school.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ assignments: 2 }).expect(200);
    expect((await t.http.get('/v1/limits').set(admin).expect(200)).body.usage.assignments).toBe(2);
    expect((await t.http.post('/v1/assignments').set(admin).send(assignment(9)).expect(429)).body.error.message).toContain('its limit of 2 assignments');
    // Another tenant's are its own count.
    const other = await f.newTenant();
    await t.http.post('/v1/assignments').set(bearer(other.adminKey)).send(assignment(1)).expect(201);
  });

  it("shows the tenant its limits and usage; the operator sets them per tenant, and null restores the default", async () => {
    const view = await t.http.get('/v1/limits').set(bearer(teacher)).expect(200);
    expect(view.body.limits).toMatchObject({ requestsPerSecondPerTenant: 100000, apiKeys: 2000, essaysQueued: 20000, essaysGrading: 64, chatInFlight: 16, eventStreams: 100, providerCalls: 64 });
    expect(view.body.limits.reportsInFlight).toBe(3);
    expect(view.body.limits.readsInFlight).toBe(4);
    expect(view.body.usage).toEqual({ apiKeys: 2, rubricVersions: 0, assignments: 0, essaysQueued: 0, chatInFlight: 0, eventStreams: 0, providerCalls: 0, reportsInFlight: 0, readsInFlight: 0 });
    expect(view.body.scope.chatInFlight).toBe('per tenant, per instance');
    // A key's request buckets are each instance's own, as the README's table says (before: 'per key').
    expect([view.body.scope.requestsPerSecondPerKey, view.body.scope.requestBurstPerKey]).toEqual(['per key, per instance', 'per key, per instance']);
    await setLimits({ essaysQueued: 5 });
    expect((await t.http.get('/v1/limits').set(bearer(teacher)).expect(200)).body.limits.essaysQueued).toBe(5);
    await setLimits({ essaysQueued: null });
    expect((await t.http.get('/v1/limits').set(bearer(teacher)).expect(200)).body.limits.essaysQueued).toBe(20000);
    // The tenant's id typed in capitals is the same tenant, and the change shows at once.
    await t.http.put(`/v1/tenants/${tenant.tenantId.toUpperCase()}/limits`).set(bearer(OPERATOR_TOKEN)).send({ essaysQueued: 7 }).expect(200);
    expect((await t.http.get('/v1/limits').set(bearer(teacher)).expect(200)).body.limits.essaysQueued).toBe(7);
    await setLimits({ essaysQueued: null });
    await t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(tenant.adminKey)).send({ essaysQueued: 1e6 }).expect(403);
    await t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ essaysQueued: 0 }).expect(400);
    await t.http.put(`/v1/tenants/00000000-0000-4000-8000-000000000000/limits`).set(bearer(OPERATOR_TOKEN)).send({ essaysQueued: 5 }).expect(404);
  });

  it('refuses essays over the queued limit with 429, storing none of them', async () => {
    await setLimits({ essaysQueued: 3 });
    for (let i = 0; i < 2; i++) await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(10 + i, 'zh').text }).expect(202);
    const batch = await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: [{ text: generateEssay(20, 'zh').text }, { text: generateEssay(21, 'zh').text }] }).expect(429);
    expect(batch.body.error.code).toBe('RATE_LIMITED');
    expect(batch.headers['retry-after']).toBeDefined();
    expect(await storedEssays(t.dataSource, tenant.tenantId)).toHaveLength(2);
    await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(22, 'zh').text }).expect(202);
    await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(23, 'zh').text }).expect(429);
    expect(await storedEssays(t.dataSource, tenant.tenantId)).toHaveLength(3);
  });

  it('holds class sets sent at once to the queued limit: the requests that find the count stale share its read and take their room from it in turn', async () => {
    await setLimits({ essaysQueued: 50 });
    // Six class sets of 50 admitted at once, before any count of the tenant is cached (over HTTP their
    // parsing spaces them out on a quiet machine; on a busy one they meet like this).
    const admitted = await Promise.allSettled(Array.from({ length: 6 }, () => t.app.get(LimitsService).admitQueued(tenant.tenantId, 50)));
    expect(admitted.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected']);
    expect(admitted.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason.code)).toEqual(Array(5).fill('RATE_LIMITED'));
  });

  it('counts a class set still being written when the queued count is read again, and gives its room back when the write fails', async () => {
    await setLimits({ essaysQueued: 10 });
    const limits = t.app.get(LimitsService);
    await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(30, 'zh').text }).expect(202);
    // A class set of 9 admitted, its write not ended yet (a large one on a busy database)…
    const writing = await limits.admitQueued(tenant.tenantId, 9);
    // …when the count is read from the queue again (it is kept a second), which does not see it yet.
    await new Promise((r) => setTimeout(r, 1_100));
    const second = await limits.admitQueued(tenant.tenantId, 9).catch((e) => e);
    // Before: read as 1 queued, admitted — 19 under a limit of 10.
    expect(second.code).toBe('RATE_LIMITED');
    // The write fails: its room is free again.
    writing(false);
    const third = await limits.admitQueued(tenant.tenantId, 9);
    third(false);
  });

  it('counts a class set whose write ends while the queued count is being read: in the read or in what was still being written, never in neither', async () => {
    await setLimits({ essaysQueued: 10 });
    const limits = t.app.get(LimitsService);
    const queue = t.app.get(JobQueue);
    await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(31, 'zh').text }).expect(202);
    const writing = await limits.admitQueued(tenant.tenantId, 9);
    await new Promise((r) => setTimeout(r, 1_100));
    // The next read of the queue takes its snapshot (1 queued: the class set not written yet)…
    const real = queue.queuedGradings.bind(queue);
    let readDone!: () => void;
    const read = new Promise<void>((r) => (readDone = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const spy = jest.spyOn(queue, 'queuedGradings').mockImplementation(async (...args) => {
      const n = await real(...args);
      readDone();
      await gate;
      return n;
    });
    try {
      const next = limits.admitQueued(tenant.tenantId, 1).catch((e) => e);
      await read;
      // …the class set's write ends before the read is done…
      writing(true);
      release();
      // …and is counted all the same: 1 + 9 queued, no room for one more. (Before: counted nowhere, admitted.)
      expect((await next).code).toBe('RATE_LIMITED');
    } finally {
      release();
      spy.mockRestore();
    }
  });

  it('says a class set larger than the queued limit will never fit, and how much room is left when one does not fit now', async () => {
    await setLimits({ essaysQueued: 5 });
    const batch = (n: number, seed: number) => t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: Array.from({ length: n }, (_, i) => ({ text: generateEssay(seed + i, 'zh').text })) });
    // 413, as a batch over 200: a 429 told the client to try again, and it never fits.
    const tooBig = await batch(6, 40).expect(413);
    expect(tooBig.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: 'A class set of 6 essays is more than this tenant may have waiting to be graded (limit 5): send it in parts of at most 5' });
    expect(tooBig.headers['retry-after']).toBeUndefined();
    await batch(3, 50).expect(202);
    const notNow = await batch(3, 60).expect(429);
    expect(notNow.body.error.message).toBe('This tenant already has 3 essays waiting to be graded (limit 5, room for 2 more); try again when some are done');
    expect(notNow.headers['ratelimit-remaining']).toBe('2');
    expect(await storedEssays(t.dataSource, tenant.tenantId)).toHaveLength(3);
  });

  it('refuses a chat call over the in-flight limit with 429 and charges nothing for it', async () => {
    await setLimits({ chatInFlight: 1 });
    fake.setLatency(600);
    const chat = () => t.http.post('/v1/chat/completions').set(bearer(teacher)).send({ model: 'inkstone-standard', messages: [{ role: 'user', content: '你好' }] });
    const [a, b] = await Promise.all([chat(), new Promise((r) => setTimeout(r, 150)).then(chat)]);
    expect([a.status, b.status].sort()).toEqual([200, 429]);
    expect(fake.requests).toHaveLength(1);
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(1);
    fake.setLatency(0);
    await chat().expect(200); // the slot was given back
  });

  it('refuses an event stream over the limit with 429, and takes one again when a stream closes', async () => {
    await setLimits({ eventStreams: 1 });
    const res = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(30, 'zh').text }).expect(202);
    const first = openStream(t.app, `/v1/essays/${res.body.id}/events`, teacher);
    await waitFor(() => first.events.length > 0);
    const second = await t.http.get(`/v1/essays/${res.body.id}/events`).set(bearer(teacher)).expect(429);
    expect(second.body.error.code).toBe('RATE_LIMITED');
    first.close();
    await waitFor(async () => (await t.http.get('/v1/limits').set(bearer(teacher))).body.usage.eventStreams === 0);
    const third = openStream(t.app, `/v1/essays/${res.body.id}/events`, teacher);
    await waitFor(() => third.events.length > 0);
    expect(third.status()).toBe(200);
    third.close();
  });

  it("reads an essay's event stream's view within the tenant's read slots, and only once the stream holds its slot: a flood of streams reads no more at once than readsInFlight", async () => {
    await setLimits({ readsInFlight: 1, eventStreams: 1 });
    const res = await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(31, 'zh').text }).expect(202);
    const limits = t.app.get(LimitsService);
    const read = jest.spyOn(t.app.get(EssaysService), 'get');
    try {
      const release = await limits.readSlot(tenant.tenantId);
      const stream = openStream(t.app, `/v1/essays/${res.body.id}/events`, teacher);
      await waitFor(async () => (await t.http.get('/v1/limits').set(bearer(teacher))).body.usage.eventStreams === 1, 5_000, 'the stream open');
      await sleep(300);
      expect(stream.events).toEqual([]); // its view waits for the read slot
      // A stream over the limit is refused without reading the essay's view.
      const before = read.mock.calls.length;
      await t.http.get(`/v1/essays/${res.body.id}/events`).set(bearer(teacher)).expect(429);
      expect(read.mock.calls.length).toBe(before);
      release();
      await waitFor(() => stream.events.length > 0, 5_000, 'the status sent once the slot is free');
      stream.close();
    } finally {
      read.mockRestore();
    }
    // An id of no essay of the school is still 404 before the stream starts.
    await t.http.get(`/v1/essays/${randomUUID()}/events`).set(bearer(teacher)).expect(404);
    await t.http.get('/v1/essays/not-an-id/events').set(bearer(teacher)).expect(404);
  });

  it('reads at most reportsInFlight of a tenant ledger reports at once: more wait their turn, another tenant does not wait', async () => {
    await setLimits({ reportsInFlight: 1 });
    const limits = t.app.get(LimitsService);
    const other = await f.newTenant();
    const answered = (req: PromiseLike<unknown>, ms: number) => Promise.race([Promise.resolve(req).then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);
    // The tenant's one slot taken, as by a long report.
    const release = await limits.reportSlot(tenant.tenantId);
    const waiting = ['/v1/usage?groupBy=model', '/v1/stats', '/v1/reports/month'].map((path) => t.http.get(path).set(bearer(tenant.adminKey)).then((r) => r));
    try {
      expect((await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.reportsInFlight).toBe(1);
      expect(await answered(Promise.all(waiting), 800)).toBe(false);
      // Another tenant's reports do not wait behind them.
      expect(await answered(t.http.get('/v1/usage').set(bearer(other.adminKey)).expect(200), 5_000)).toBe(true);
      expect(await answered(t.http.get('/v1/reports/month').set(bearer(other.adminKey)).expect(200), 5_000)).toBe(true);
    } finally {
      release();
    }
    // Freed, the waiting reports are read one after the other, each answered.
    const done = await Promise.all(waiting);
    expect(done.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.reportsInFlight).toBe(0);
    await setLimits({ reportsInFlight: null });
  });

  it('refuses a report with 429 when 32 of the tenant reports already wait, and gives back the slot of a report that fails', async () => {
    await setLimits({ reportsInFlight: 1 });
    const limits = t.app.get(LimitsService);
    const inFlight = async () => (await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.reportsInFlight;
    const held = await limits.reportSlot(tenant.tenantId);
    const waiting = Array.from({ length: 32 }, () => limits.reportSlot(tenant.tenantId));
    const refused = await t.http.get('/v1/stats').set(bearer(tenant.adminKey)).expect(429);
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    expect(refused.headers['retry-after']).toBe('1');
    // The waiting ones are served in turn, each when the one before gives its slot back.
    held();
    for (const w of waiting) (await w)();
    expect(await inFlight()).toBe(0);
    // A report that fails gives its slot back: the error is the read's, and the next report is read.
    await expect(limits.report(tenant.tenantId, async () => Promise.reject(new Error('the database went away')))).rejects.toThrow('the database went away');
    expect(await inFlight()).toBe(0);
    await t.http.get('/v1/stats').set(bearer(tenant.adminKey)).expect(200);
    await setLimits({ reportsInFlight: null });
  });

  it('takes a report out of the queue when its client goes away, so it holds no place there and is never read', async () => {
    await setLimits({ reportsInFlight: 1 });
    const limits = t.app.get(LimitsService);
    const port = (t.app.getHttpServer().address() as AddressInfo).port;
    const settled = (p: Promise<unknown>) => Promise.race([p.then(() => 'taken', () => 'refused'), new Promise((r) => setTimeout(() => r('waiting'), 100))]);
    const held = await limits.reportSlot(tenant.tenantId);
    const waiting = Array.from({ length: 31 }, () => limits.reportSlot(tenant.tenantId));
    // The 32nd waiter: a client's report, which then goes away.
    const req = http.get({ host: '127.0.0.1', port, path: '/v1/stats', headers: bearer(tenant.adminKey) });
    req.on('error', () => undefined);
    await waitFor(async () => (await t.http.get('/v1/stats').set(bearer(tenant.adminKey))).status === 429, 5_000, 'the client report waiting');
    req.destroy();
    // Its place is given up: a 32nd waiter is taken again (it was refused while the report waited).
    let last: Promise<() => void> | undefined;
    await waitFor(async () => {
      const attempt = limits.reportSlot(tenant.tenantId);
      attempt.catch(() => undefined);
      if ((await settled(attempt)) !== 'waiting') return false;
      last = attempt;
      return true;
    }, 5_000, 'a place in the queue given up');
    // Every waiter is served in turn; none waits for the report of the client that left.
    held();
    for (const w of [...waiting, last!]) (await w)();
    expect((await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.reportsInFlight).toBe(0);
    await setLimits({ reportsInFlight: null });
  });

  it("reads at most readsInFlight of a tenant's lists and exports at once: more wait their turn (64 at most, then 429), another tenant's do not, a client gone leaves the queue", async () => {
    await setLimits({ readsInFlight: 1 });
    const limits = t.app.get(LimitsService);
    const other = await f.newTenant();
    const answered = (req: PromiseLike<unknown>, ms: number) => Promise.race([Promise.resolve(req).then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);
    const inFlight = async () => (await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.readsInFlight;
    const assignmentId = (await t.http.post('/v1/assignments').set(bearer(tenant.adminKey)).send({ title: 'Reads', prompt: '以“秋天”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    // The tenant's one slot taken, as by a long export.
    const held = await limits.readSlot(tenant.tenantId);
    const essayId = (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ assignmentId, text: generateEssay(4242, 'zh').text }).expect(202)).body.id;
    const paths = [`/v1/essays/${essayId}`, '/v1/essays?limit=100', '/v1/assignments', `/v1/assignments/${assignmentId}`, `/v1/assignments/${assignmentId}/grades.csv`, '/v1/orders', '/v1/quality', `/v1/assignments/${assignmentId}/agreement`, '/v1/rubrics'];
    const waiting = paths.map((path) => t.http.get(path).set(bearer(tenant.adminKey)).then((r) => r));
    try {
      await waitFor(async () => (await inFlight()) === 1, 5_000, 'the slot held');
      expect(await answered(Promise.all(waiting), 800)).toBe(false);
      // Another tenant's lists do not wait behind them, nor the tenant's reads of a rubric or its limits.
      expect(await answered(t.http.get('/v1/essays').set(bearer(other.adminKey)).expect(200), 5_000)).toBe(true);
      expect(await answered(t.http.get('/v1/assignments').set(bearer(other.adminKey)).expect(200), 5_000)).toBe(true);
      expect(await answered(t.http.get('/v1/rubrics/zh-gaokao-60').set(bearer(tenant.adminKey)).expect(200), 5_000)).toBe(true);
    } finally {
      held();
    }
    // Freed, the waiting reads are answered in turn.
    expect((await Promise.all(waiting)).map((r) => r.status)).toEqual(paths.map(() => 200));
    expect(await inFlight()).toBe(0);

    // 64 waiting: the next is refused with 429, nothing read; a client that goes away gives up its place.
    const again = await limits.readSlot(tenant.tenantId);
    const queued = Array.from({ length: 63 }, () => limits.readSlot(tenant.tenantId));
    const port = (t.app.getHttpServer().address() as AddressInfo).port;
    const req = http.get({ host: '127.0.0.1', port, path: '/v1/essays', headers: bearer(tenant.adminKey) });
    req.on('error', () => undefined);
    await waitFor(async () => (await t.http.get('/v1/essays').set(bearer(tenant.adminKey))).status === 429, 5_000, 'the 64th waiter a client');
    const body = (await t.http.get('/v1/assignments').set(bearer(tenant.adminKey)).expect(429)).body;
    expect(body.error.code).toBe('RATE_LIMITED');
    expect(body.error.message).toContain('readsInFlight');
    req.destroy();
    let last: Promise<() => void> | undefined;
    await waitFor(async () => {
      const attempt = limits.readSlot(tenant.tenantId);
      attempt.catch(() => undefined);
      const state = await Promise.race([attempt.then(() => 'taken', () => 'refused'), new Promise((r) => setTimeout(() => r('waiting'), 100))]);
      if (state !== 'waiting') return false;
      last = attempt;
      return true;
    }, 5_000, 'a place in the queue given up');
    again();
    for (const w of [...queued, last!]) (await w)();
    expect(await inFlight()).toBe(0);
    // A read that fails gives its slot back.
    await expect(limits.read(tenant.tenantId, async () => Promise.reject(new Error('the database went away')))).rejects.toThrow('the database went away');
    expect(await inFlight()).toBe(0);
    await t.http.get('/v1/essays').set(bearer(tenant.adminKey)).expect(200);
    await setLimits({ readsInFlight: null });
  });

  it('streams an export a page at a time and keeps its read slot until it has been sent, its client left, or took nothing for HTTP_STREAM_STALL_MS', async () => {
    await setLimits({ readsInFlight: 1 });
    // (Read in-process: this suite's per-key request rate is 2 a second, and the waits below poll.)
    const inFlight = async () => (await t.app.get(LimitsService).view(tenant.tenantId)).usage.readsInFlight;
    const assignmentId = (await t.http.post('/v1/assignments').set(bearer(tenant.adminKey)).send({ title: 'Long comments', prompt: '以“秋天”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const essayId = (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ assignmentId, text: generateEssay(4343, 'zh').text }).expect(202)).body.id;
    // 1,200 more essays of the class, each graded with a 4,000-character comment: a sheet of about
    // 14 MB, more than the connection buffers while its client does not read.
    const columns: string[] = (
      await t.dataSource.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'essays' AND column_name NOT IN ('id', 'grade', 'created_at')`)
    ).map((c: { column_name: string }) => c.column_name);
    const list = columns.join(', ');
    await t.dataSource.query(
      `INSERT INTO essays (id, grade, created_at, ${list})
       SELECT gen_random_uuid(), jsonb_build_object('score', 40, 'maxScore', 60, 'summary', repeat('评', 4000), 'source', 'teacher'), now() + n * interval '1 ms', ${list}
         FROM essays, generate_series(1, 1200) n WHERE tenant_id = $1 AND id = $2`,
      [tenant.tenantId, essayId],
    );
    const port = (t.app.getHttpServer().address() as AddressInfo).port;
    const open = () =>
      new Promise<{ req: http.ClientRequest; res: http.IncomingMessage }>((resolve, reject) => {
        // A connection of its own each time (agent: false): one reused after a whole sheet was read
        // fast has grown its receive buffer to hold a whole sheet, so its client's pause would hold nothing back.
        const req = http.get({ host: '127.0.0.1', port, path: `/v1/assignments/${assignmentId}/grades.csv`, headers: bearer(tenant.adminKey), agent: false }, (res) => resolve({ req, res }));
        req.on('error', reject);
      });
    try {
      // The answer has begun (200, headers sent) and its client reads nothing: the slot stays held.
      const { res } = await open();
      res.pause();
      expect(res.statusCode).toBe(200);
      await sleep(300);
      expect(await inFlight()).toBe(1);
      // Read to its end: the whole sheet, every essay once; then the slot is free.
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const ended = new Promise((r) => res.on('end', r));
      res.resume();
      await ended;
      const lines = Buffer.concat(chunks).toString('utf8').split('\r\n');
      expect(lines).toHaveLength(1 + 1201 + 1); // header, the essays, the last line's end
      expect(lines.filter((l) => l.includes('评'.repeat(4000)))).toHaveLength(1200);
      await waitFor(async () => (await inFlight()) === 0, 5_000, 'the slot given back once sent');
      // A client that leaves halfway gives the slot back too.
      const gone = await open();
      gone.res.pause();
      await sleep(300);
      expect(await inFlight()).toBe(1);
      gone.req.destroy();
      await waitFor(async () => (await inFlight()) === 0, 5_000, 'the slot given back when the client left');
      // A client that stays and takes nothing is cut off after HTTP_STREAM_STALL_MS (3 s here): the
      // slot does not stay held for as long as its socket lives.
      const stalled = await open();
      stalled.res.pause();
      await sleep(300);
      expect(await inFlight()).toBe(1);
      await waitFor(async () => (await inFlight()) === 0, 15_000, 'the slot given back when the stalled client was cut off');
      stalled.req.destroy();
    } finally {
      await setLimits({ readsInFlight: null });
    }
  });

  it("shares readsInFlight between the tenants reading at once: a flood is held to its share while another tenant reads, its reads kept in order, and has all its slots again soon after the other stops", async () => {
    const limits = t.app.get(LimitsService);
    const other = await f.newTenant();
    const { releases, order, queue, releaseAll } = await slotsInTurn(() => limits.readSlot(tenant.tenantId));
    try {
      // Alone, the tenant has all of its 4 (the default).
      const first = [1, 2, 3, 4].map(() => limits.readSlot(tenant.tenantId));
      expect(await Promise.all(first.map((slot) => takenWithin(slot, 10_000)))).toEqual([true, true, true, true]);
      const held = await Promise.all(first);
      releases.push(...held);
      [1, 2, 3].forEach(queue);
      // Another tenant reads: it does not wait, and from now on the first is held to 4 / 2 = 2.
      const others = limits.readSlot(other.tenantId);
      expect(await takenWithin(others, 10_000)).toBe(true);
      releases.push(await others);
      held[0]();
      held[1]();
      await sleep(150);
      expect(order).toEqual([]); // 2 in flight: its share, so none of its waiting reads runs
      held[2]();
      await waitFor(async () => order.length === 1, 10_000, 'its first waiting read');
      await sleep(150);
      expect(order).toEqual([1]); // at its share again: the first in line ran, and only it
      // The other tenant stops reading. With none of its own reads ending, the first tenant's share
      // is soon all 4 again: its waiting reads run in their order, and a read that comes meanwhile
      // goes behind them, not ahead.
      (await others)();
      queue(4);
      queue(5);
      await waitFor(async () => order.length >= 3, 10_000, 'its waiting reads once the share grew');
      await sleep(150);
      expect(order).toEqual([1, 2, 3]); // 4 in flight: held[3] and reads 1–3
      held[3]();
      await waitFor(async () => order.length === 4, 10_000, 'the next in line');
      expect(order).toEqual([1, 2, 3, 4]);
    } finally {
      await releaseAll();
    }
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect((await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.readsInFlight).toBe(0);
  });

  it('shows a tenant the share of readsInFlight it is held to, and a read refused meanwhile carries the share as RateLimit-Limit', async () => {
    const limits = t.app.get(LimitsService);
    const other = await f.newTenant();
    const shares = async () => (await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.shares;
    await sleep(300); // earlier tests' reads no longer count as reading
    // Alone on this instance, all of its 4 (the default); reading the view is not a read.
    expect(await shares()).toEqual({ readsInFlight: 4, reportsInFlight: 3 });
    const othersRead = await limits.readSlot(other.tenantId);
    const mine: Array<() => void> = [];
    let waiting: Array<Promise<() => void>> = [];
    try {
      expect((await shares()).readsInFlight).toBe(2); // 4 / 2 tenants reading
      mine.push(await limits.readSlot(tenant.tenantId), await limits.readSlot(tenant.tenantId));
      waiting = Array.from({ length: 64 }, () => limits.readSlot(tenant.tenantId));
      const refused = await t.http.get('/v1/essays').set(bearer(tenant.adminKey)).expect(429);
      expect(refused.headers['ratelimit-limit']).toBe('2');
      expect(refused.body.error.message).toContain('held to 2 of its 4');
    } finally {
      othersRead();
      for (const release of mine) release();
      for (const w of waiting) (await w)(); // each in turn: they take the slots as they are given back
    }
    // The other tenant stopped reading: soon all 4 again.
    await waitFor(async () => (await shares()).readsInFlight === 4, 10_000, 'the share back to the whole limit');
  });

  it("shares reportsInFlight between the tenants reading reports at once (and only them): a tenant's reports are held to its share while another's run, and have all their slots again soon after", async () => {
    const limits = t.app.get(LimitsService);
    const other = await f.newTenant();
    const { releases, order, queue, releaseAll } = await slotsInTurn(() => limits.reportSlot(tenant.tenantId));
    try {
      // Another tenant reading lists (not reports) leaves the report share alone: all 3 (the default).
      const othersList = await limits.readSlot(other.tenantId);
      releases.push(othersList);
      const first = [1, 2, 3].map(() => limits.reportSlot(tenant.tenantId));
      expect(await Promise.all(first.map((slot) => takenWithin(slot, 10_000)))).toEqual([true, true, true]);
      const held = await Promise.all(first);
      releases.push(...held);
      [1, 2].forEach(queue);
      // The other tenant reads a report: it does not wait, and the first is held to ceil(3 / 2) = 2.
      const othersReport = limits.reportSlot(other.tenantId);
      expect(await takenWithin(othersReport, 10_000)).toBe(true);
      releases.push(await othersReport);
      held[0]();
      await sleep(150);
      expect(order).toEqual([]); // 2 in flight: its share
      held[1]();
      await waitFor(async () => order.length === 1, 10_000, 'its first waiting report');
      await sleep(150);
      expect(order).toEqual([1]);
      // The other tenant's report ends: soon the first has all 3 again, with none of its own ending.
      (await othersReport)();
      await waitFor(async () => order.length === 2, 10_000, 'its next report once the share grew');
      expect(order).toEqual([1, 2]);
    } finally {
      await releaseAll();
    }
    expect((await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.reportsInFlight).toBe(0);
  });

  it('passes a freed provider slot to the next caller when the caller before it gave up waiting (no wake lost)', async () => {
    await setLimits({ providerCalls: 1 });
    const limits = t.app.get(LimitsService);
    const held = await limits.providerSlot(tenant.tenantId);
    const gaveUp = new AbortController();
    const queued = () => new Promise((r) => setTimeout(r, 50));
    const first = limits.providerSlot(tenant.tenantId, gaveUp.signal);
    await queued();
    const second = limits.providerSlot(tenant.tenantId);
    await queued();
    // The first gives up while it waits in the queue, the second behind it.
    gaveUp.abort(new Error('the caller went away'));
    // It leaves at once (it does not wait to be woken to find out).
    expect(await Promise.race([first.then(() => 'taken', (e: Error) => e.message), new Promise((r) => setTimeout(() => r('still waiting'), 2_000))])).toBe('the caller went away');
    held();
    const next = await Promise.race([second, new Promise<null>((r) => setTimeout(() => r(null), 2_000))]);
    expect(next).not.toBeNull();
    next!();
    await setLimits({ providerCalls: null });
  });

  it("lets requests already waiting for a provider slot in when the operator raises the tenant's limit, on every instance", async () => {
    await setLimits({ providerCalls: 1 });
    const other = await t.another();
    try {
      const here = t.app.get(LimitsService);
      const there = other.get(LimitsService);
      const held = [await here.providerSlot(tenant.tenantId), await there.providerSlot(tenant.tenantId)];
      const settled = (p: Promise<unknown>) => Promise.race([p.then(() => 'taken'), new Promise((r) => setTimeout(() => r('still waiting'), 300))]);
      // One waits behind the held slot on each instance, two more behind it here.
      const waitingHere = [here.providerSlot(tenant.tenantId), here.providerSlot(tenant.tenantId), here.providerSlot(tenant.tenantId)];
      const waitingThere = there.providerSlot(tenant.tenantId);
      expect(await settled(waitingHere[0])).toBe('still waiting');
      expect(await settled(waitingThere)).toBe('still waiting');
      // The operator raises the limit to 3: with none of the held slots given back, two more are taken
      // on each instance (the one that waited there, and the first two here; the third waits its turn).
      await setLimits({ providerCalls: 3 });
      await waitFor(async () => (await settled(waitingThere)) === 'taken', 10_000, 'the waiter on the other instance let in');
      await waitFor(async () => (await settled(waitingHere[1])) === 'taken', 10_000, 'the first two waiters here let in');
      expect(await settled(waitingHere[0])).toBe('taken');
      expect(await settled(waitingHere[2])).toBe('still waiting');
      const released = [...held, await waitingHere[0], await waitingHere[1], await waitingThere];
      released.forEach((release) => release());
      (await waitingHere[2])();
    } finally {
      await setLimits({ providerCalls: null });
    }
  });

  it('drops a chat call whose client leaves while it waits for a provider slot: never sent, nothing charged or held, no model marked failing', async () => {
    const limits = t.app.get(LimitsService);
    const leases = t.app.get(BudgetService).leases!;
    const port = (t.app.getHttpServer().address() as AddressInfo).port;
    const chat = (content: string, stream: boolean) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', headers: { ...bearer(teacher), 'content-type': 'application/json' } });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ model: 'inkstone-standard', stream, max_tokens: 50, messages: [{ role: 'user', content }] }));
      return req;
    };
    // The model that answers this tier when all is well.
    const before = await t.http.post('/v1/chat/completions').set(bearer(teacher)).send({ model: 'inkstone-standard', max_tokens: 50, messages: [{ role: 'user', content: '离开之前' }] }).expect(200);
    fake.reset();
    await t.app.get(BudgetService).ledgerWritten();
    const charged = async () => (await t.dataSource.query(`SELECT COALESCE(SUM(cost_nanos), 0)::text AS cost FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]))[0].cost as string;
    const chargedBefore = await charged();
    await setLimits({ providerCalls: 1 });
    const held = await limits.providerSlot(tenant.tenantId);
    expect(leases.holding(tenant.tenantId).available).toBe(leases.holding(tenant.tenantId).held); // nothing in flight yet
    // More callers than the model breaker's failures (5) queue for the slot, streamed and not, then leave.
    const waiting = () => (limits as unknown as { waiters: { providerCalls: Map<string, unknown[]> } }).waiters.providerCalls.get(tenant.tenantId)?.length ?? 0;
    const gone = Array.from({ length: 8 }, (_, i) => chat(`离开的问题 ${i}`, i % 2 === 0));
    await waitFor(() => waiting() === 8, 10_000, 'eight calls waiting for the provider slot');
    gone.forEach((req) => req.destroy());
    await waitFor(() => waiting() === 0, 10_000, 'the calls whose clients left are out of the queue');
    held();
    // None holds any of the tenant's budget (each gave its reservation back), none reached the provider, none is charged.
    const inFlight = () => leases.holding(tenant.tenantId).held - leases.holding(tenant.tenantId).available; // admitted, not settled
    await waitFor(() => inFlight() === 0n, 10_000, 'the reservations given back');
    await t.app.get(BudgetService).ledgerWritten();
    expect(fake.requests).toHaveLength(0);
    expect(await charged()).toBe(chargedBefore);
    // Clients leaving are not the provider failing: the tier is still answered by its first model.
    const after = await t.http.post('/v1/chat/completions').set(bearer(teacher)).send({ model: 'inkstone-standard', max_tokens: 50, messages: [{ role: 'user', content: '离开之后' }] }).expect(200);
    expect(after.headers['x-inkstone-model']).toBe(before.headers['x-inkstone-model']);
    expect(fake.requests).toHaveLength(1);
    // Nor are they counted as provider errors on /metrics.
    const metrics = await t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200);
    expect(metrics.text.split('\n').filter((l) => l.startsWith('inkstone_llm_provider_errors_total') && l.includes('reason="cancelled"'))).toEqual([]);
    await setLimits({ providerCalls: null });
  });

  it("claims round-robin across tenants: one tenant's class set does not hold another's essays back", async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status = 'queued'`); // earlier tests' essays
    const other = await f.newTenant();
    await t.http.put(`/v1/tenants/${other.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ requestsPerSecondPerKey: 100000, requestBurstPerKey: 100000 }).expect(200);
    // Tenant A's class set is queued first, tenant B's few essays after it.
    const big = Array.from({ length: 60 }, (_, i) => ({ text: generateEssay(100 + i, 'zh').text }));
    await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: big }).expect(202);
    const small = await t.http.post('/v1/essays/batch').set(bearer(other.adminKey)).send({ essays: Array.from({ length: 4 }, (_, i) => ({ text: generateEssay(200 + i, 'en').text })) }).expect(202);
    const claimed = (await queue.claim(10, 60_000)).filter((j) => j.tenantId === tenant.tenantId || j.tenantId === other.tenantId);
    const ofB = claimed.filter((j) => j.tenantId === other.tenantId).map((j) => j.essayId);
    expect(ofB.sort()).toEqual([...small.body.ids].sort()); // all four in the first round
    expect(claimed.filter((j) => j.tenantId === tenant.tenantId)).toHaveLength(6);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = ANY($1)`, [[tenant.tenantId, other.tenantId]]);
  });

  it('gives a single free worker slot to the tenant with the fewest gradings running, not to the oldest class set', async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    const other = await f.newTenant();
    await t.http.put(`/v1/tenants/${other.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send({ requestsPerSecondPerKey: 100000, requestBurstPerKey: 100000 }).expect(200);
    await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: Array.from({ length: 30 }, (_, i) => ({ text: generateEssay(500 + i, 'zh').text })) }).expect(202);
    const started = await queue.claim(4, 60_000); // tenant A's class set fills the workers
    expect(started.every((j) => j.tenantId === tenant.tenantId)).toBe(true);
    await t.http.post('/v1/essays/batch').set(bearer(other.adminKey)).send({ essays: [{ text: generateEssay(600, 'en').text }, { text: generateEssay(601, 'en').text }] }).expect(202);
    // One slot frees up at a time (a full pool): B, with nothing running, gets it although A's jobs are older.
    const [next] = await queue.claim(1, 60_000);
    expect(next.tenantId).toBe(other.tenantId);
    const [then] = await queue.claim(1, 60_000);
    expect(then.tenantId).toBe(other.tenantId); // 4 running for A against 1 for B
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = ANY($1)`, [[tenant.tenantId, other.tenantId]]);
  });

  it('keeps a tenant within its gradings at once, across claims', async () => {
    const queue = t.app.get(JobQueue);
    await setLimits({ essaysGrading: 3 });
    await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: Array.from({ length: 8 }, (_, i) => ({ text: generateEssay(300 + i, 'zh').text })) }).expect(202);
    const mine = async () => (await queue.claim(10, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
    const first = await mine();
    expect(first).toHaveLength(3);
    expect(await mine()).toHaveLength(0); // still three running
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE id = $1`, [first[0].id]);
    expect(await mine()).toHaveLength(1);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  // (Claims at the same moment on several sessions: on a PostgreSQL server only.)
  (serverUrl() ? it : it.skip)('keeps a tenant within its gradings at once when instances claim at the same moment', async () => {
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status = 'queued'`); // earlier tests' essays
    // Three instances' queues (each its own worker id) on the one database.
    const queues = [t.app.get(JobQueue), new JobQueue(t.dataSource, t.app.get(CONFIG)), new JobQueue(t.dataSource, t.app.get(CONFIG))];
    await setLimits({ essaysGrading: 3 });
    await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ essays: Array.from({ length: 12 }, (_, i) => ({ text: generateEssay(320 + i, 'zh').text })) }).expect(202);
    try {
      for (let round = 0; round < 10; round++) {
        // Woken by the same submission, each counts the school's room: together they claim three, not three each.
        const claimed = (await Promise.all(queues.map((q) => q.claim(10, 60_000)))).flat().filter((j) => j.tenantId === tenant.tenantId);
        expect([round, claimed.length]).toEqual([round, 3]);
        await t.dataSource.query(`UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE id = ANY($1::uuid[])`, [claimed.map((j) => j.id)]);
      }
    } finally {
      await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
    }
  });

  /**
   * A class set of `n` essays due in `days` (three unless told), queued in the lane of gradings with
   * a deadline; returns a claim of that lane (this tenant's jobs). Requests per second are limited
   * in this suite: the assignment and the set, a second apart, then the claims.
   */
  const deadlineSet = async (n: number, seed: number, days = 3) => {
    const queue = t.app.get(JobQueue);
    const a = await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'due', prompt: '作文', rubric: 'zh-gaokao-60', dueBy: new Date(Date.now() + days * 86_400_000).toISOString() }).expect(201);
    await new Promise((r) => setTimeout(r, 1_000));
    await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: a.body.id, essays: Array.from({ length: n }, (_, i) => ({ text: generateEssay(seed + i, 'zh').text })) }).expect(202);
    return async () => (await queue.claim(10, 60_000, 'grade', true)).filter((j) => j.tenantId === tenant.tenantId);
  };

  it('keeps a tenant within its gradings at once in the lane of gradings with a deadline too', async () => {
    const queue = t.app.get(JobQueue);
    await setLimits({ essaysGrading: 3 });
    const scheduled = await deadlineSet(8, 700);
    const first = await scheduled();
    expect(first).toHaveLength(3);
    expect(first.every((j) => j.dueBy !== null)).toBe(true);
    expect(await scheduled()).toHaveLength(0); // still three running in this lane
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE id = $1`, [first[0].id]);
    const next = await scheduled();
    expect(next).toHaveLength(1);
    // A job whose call waits in a provider batch takes no place: the school's work due sooner goes on.
    await queue.markInBatch(first[1], true);
    expect(await scheduled()).toHaveLength(1);
    expect(await scheduled()).toHaveLength(0);
    // Back from its batch (or claimed again after a stop), it counts again.
    await queue.markInBatch(first[1], false);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE id = $1`, [next[0].id]);
    expect(await scheduled()).toHaveLength(0);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it("claims a school's gradings with a deadline earliest deadline first, not in the order they became ready", async () => {
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    await setLimits({ essaysGrading: 1 });
    // A class set due in three days is ready first; two essays due tomorrow come after it.
    await deadlineSet(3, 780, 3);
    const scheduled = await deadlineSet(2, 790, 1);
    const dueDays = (j: { dueBy: Date | null }) => Math.round((j.dueBy!.getTime() - Date.now()) / 86_400_000);
    const order: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [job, ...more] = await scheduled();
      expect(more).toHaveLength(0); // one place
      order.push(dueDays(job));
      await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE id = $1`, [job.id]);
    }
    expect(order).toEqual([1, 1, 3, 3, 3]);
    expect(await scheduled()).toHaveLength(0);
  });

  it('lets a school hold up to ten jobs waiting in provider batches a place of its gradings at once, and no more', async () => {
    const queue = t.app.get(JobQueue);
    await setLimits({ essaysGrading: 1 });
    const scheduled = await deadlineSet(13, 720);
    // Each job claimed goes into a batch; the next is claimed in its place, ten times over.
    for (let i = 0; i < 10; i++) {
      const [job, ...more] = await scheduled();
      expect(more).toHaveLength(0);
      await queue.markInBatch(job, true);
    }
    const eleventh = await scheduled();
    expect(eleventh).toHaveLength(1);
    await queue.markInBatch(eleventh[0], true); // eleven waiting: one more than ten a place
    expect(await scheduled()).toHaveLength(0);
    // Work of the school's due too soon for a batch still runs (in real time), within its one place
    // at work: it was held until one of the eleven came back from its batch, up to a day, past its deadline.
    const soonMs = queue.batchTurnaroundMs() / 2;
    const soonAt = Date.now() + soonMs;
    await deadlineSet(2, 725, soonMs / 86_400_000);
    const soon = await scheduled();
    expect(soon).toHaveLength(1);
    expect(Math.abs(soon[0].dueBy!.getTime() - soonAt)).toBeLessThan(60_000);
    expect(await scheduled()).toHaveLength(0); // its one place is at work
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it('a job put back in the queue (a retry, a wait for a cheaper window, a stop, a dead worker) is no longer marked as waiting in a batch', async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    await setLimits({ essaysGrading: 4 });
    const scheduled = await deadlineSet(4, 740);
    const jobs = await scheduled();
    expect(jobs).toHaveLength(4);
    for (const job of jobs) await queue.markInBatch(job, true);
    const [retried, deferred, released, abandoned] = jobs;
    await queue.retryLater(retried, 'the batch failed', 60_000);
    const startAt = new Date(Date.now() + 3_600_000).toISOString();
    await queue.defer(deferred, { mode: 'off_peak', startAt, model: 'deepseek:deepseek-chat', window: null, plannedAt: new Date().toISOString(), firstPlannedAt: new Date().toISOString() });
    await queue.release([released]);
    await t.dataSource.query(`UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = $1`, [abandoned.id]);
    await t.dataSource.transaction((tx) => queue.recover(tx));
    const rows: Array<{ id: string; status: string; in_batch: boolean }> = await t.dataSource.query(`SELECT id, status, in_batch FROM jobs WHERE id = ANY($1::uuid[]) ORDER BY id`, [jobs.map((j) => j.id)]);
    // Before, each stayed `in_batch` while queued: an order brought forward ("by tomorrow morning") passed it over.
    expect(rows.map((r) => [r.status, r.in_batch])).toEqual(rows.map(() => ['queued', false]));
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it('keeps a school within its gradings at once for deep reviews and shadow gradings too, each kind apart, up to ten waiting in batches a place', async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    await setLimits({ essaysGrading: 1 });
    const essays: string[] = [];
    for (let i = 0; i < 14; i++) {
      const [{ id }] = await t.dataSource.query(
        `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status) VALUES (gen_random_uuid(), $1, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded') RETURNING id`,
        [tenant.tenantId],
      );
      essays.push(id);
    }
    for (const kind of ['deep_review', 'shadow'] as const) {
      await t.dataSource.transaction((tx) => queue.enqueue(tx, tenant.tenantId, essays.map((essayId) => ({ essayId, kind }))));
      const mine = async () => (await queue.claim(20, 60_000, kind)).filter((j) => j.tenantId === tenant.tenantId);
      const [first, ...more] = await mine();
      expect(more).toHaveLength(0);
      expect(await mine()).toHaveLength(0); // its one place is taken
      // Waiting in a provider batch it takes no place, ten a place: then the school waits its turn.
      await queue.markInBatch(first, true);
      for (let i = 0; i < 10; i++) {
        const [job, ...others] = await mine();
        expect(others).toHaveLength(0);
        await queue.markInBatch(job, true);
      }
      expect(await mine()).toHaveLength(0); // eleven waiting: one more than ten a place
      // One due too soon for a batch (a deep review ordered "by this afternoon"): it is claimed.
      const [{ id: late }] = await t.dataSource.query(
        `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status) VALUES (gen_random_uuid(), $1, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded') RETURNING id`,
        [tenant.tenantId],
      );
      await t.dataSource.transaction((tx) => queue.enqueue(tx, tenant.tenantId, [{ essayId: late, kind, dueBy: new Date(Date.now() + queue.batchTurnaroundMs() / 2) }]));
      const due = await mine();
      expect(due.map((j) => j.essayId)).toEqual([late]);
      expect(await mine()).toHaveLength(0);
    }
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it('gives a school past ten batch waiters a place all its places at work for its work due too soon for a batch, and only its room for the rest', async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    await setLimits({ essaysGrading: 2 });
    const essays = async (n: number): Promise<string[]> =>
      (
        await t.dataSource.query(
          `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status)
           SELECT gen_random_uuid(), $1, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded' FROM generate_series(1, $2) RETURNING id`,
          [tenant.tenantId, n],
        )
      ).map((r: { id: string }) => r.id);
    // 21 deep reviews waiting in provider batches: one past ten a place (room 2 - 1 = 1).
    // (the essays written before the transaction: the embedded PostgreSQL serves one session at a time)
    const waiting = await essays(21);
    await t.dataSource.transaction((tx) => queue.enqueue(tx, tenant.tenantId, waiting.map((essayId) => ({ essayId, kind: 'deep_review' as const }))));
    await t.dataSource.query(`UPDATE jobs SET status = 'running', in_batch = true, locked_until = now() + interval '1 hour' WHERE tenant_id = $1 AND kind = 'deep_review' AND status = 'queued'`, [tenant.tenantId]);
    const soonBy = new Date(Date.now() + queue.batchTurnaroundMs() / 2);
    const [soonA, soonB, laterA, laterB] = await essays(4);
    await t.dataSource.transaction((tx) =>
      queue.enqueue(tx, tenant.tenantId, [
        { essayId: laterA, kind: 'deep_review' },
        { essayId: laterB, kind: 'deep_review' },
        { essayId: soonA, kind: 'deep_review', dueBy: soonBy },
        { essayId: soonB, kind: 'deep_review', dueBy: soonBy },
      ]),
    );
    const mine = async () => (await queue.claim(20, 60_000, 'deep_review')).filter((j) => j.tenantId === tenant.tenantId).map((j) => j.essayId);
    // Both due soon, in its two places at work (the one room went to them: nothing else). Before, the
    // one room took one of them; with one waiter more, both.
    expect((await mine()).sort()).toEqual([soonA, soonB].sort());
    expect(await mine()).toEqual([]);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1 AND essay_id = ANY($2::uuid[])`, [tenant.tenantId, [soonA, soonB]]);
    // Back to its room of one for the rest.
    const next = await mine();
    expect(next).toHaveLength(1);
    expect([laterA, laterB]).toContain(next[0]);
    expect(await mine()).toEqual([]);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it("claims a school's work due soon when its batch waiters leave it no room at all, and another school's work beside it", async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    await setLimits({ essaysGrading: 2 });
    const essaysOf = async (tenantId: string, n: number): Promise<string[]> =>
      (
        await t.dataSource.query(
          `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status)
           SELECT gen_random_uuid(), $1, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded' FROM generate_series(1, $2) RETURNING id`,
          [tenantId, n],
        )
      ).map((r: { id: string }) => r.id);
    // 23 waiting in batches: three past ten a place, so its room is 2 - 3 = -1.
    const waiting = await essaysOf(tenant.tenantId, 23);
    await t.dataSource.transaction((tx) => queue.enqueue(tx, tenant.tenantId, waiting.map((essayId) => ({ essayId, kind: 'deep_review' as const }))));
    await t.dataSource.query(`UPDATE jobs SET status = 'running', in_batch = true, locked_until = now() + interval '1 hour' WHERE tenant_id = $1 AND kind = 'deep_review' AND status = 'queued'`, [tenant.tenantId]);
    const [soon, later] = await essaysOf(tenant.tenantId, 2);
    await t.dataSource.transaction((tx) =>
      queue.enqueue(tx, tenant.tenantId, [
        { essayId: soon, kind: 'deep_review', dueBy: new Date(Date.now() + queue.batchTurnaroundMs() / 2) },
        { essayId: later, kind: 'deep_review' },
      ]),
    );
    const other = await f.newTenant();
    const [theirs] = await essaysOf(other.tenantId, 1);
    await t.dataSource.transaction((tx) => queue.enqueue(tx, other.tenantId, [{ essayId: theirs, kind: 'deep_review' }]));
    // Before, the claim failed ("LIMIT must not be negative") for every school, on every poll.
    const claimed = (await queue.claim(20, 60_000, 'deep_review')).filter((j) => j.tenantId === tenant.tenantId || j.tenantId === other.tenantId);
    expect(claimed.map((j) => j.essayId).sort()).toEqual([soon, theirs].sort());
    expect((await queue.claim(20, 60_000, 'deep_review')).filter((j) => j.tenantId === tenant.tenantId)).toEqual([]);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = ANY($1)`, [[tenant.tenantId, other.tenantId]]);
  });

  it('gives a free place to the school with nothing running before one whose jobs wait in provider batches', async () => {
    const queue = t.app.get(JobQueue);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE status IN ('queued', 'running')`);
    const scheduled = await deadlineSet(6, 740);
    const mine = await scheduled();
    expect(mine.length).toBeGreaterThanOrEqual(2);
    // The rest of A's set back in the queue but two, which wait in a batch.
    await t.dataSource.query(`UPDATE jobs SET status = 'queued', locked_by = NULL WHERE id = ANY($1::uuid[])`, [mine.slice(2).map((j) => j.id)]);
    for (const j of mine.slice(0, 2)) await queue.markInBatch(j, true);
    const other = await f.newTenant();
    const a = await t.http.post('/v1/assignments').set(bearer(other.adminKey)).send({ title: 'due', prompt: '作文', rubric: 'zh-gaokao-60', dueBy: new Date(Date.now() + 3 * 86_400_000).toISOString() }).expect(201);
    await new Promise((r) => setTimeout(r, 1_000));
    await t.http.post('/v1/essays/batch').set(bearer(other.adminKey)).send({ assignmentId: a.body.id, essays: [{ text: generateEssay(760, 'zh').text }] }).expect(202);
    // A's jobs are older, and its two in batches take no place of its own; but B has nothing at all.
    const [next] = await queue.claim(1, 60_000, 'grade', true);
    expect(next.tenantId).toBe(other.tenantId);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = ANY($1)`, [[tenant.tenantId, other.tenantId]]);
  });

  it("writes a job's in-batch marks in the order given, and a deadline moved meanwhile reaches the running job too", async () => {
    const queue = t.app.get(JobQueue);
    const scheduled = await deadlineSet(1, 770);
    const [job] = await scheduled();
    const row = async () => (await t.dataSource.query(`SELECT in_batch, due_by FROM jobs WHERE id = $1`, [job.id]))[0];
    // A wait that ends at once: the two writes must not cross.
    await Promise.all([queue.markInBatch(job, true), queue.markInBatch(job, false)]);
    expect((await row()).in_batch).toBe(false);
    // The teacher clears the deadline while the job runs: its next attempt is no longer scheduled.
    const [{ assignment_id }] = await t.dataSource.query(`SELECT assignment_id FROM essays WHERE id = $1`, [job.essayId]);
    await t.http.patch(`/v1/assignments/${assignment_id}`).set(bearer(teacher)).send({ dueBy: null }).expect(200);
    expect((await row()).due_by).toBeNull();
    // The same PATCH again writes no job row (a flood of them costs reads, not writes).
    const version = async () => (await t.dataSource.query(`SELECT xmin::text AS v FROM jobs WHERE id = $1`, [job.id]))[0].v;
    const before = await version();
    await t.http.patch(`/v1/assignments/${assignment_id}`).set(bearer(teacher)).send({ dueBy: null }).expect(200);
    expect(await version()).toBe(before);
    await t.dataSource.query(`UPDATE jobs SET status = 'done' WHERE tenant_id = $1`, [tenant.tenantId]);
  });

  it("bounds a tenant's calls at providers at once, so its flood waits instead of taking every connection", async () => {
    await setLimits({ providerCalls: 2 });
    fake.setLatency(400);
    const gw = t.app.get(GatewayService);
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        gw.complete({ tenantId: tenant.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: `第${i}个问题` }], maxTokens: 50 }),
      ),
    );
    const at = fake.requests.map((r) => r.at).sort((a, b) => a - b);
    expect(at).toHaveLength(6);
    // With 400 ms answers and two calls at a time, no three calls ever arrive within 350 ms of each other.
    const overlapping = at.map((x) => at.filter((y) => y <= x && y > x - 350).length);
    expect(Math.max(...overlapping)).toBeLessThanOrEqual(2);
  });
});

describe('instances that agree within a second (LISTEN/NOTIFY)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let second: NestFastifyApplication;

  beforeAll(async () => {
    fake = await startFakeProvider();
    // Long caches: only the bus can make the second instance notice a change this quickly.
    const env = providerEnv(fake, { AUTH_CACHE_TTL_MS: '300000', WORKERS_ENABLED: 'false' });
    t = await createTestApp(env);
    second = await t.another({ WORKERS_ENABLED: 'true', WORKER_POLL_MS: '60000' });
    await second.listen({ port: 0, host: '127.0.0.1' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    try {
      await t.close();
    } finally {
      await fake.close();
    }
  });

  it('a key revoked on one instance stops working on the other at once', async () => {
    const f = new Factory(t.app);
    const tenant = await f.newTenant();
    const teacher = await f.newKey(tenant, 'teacher');
    const other = () => (second.getHttpServer().address() as AddressInfo).port;
    const get = (key: string) =>
      new Promise<number>((resolve) => http.get({ host: '127.0.0.1', port: other(), path: '/v1/limits', headers: bearer(key) }, (res) => (res.resume(), resolve(res.statusCode!))));
    expect(await get(teacher.key)).toBe(200); // now cached on the second instance for five minutes
    await t.http.delete(`/v1/api-keys/${teacher.id}`).set(bearer(tenant.adminKey)).expect(204);
    await waitFor(async () => (await get(teacher.key)) === 401, 1_000, 'the revocation to reach the other instance');
  });

  it('settings changed on one instance apply on the other at once', async () => {
    const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '10.00' });
    const budget2 = second.get(BudgetService);
    const grading2 = second.get(GradingService);
    expect((await budget2.settings(tenant.tenantId)).monthlyCap).toBe(10_000_000_000n); // cached there for 5 s
    await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '20.00' }).expect(200);
    await t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ reuseResubmissionGrades: true }).expect(200);
    await waitFor(async () => (await budget2.settings(tenant.tenantId)).monthlyCap === 20_000_000_000n, 1_000, 'the budget change');
    // Grading reads its settings through a cache the bus empties.
    await waitFor(async () => (await (grading2 as unknown as { settingsCache: { getOrLoad: Function } }).settingsCache.getOrLoad(tenant.tenantId, () => grading2.settings(tenant.tenantId))).reuseResubmissionGrades === true, 1_000, 'the grading settings change');
  });

  it("sends an instance's last messages before its database pool closes, though Nest stops the two at once", async () => {
    const third = await t.another({ WORKERS_ENABLED: 'false' });
    const got: unknown[] = [];
    const off = t.app.get(ClusterBus).on('last-words', (p) => got.push(p));
    try {
      // A message published as the instance stops (a worker handing its jobs back, say), then the
      // database connection's and the bus's shutdown hooks called together, the connection's first.
      third.get(ClusterBus).publish('last-words', { from: 'third' });
      await Promise.all([third.get(DatabaseConnection).onApplicationShutdown(), third.get(ClusterBus).onApplicationShutdown()]);
      await waitFor(() => got.length === 1, 2_000, 'the last message at the other instance');
      expect(got).toEqual([{ from: 'third' }]);
    } finally {
      off();
      await third.close();
    }
  });

  it('streams an essay graded by another instance, woken by its events (no polling), and wakes that instance when work is queued', async () => {
    const tenant = await new Factory(t.app).newTenant();
    // Submitted on the first instance (no workers there); the second one's workers poll only once a minute:
    // it starts at once because the first instance's "queued" event reaches it.
    const res = await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(400, 'zh').text }).expect(202);
    const stream = openStream(t.app, `/v1/essays/${res.body.id}/events`, tenant.adminKey);
    await Promise.race([stream.done, new Promise((r) => setTimeout(r, 15_000))]);
    expect(stream.events.map((e) => e.event)).toEqual(expect.arrayContaining(['status', 'grade', 'end']));
    expect(stream.events.at(-1)).toMatchObject({ event: 'end', data: { status: 'graded' } });
    const [v] = await waitForEssays(t.app, tenant.adminKey, [res.body.id]);
    expect(v.status).toBe('graded');
  });
});
