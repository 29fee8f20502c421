import { TenantSecretsService } from '../src/billing/tenant-secrets.service';
import { SecretBox } from '../src/common/secret-box';
import { ClusterBus } from '../src/db/cluster-bus';
import { TenantsRepository } from '../src/tenancy/tenants.repository';
/**
 * Clean edges (issue 10, item 11): money beyond BIGINT, forged cursors, NUL and other control
 * characters, the public /health, and error log lines that keep their message and code. Each
 * refusal is a 400 naming the field, never a 500 from PostgreSQL, and stores nothing.
 */
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { Writable } from 'node:stream';
import { signPayload } from '../src/common/signature';
import { DatabaseConnection } from '../src/db/database';
import { ApiKeysService } from '../src/tenancy/api-keys.service';
import { ConsoleSessions, SESSION_TTL_S } from '../src/tenancy/console-sessions';
import { JobQueue } from '../src/jobs/job-queue';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

const operator = bearer(OPERATOR_TOKEN);
const OVER = '9223372036.854775808'; // one nano-yuan more than a BIGINT holds
const MAX = '9223372036.854775807';

describe('clean edges', () => {
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;
  /** every log line the app wrote, parsed */
  const logs: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
        done();
      },
    });
    t = await createTestApp({ LOG_LEVEL: 'warn', WORKERS_ENABLED: 'false', ALLOW_PRIVATE_WEBHOOKS: 'true' }, { logDestination: sink });
    f = new Factory(t.app);
    tenant = await f.newTenant({ monthlyBudget: '100.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });
  afterAll(() => t.close());

  const admin = () => bearer(tenant.adminKey);
  const one = async <T = Record<string, unknown>>(sql: string, params: unknown[]): Promise<T> => (await t.dataSource.query(sql, params))[0] as T;

  /** A 400 VALIDATION_FAILED whose details name exactly `field` (and its message, when given). */
  function expectFieldError(res: { status: number; body: { error: { code: string; details?: Array<{ field: string; message: string }> } } }, field: string, message?: RegExp) {
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
    expect(res.body.error.details).toEqual([{ field, message: message ? expect.stringMatching(message) : expect.any(String) }]);
  }

  describe('money beyond what a BIGINT of nano-yuan holds', () => {
    it('POST /v1/tenants: monthlyBudget over the range is 400 naming it, and no tenant is made; the largest amount is taken exactly', async () => {
      const name = `Over ${randomUUID()}`;
      for (const amount of [OVER, '999999999999.999999999', '99999999999999999999999.99']) {
        const res = await t.http.post('/v1/tenants').set(operator).send({ name, monthlyBudget: amount });
        expectFieldError(res, 'monthlyBudget', /^monthlyBudget must be at most 9223372036\.854775807 CNY$/);
      }
      expect(await one(`SELECT count(*)::int AS n FROM tenants WHERE name = $1`, [name])).toEqual({ n: 0 });
      const ok = await t.http.post('/v1/tenants').set(operator).send({ name, monthlyBudget: MAX }).expect(201);
      expect(await one(`SELECT monthly_cap_nanos AS cap FROM tenants WHERE id = $1`, [ok.body.tenant.id])).toEqual({ cap: '9223372036854775807' });
    });

    it('PUT /v1/budget: monthlyCap over the range is 400 naming it, and the cap is unchanged', async () => {
      const before = (await t.http.get('/v1/budget').set(admin()).expect(200)).body;
      expectFieldError(await t.http.put('/v1/budget').set(admin()).send({ monthlyCap: OVER }), 'monthlyCap', /at most 9223372036\.854775807 CNY/);
      expect((await t.http.get('/v1/budget').set(admin()).expect(200)).body).toEqual(before);
      expect(await one(`SELECT monthly_cap_nanos AS cap FROM tenants WHERE id = $1`, [tenant.tenantId])).toEqual({ cap: '100000000000' });
    });

    it('PUT /v1/billing/settings: deepReviewPrice over the range is 400 naming it, and no price is stored', async () => {
      const res = await t.http.put('/v1/billing/settings').set(admin()).send({ deepReviewPrice: OVER, paymentMode: 'invoice' });
      expectFieldError(res, 'deepReviewPrice', /at most 9223372036\.854775807 CNY/);
      expect(await one(`SELECT deep_review_price_nanos AS price, payment_mode AS mode FROM tenants WHERE id = $1`, [tenant.tenantId])).toEqual({ price: null, mode: null });
    });
  });

  describe('cursors', () => {
    let owner: TestTenant;
    let key: string;
    beforeAll(async () => {
      owner = await f.newTenant();
      key = (await f.newKey(owner, 'teacher')).key;
      for (let i = 0; i < 3; i++) await t.http.post('/v1/essays').set(bearer(key)).send({ text: `第${i}篇。今天天气很好。` }).expect(202);
    });
    const list = (query: string) => t.http.get(`/v1/essays?${query}`).set(bearer(key));
    const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
    const id = randomUUID();

    it('pages with the cursors the server gives', async () => {
      const first = await list('limit=2').expect(200);
      expect(first.body.data).toHaveLength(2);
      const second = await list(`limit=2&cursor=${first.body.nextCursor}`).expect(200);
      expect(second.body.data).toHaveLength(1);
      expect(second.body.nextCursor).toBeNull();
      const ids = [...first.body.data, ...second.body.data].map((e: { id: string }) => e.id);
      expect(new Set(ids).size).toBe(3);
    });

    it.each([
      ['bad base64', '!!!not-base64!!!'],
      ['base64 that is not the canonical encoding', `${b64(JSON.stringify(['2026-12-01 08:00:00+00', id]))}A`],
      ['bad JSON', b64('["2026-12-01 08:00:00+00", ')],
      ['an object', b64(JSON.stringify({ at: '2026-12-01 08:00:00+00', id }))],
      ['nested arrays (read as strings, they look right)', b64(JSON.stringify([['2026-12-01 08:00:00+00'], [id]]))],
      ['a number for the id', b64(JSON.stringify(['2026-12-01 08:00:00+00', 42]))],
      ['an extra element', b64(JSON.stringify(['2026-12-01 08:00:00+00', id, 'x']))],
      ['month 13', b64(JSON.stringify(['2026-13-01 08:00:00+00', id]))],
      ['February 30th', b64(JSON.stringify(['2026-02-30 08:00:00+00', id]))],
      ['hour 25', b64(JSON.stringify(['2026-12-01 25:00:00+00', id]))],
      ['year 0', b64(JSON.stringify(['0000-01-01 00:00:00+00', id]))],
      ['a time of many colons', b64(JSON.stringify(['2026-12-01 08:00:00:00:00+00', id]))],
      ['an offset of 99 hours', b64(JSON.stringify(['2026-12-01 08:00:00+99', id]))],
      ['a huge string', 'A'.repeat(5_000)],
    ])('refuses a forged cursor (%s) with 400 and a clear message', async (_what, cursor) => {
      const res = await list(`cursor=${encodeURIComponent(cursor)}`);
      expectFieldError(res, 'cursor', /^cursor is not one this API gave out \(.+\); pass nextCursor from the previous page unchanged$/);
    });

    it('refuses a real cursor given twice, naming it', async () => {
      const { nextCursor } = (await list('limit=1').expect(200)).body;
      expectFieldError(await list(`cursor=${nextCursor}&cursor=${nextCursor}`), 'cursor', /given once/);
    });
  });

  describe('hostile requests', () => {
    it('answers a body of thousands of unknown keys with a bounded 400: the first problems, the rest counted', async () => {
      const key = (i: number) => `k${i}_${'x'.repeat(150)}`;
      const essay = Object.fromEntries(Array.from({ length: 4_000 }, (_, i) => [key(i), 1]));
      const res = await t.http.post('/v1/essays/batch').set(bearer(tenant.adminKey)).send({ essays: [essay] }).expect(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.details).toHaveLength(50);
      expect(res.body.error.details[0].field.length).toBeLessThanOrEqual(201);
      // 4,000 unknown keys and the essay's missing text, counted: every one but the 50 listed.
      expect(res.body.error.message).toMatch(/; and 3951 more$/);
      expect(JSON.stringify(res.body).length).toBeLessThan(40_000);
    });

    it.each([
      // (class-validator's nested validation walks into an inner array: a rubric of [[dimension]] was
      // stored with no max score and failed every essay graded on it; an expectedLength of [] gave
      // offline grades of null scores, and cleared an assignment's length)
      ['a rubric dimension', 'post', '/v1/rubrics', { key: 'nested-dims', name: 'R', language: 'zh', totalRule: 'sum', dimensions: [[{ key: 'a', name: 'a', max: 10, kind: 'content', description: 'd' }]] }, 'dimensions'],
      ['a rubric expectedLength', 'post', '/v1/rubrics', { key: 'array-length', name: 'R', language: 'zh', totalRule: 'sum', dimensions: [{ key: 'a', name: 'a', max: 10, kind: 'content', description: 'd' }], expectedLength: [] }, 'expectedLength'],
      ['an assignment expectedLength', 'post', '/v1/assignments', { title: 'T', prompt: 'P', rubric: 'zh-gaokao-60', expectedLength: [{ min: 900, max: 100 }] }, 'expectedLength'],
      ['an essay of a class set', 'post', '/v1/essays/batch', { essays: [[{ text: '这是一篇作文。' }]] }, 'essays'],
      ['a dimension override', 'patch', '/v1/essays/00000000-0000-4000-8000-000000000000/grade', { dimensions: [[{ key: 'content', score: 1 }]] }, 'dimensions'],
    ] as const)('refuses an array where an object belongs (%s), naming the field, and stores nothing', async (_what, method, path, body, field) => {
      const before = await one<{ n: string }>(`SELECT (SELECT count(*) FROM rubrics WHERE tenant_id = $1) + (SELECT count(*) FROM assignments WHERE tenant_id = $1) + (SELECT count(*) FROM essays WHERE tenant_id = $1) AS n`, [tenant.tenantId]);
      const res = await t.http[method](path).set(admin()).send(body);
      expectFieldError(res, field, /must be an object/);
      expect(await one(`SELECT (SELECT count(*) FROM rubrics WHERE tenant_id = $1) + (SELECT count(*) FROM assignments WHERE tenant_id = $1) + (SELECT count(*) FROM essays WHERE tenant_id = $1) AS n`, [tenant.tenantId])).toEqual(before);
    });

    it('refuses a query parameter given twice, naming it (a 500 when one of them held a NUL)', async () => {
      const res = await t.http.get('/v1/essays?studentRef=a%00&studentRef=b').set(bearer(tenant.adminKey)).expect(400);
      expect(res.body.error.details).toEqual([{ field: 'studentRef', message: 'studentRef must be given once' }]);
    });
  });

  describe('control characters in stored strings (PostgreSQL cannot store NUL)', () => {
    it('removes them from an essay’s title and studentRef, as from its text, and lists by the cleaned studentRef', async () => {
      const res = await t.http
        .post('/v1/essays')
        .set(bearer(teacher))
        .send({ text: '第一段\u0000。今天天气很好。', title: '我的\u0000作文\u0007', studentRef: 's\u0000-42' })
        .expect(202);
      const essay = await one(`SELECT title, student_ref, text FROM essays WHERE id = $1`, [res.body.id]);
      expect(essay).toEqual({ title: '我的作文', student_ref: 's-42', text: '第一段。今天天气很好。' });
      const listed = await t.http.get(`/v1/essays?studentRef=${encodeURIComponent('s\u0000-42')}`).set(bearer(teacher)).expect(200);
      expect(listed.body.data.map((e: { id: string }) => e.id)).toEqual([res.body.id]);
    });

    it('removes them from a class set’s titles', async () => {
      const res = await t.http
        .post('/v1/essays/batch')
        .set(bearer(teacher))
        .send({ essays: [{ text: '第一篇。', title: 'A\u0000' }, { text: '第二篇。', title: '\u0001B' }] })
        .expect(202);
      const rows = await t.dataSource.query(`SELECT title FROM essays WHERE id = ANY($1) ORDER BY title`, [res.body.ids]);
      expect(rows).toEqual([{ title: 'A' }, { title: 'B' }]);
    });

    it('removes them from an assignment’s title and prompt, a rubric’s names, a key’s and a tenant’s name', async () => {
      const a = await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '单元\u0000作文', prompt: '写一篇\u0000记叙文', rubric: 'zh-gaokao-60' }).expect(201);
      expect(await one(`SELECT title, prompt FROM assignments WHERE id = $1`, [a.body.id])).toEqual({ title: '单元作文', prompt: '写一篇记叙文' });

      const rubric = {
        key: 'zh-nul-test',
        name: '初中\u0000记叙文',
        language: 'zh',
        totalRule: 'sum',
        dimensions: [{ key: 'content', name: '内容\u0000', max: 20, kind: 'content', description: '切合\u0000题意\ud800' }],
      };
      // (a lone surrogate, which JSON's \ud800 escape can send, made PostgreSQL's json refuse the row: a 500)
      await t.http.post('/v1/rubrics').set(admin()).send(rubric).expect(201);
      const stored = await one<{ definition: { name: string; dimensions: Array<{ name: string; description: string }> } }>(
        `SELECT definition FROM rubrics WHERE tenant_id = $1 AND key = 'zh-nul-test'`,
        [tenant.tenantId],
      );
      expect(stored.definition.name).toBe('初中记叙文');
      expect(stored.definition.dimensions[0]).toMatchObject({ name: '内容', description: '切合题意\ufffd' });

      const k = await t.http.post('/v1/api-keys').set(admin()).send({ name: 'Ms.\u0000 Wang', role: 'teacher' }).expect(201);
      expect(await one(`SELECT name FROM api_keys WHERE id = $1`, [k.body.id])).toEqual({ name: 'Ms. Wang' });

      const created = await t.http.post('/v1/tenants').set(operator).send({ name: '晨光\u0000教育' }).expect(201);
      expect(await one(`SELECT name FROM tenants WHERE id = $1`, [created.body.tenant.id])).toEqual({ name: '晨光教育' });
    });

    it('refuses a title of nothing but control characters, naming it, and stores no essay', async () => {
      const before = await one<{ n: number }>(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1`, [tenant.tenantId]);
      expectFieldError(await t.http.post('/v1/essays').set(bearer(teacher)).send({ text: '第一段。', title: '\u0000\u0000' }), 'title');
      expect(await one(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1`, [tenant.tenantId])).toEqual(before);
    });

    it('refuses a webhook secret with a control character (a secret is kept exactly, never altered), and stores none', async () => {
      const res = await t.http.put('/v1/billing/settings').set(admin()).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: 'whsec_0123456789abcdef\u0000' });
      expectFieldError(res, 'webhookSecret', /control characters/);
      expect(await one(`SELECT payment_webhook_secret_enc AS s FROM tenants WHERE id = $1`, [tenant.tenantId])).toEqual({ s: null });
    });

    it('cleans a payment event id the same way: an id of control characters is 400, one with a NUL is read without it', async () => {
      const secret = 'whsec_clean_edges_0123456789';
      const payer = await f.newTenant();
      await t.http.put('/v1/billing/settings').set(bearer(payer.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: secret }).expect(200);
      const send = (body: string) =>
        t.http.post(`/v1/payments/webhook/${payer.tenantId}`).set('Content-Type', 'application/json').set('X-Inkstone-Signature', signPayload(secret, body)).send(body);
      const event = (id: string) => JSON.stringify({ id, type: 'payment.succeeded', data: { orderId: randomUUID(), amount: '9.90' } });
      expectFieldError(await send(event('\u0000\u0000')), 'id');
      // Cleaned, the id is looked up and the (unknown) order answers 404: not a 500 from PostgreSQL.
      expect((await send(event('evt_\u0000123')).expect(404)).body.error.code).toBe('NOT_FOUND');
      expectFieldError(await send('null'), 'body');
      expect(await one(`SELECT count(*)::int AS n FROM payment_events WHERE tenant_id = $1`, [payer.tenantId])).toEqual({ n: 0 });
    });
  });

  describe('failed authentication', () => {
    it('answers 429 to an address past its failures, unless what it presents is known good (a cached key, the operator, a signed session)', async () => {
      // An app of its own: a burst of 3 failures, refilled one a minute.
      const w = await createTestApp({ WORKERS_ENABLED: 'false', AUTH_FAILURE_BURST: '3', AUTH_FAILURES_PER_MINUTE: '1' });
      try {
        const school = await new Factory(w.app).newTenant();
        const teacherKey = (await new Factory(w.app).newKey(school, 'teacher')).key;
        await w.http.get('/v1/rubrics').set(bearer(school.adminKey)).expect(200); // known good from now on
        const signedIn = await w.http.post('/v1/console/session').send({ key: teacherKey }).expect(201);
        const cookie = String(signedIn.headers['set-cookie']).split(';')[0];
        for (let i = 0; i < 2; i++) await w.http.get('/v1/rubrics').set(bearer(`isk_guess${i}_${'x'.repeat(40)}`)).expect(401);
        // A wrong token on /health (whose details would tell a right guess) is a failure too.
        expect((await w.http.get('/health').set(bearer('operator-guess-0000')).expect(200)).body).toEqual({ status: 'ok' });
        const refused = await w.http.get('/v1/rubrics').set(bearer(`isk_guess9_${'x'.repeat(40)}`)).expect(429);
        expect(refused.body.error.code).toBe('RATE_LIMITED');
        expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        // Guesses at the operator's token, and sign-ins with made-up keys, wait too.
        await w.http.get('/metrics').set(bearer('not-the-operator-token')).expect(429);
        await w.http.get('/health').set(bearer('operator-guess-0001')).expect(429);
        await w.http.get('/health').expect(200); // a load balancer's call, without a token, is no guess
        await w.http.post('/v1/console/session').send({ key: `isk_guess8_${'x'.repeat(40)}` }).expect(429);
        // What is known good still works from that address.
        await w.http.get('/v1/rubrics').set(bearer(school.adminKey)).expect(200);
        await w.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200);
        expect((await w.http.get('/health').set(bearer(OPERATOR_TOKEN)).expect(200)).body.checks).toBeDefined();
        await w.http.get('/v1/rubrics').set('cookie', cookie).expect(200);
        await w.http.post('/v1/console/session').send({ key: school.adminKey }).expect(201);
      } finally {
        await w.close();
      }
    });

    it("keeps a school's key working from an address out of failures after the key has left the auth cache (seen active in the last day), until it is revoked", async () => {
      // Keys leave the auth cache after 1 ms: what lets them past the throttle is having been found active.
      const w = await createTestApp({ WORKERS_ENABLED: 'false', AUTH_FAILURE_BURST: '3', AUTH_FAILURES_PER_MINUTE: '1', AUTH_CACHE_TTL_MS: '1' });
      try {
        const f2 = new Factory(w.app);
        const school = await f2.newTenant();
        const teacher = await f2.newKey(school, 'teacher');
        await w.http.get('/v1/rubrics').set(bearer(school.adminKey)).expect(200);
        await w.http.get('/v1/rubrics').set(bearer(teacher.key)).expect(200);
        const missed = await f2.newKey(school, 'teacher');
        await w.http.get('/v1/rubrics').set(bearer(missed.key)).expect(200);
        // A neighbour behind the same address sends made-up keys until the address is out of failures.
        for (let i = 0; i < 3; i++) await w.http.get('/v1/rubrics').set(bearer(`isk_guess${i}_${'x'.repeat(40)}`)).expect(401);
        await w.http.get('/v1/rubrics').set(bearer(`isk_guess9_${'x'.repeat(40)}`)).expect(429);
        await new Promise((r) => setTimeout(r, 5)); // (past the auth cache's time)
        // Before: 429 for the school's own keys, for as long as the neighbour kept the address drained.
        await w.http.get('/v1/rubrics').set(bearer(school.adminKey)).expect(200);
        await w.http.post('/v1/console/session').send({ key: teacher.key }).expect(201);
        // Revoked, a key is checked no more from there (and refused anywhere).
        await w.http.delete(`/v1/api-keys/${teacher.id}`).set(bearer(school.adminKey)).expect(204);
        await w.http.get('/v1/rubrics').set(bearer(teacher.key)).expect(429);
        // A key never found active is no better than a guess while the address is out of failures.
        const other = await f2.newTenant();
        await w.http.get('/v1/rubrics').set(bearer(other.adminKey)).expect(429);
        // A key this instance finds revoked (the bus's word of it missed: revoked in the database alone)
        // is forgotten as active at that read: from then on it waits with the guesses.
        await w.dataSource.query(`UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2`, [school.tenantId, missed.id]);
        await new Promise((r) => setTimeout(r, 5));
        await w.http.get('/v1/rubrics').set(bearer(missed.key)).expect(401); // seen active: checked, found revoked
        await w.http.get('/v1/rubrics').set(bearer(missed.key)).expect(429); // before: 401 for a day, its failures never counted
      } finally {
        await w.close();
      }
    });

    it('does not count a console tab polling on a session that ended (signed out, expired, its key revoked): that is no guess, and must not lock the schools behind the same address out', async () => {
      const w = await createTestApp({ WORKERS_ENABLED: 'false', AUTH_FAILURE_BURST: '3', AUTH_FAILURES_PER_MINUTE: '1' });
      try {
        const f2 = new Factory(w.app);
        const school = await f2.newTenant();
        const signIn = async (key: string) => String((await w.http.post('/v1/console/session').send({ key }).expect(201)).headers['set-cookie']).split(';')[0];
        const signedOut = await signIn((await f2.newKey(school, 'teacher')).key);
        await w.http.delete('/v1/console/session').set('cookie', signedOut).expect(204);
        const doomed = await f2.newKey(school, 'teacher');
        const revoked = await signIn(doomed.key);
        await w.http.delete(`/v1/api-keys/${doomed.id}`).set(bearer(school.adminKey)).expect(204);
        const teacher = await f2.newKey(school, 'teacher');
        const old = w.app.get(ConsoleSessions).open({ kind: 'tenant', tenantId: school.tenantId, keyId: teacher.id, role: 'teacher' }, Date.now() - (SESSION_TTL_S + 1) * 1000);
        const expired = `inkstone_session=${old.token}`;
        // Tabs left open poll every few seconds: many more refusals than the burst.
        for (let i = 0; i < 4; i++) {
          for (const cookie of [signedOut, revoked, expired]) {
            const res = await w.http.get('/v1/assignments').set('cookie', cookie);
            expect([i, res.status, res.body.error.code]).toEqual([i, 401, 'UNAUTHENTICATED']);
          }
        }
        // Another school behind the same address: its key (not in the auth cache yet) and a sign-in still work.
        const other = await f2.newTenant();
        await w.http.get('/v1/rubrics').set(bearer(other.adminKey)).expect(200);
        await signIn((await f2.newKey(other, 'teacher')).key);
        // A guess still counts: a forged cookie and made-up keys spend the burst, then 429.
        await w.http.get('/v1/essays').set('cookie', 'inkstone_session=forged.c2ln').expect(401);
        for (let i = 0; i < 2; i++) await w.http.get('/v1/rubrics').set(bearer(`isk_guess${i}_${'x'.repeat(40)}`)).expect(401);
        await w.http.get('/v1/rubrics').set(bearer(`isk_guess9_${'x'.repeat(40)}`)).expect(429);
        // …while the ended session's tab is still told to sign in again (401), not 429.
        expect((await w.http.get('/v1/assignments').set('cookie', expired)).status).toBe(401);
      } finally {
        await w.close();
      }
    });

    it("counts a payment event's refused signature against its address and school: past the burst, forged events are answered 429 before any secret is read", async () => {
      const w = await createTestApp({ WORKERS_ENABLED: 'false', AUTH_FAILURE_BURST: '3', AUTH_FAILURES_PER_MINUTE: '1' });
      const reads = jest.spyOn(w.app.get(TenantSecretsService), 'read');
      try {
        const f2 = new Factory(w.app);
        const selling = async () => {
          const school = await f2.newTenant();
          await w.http.put('/v1/billing/settings').set(bearer(school.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: 'whsec_the_real_secret_0123456789' }).expect(200);
          return school;
        };
        const [school, other] = [await selling(), await selling()];
        const body = JSON.stringify({ id: 'evt_forged', type: 'payment.succeeded', data: { orderId: randomUUID(), amount: '9.90' } });
        const forged = (tenantId: string) =>
          w.http.post(`/v1/payments/webhook/${tenantId}`).set('content-type', 'application/json').set('X-Inkstone-Signature', signPayload('not-the-secret-0123456789', body)).send(body);
        reads.mockClear();
        for (let i = 0; i < 3; i++) expect((await forged(school.tenantId).expect(401)).body.error.code).toBe('INVALID_SIGNATURE');
        expect(reads).toHaveBeenCalledTimes(3);
        const refused = await forged(school.tenantId).expect(429);
        expect(refused.body.error.code).toBe('RATE_LIMITED');
        expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(reads).toHaveBeenCalledTimes(3); // no read for the refused one
        // A bucket per school: another school's events from the same address (one payment provider
        // sends every school's) are still checked, and so are the address's keys.
        await forged(other.tenantId).expect(401);
        expect(reads).toHaveBeenCalledTimes(4);
        await w.http.get('/v1/rubrics').set(bearer(`isk_guess7_${'x'.repeat(40)}`)).expect(401);
        // Ids of no school with a secret share one bucket of the address: new random ids each time do not get past it.
        for (let i = 0; i < 3; i++) await forged(randomUUID()).expect(401);
        await forged(randomUUID()).expect(429);
        expect(reads).toHaveBeenCalledTimes(7);
        // ... which a school with a secret is not held to: events to ids of no school (a misconfigured
        // provider's, retried for days) do not refuse the other schools' from that address. Before: 429.
        const signed = JSON.stringify({ id: 'evt_real', type: 'payment.succeeded', data: { orderId: randomUUID(), amount: '9.90' } });
        const real = await w.http.post(`/v1/payments/webhook/${other.tenantId}`).set('content-type', 'application/json').set('X-Inkstone-Signature', signPayload('whsec_the_real_secret_0123456789', signed)).send(signed);
        expect(real.status).not.toBe(429);
        expect(real.status).toBeLessThan(500);
        await forged(other.tenantId).expect(401); // its own bucket: one failure before, two now
        expect(reads).toHaveBeenCalledTimes(9);
        // Known on every instance: a school that sets its secret on one is held to its own bucket on another started before.
        const b = await w.another();
        const onB = request(b.getHttpServer());
        const late = await selling();
        const forgedOnB = (tenantId: string) =>
          onB.post(`/v1/payments/webhook/${tenantId}`).set('content-type', 'application/json').set('X-Inkstone-Signature', signPayload('not-the-secret-0123456789', body)).send(body);
        for (let i = 0; i < 3; i++) await forgedOnB(randomUUID()).expect(401);
        await forgedOnB(randomUUID()).expect(429);
        const lateEvent = await onB.post(`/v1/payments/webhook/${late.tenantId}`).set('content-type', 'application/json').set('X-Inkstone-Signature', signPayload('whsec_the_real_secret_0123456789', signed)).send(signed);
        expect([lateEvent.status === 429, lateEvent.status < 500]).toEqual([false, true]);
        // Known from the start too (a restart while the address's bucket of unknown ids is empty): the schools with a secret are read then.
        const restarted = new TenantSecretsService(w.app.get(TenantsRepository), w.app.get(SecretBox), w.app.get(ClusterBus));
        await restarted.onModuleInit();
        expect([restarted.knownPaymentSchool(school.tenantId), restarted.knownPaymentSchool(other.tenantId), restarted.knownPaymentSchool(randomUUID())]).toEqual([true, true, false]);
      } finally {
        reads.mockRestore();
        await w.close();
      }
    });
  });

  describe('/health', () => {
    it('answers anyone with the status only', async () => {
      expect((await t.http.get('/health').expect(200)).body).toEqual({ status: 'ok' });
      expect((await t.http.get('/health').set(bearer(teacher)).expect(200)).body).toEqual({ status: 'ok' });
      expect((await t.http.get('/health').set(bearer(`${OPERATOR_TOKEN}x`)).expect(200)).body).toEqual({ status: 'ok' });
    });

    it('answers anonymous calls made while a ping runs with that one ping, and counts no queue for them', async () => {
      const db = t.app.get(DatabaseConnection);
      const real = db.ping.bind(db);
      // A slow database: each ping takes a second.
      const ping = jest.spyOn(db, 'ping').mockImplementation(async () => {
        await new Promise((r) => setTimeout(r, 1_000));
        return real();
      });
      const depth = jest.spyOn(t.app.get(JobQueue), 'depth');
      try {
        const answers = await Promise.all(Array.from({ length: 20 }, () => t.http.get('/health')));
        expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
        expect(ping.mock.calls.length).toBeLessThanOrEqual(2); // one, or two if some came after the first had answered
        expect(depth).not.toHaveBeenCalled();
        // The operator's checks are its own, fresh each time.
        await t.http.get('/health').set(operator).expect(200);
        expect(depth).toHaveBeenCalledTimes(1);
      } finally {
        ping.mockRestore();
        depth.mockRestore();
      }
    });

    it('gives the operator the checks, latencies, queue depth and workers in flight', async () => {
      const res = await t.http.get('/health').set(operator).expect(200);
      expect(res.body).toMatchObject({
        status: 'ok',
        checks: { database: { status: 'up', latencyMs: expect.any(Number) }, queue: { status: 'up', workersInFlight: 0 } },
      });
    });

    it('answers 503 with the status only when the database does not answer; the operator sees why', async () => {
      const ping = jest.spyOn(t.app.get(DatabaseConnection), 'ping').mockRejectedValue(new Error('connect ECONNREFUSED 10.0.0.5:5432'));
      try {
        const res = await t.http.get('/health').expect(503);
        expect(res.body).toEqual({ status: 'unavailable' });
        expect(res.text).not.toContain('ECONNREFUSED');
        const op = await t.http.get('/health').set(operator).expect(503);
        expect(op.body.checks.database).toEqual({ status: 'down', error: 'connect ECONNREFUSED 10.0.0.5:5432' });
      } finally {
        ping.mockRestore();
      }
    });
  });

  describe('request log lines', () => {
    it('log a refused request once, by id, method, path and status, never its key or query', async () => {
      const res = await t.http.get('/v1/api-keys?secret=shh').set({ authorization: 'Bearer isk_not-a-real-key-at-all' }).expect(401);
      const requestId = res.headers['x-request-id'];
      await waitFor(() => logs.some((l) => (l.req as { id?: string } | undefined)?.id === requestId), 5_000, 'the request line');
      const lines = logs.filter((l) => (l.req as { id?: string } | undefined)?.id === requestId);
      expect(lines).toEqual([expect.objectContaining({ level: 40, service: 'inkstone', req: { id: requestId, method: 'GET', path: '/v1/api-keys' }, res: { statusCode: 401 } })]);
      expect(JSON.stringify(lines)).not.toMatch(/isk_|shh|authorization/i);
    });
  });

  describe('error log lines keep the message and code', () => {
    it('logs an unexpected error of a request with its name, message, code and stack', async () => {
      const spy = jest.spyOn(t.app.get(ApiKeysService), 'list').mockRejectedValueOnce(Object.assign(new Error('relation "api_keys" does not exist'), { code: '42P01' }));
      const res = await t.http.get('/v1/api-keys').set(admin()).expect(500);
      spy.mockRestore();
      const requestId = res.headers['x-request-id'];
      await waitFor(() => logs.some((l) => l.msg === 'unhandled error' && l.requestId === requestId), 5_000, 'the log line');
      const line = logs.find((l) => l.msg === 'unhandled error' && l.requestId === requestId)!;
      expect(line.err).toEqual({
        name: 'Error',
        message: 'relation "api_keys" does not exist',
        code: '42P01',
        stack: expect.stringContaining('relation "api_keys" does not exist'),
      });
      expect(res.body.error).toMatchObject({ code: 'INTERNAL', message: 'Internal server error' });
    });

    it('logs a statement the database cancelled at its timeout the same way, and tells the client 503 DATABASE_BUSY, not 500', async () => {
      const spy = jest.spyOn(t.app.get(ApiKeysService), 'list').mockRejectedValueOnce(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }));
      const res = await t.http.get('/v1/api-keys').set(admin()).expect(503);
      spy.mockRestore();
      expect(res.body.error.code).toBe('DATABASE_BUSY');
      expect(res.headers['retry-after']).toBe('5');
      const requestId = res.headers['x-request-id'];
      await waitFor(() => logs.some((l) => l.msg === 'unhandled error' && l.requestId === requestId), 5_000, 'the log line');
      const line = logs.find((l) => l.msg === 'unhandled error' && l.requestId === requestId)!;
      expect(line.err).toMatchObject({ message: 'canceling statement due to statement timeout', code: '57014' });
    });

    it('logs a failed alert delivery with the socket’s code and message', async () => {
      // A port nothing listens on: the delivery is refused by the peer.
      const port = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const webhookId = randomUUID();
      // (Sent to the tenant's alert URL as it is at the attempt.)
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = $2, alert_webhook_secret_enc = $3 WHERE id = $1`, [
        tenant.tenantId,
        `http://127.0.0.1:${port}/hook`,
        t.app.get(TenantSecretsService).seal('alert', tenant.tenantId, 'alert-secret-0123456789'),
      ]);
      await t.dataSource.query(`INSERT INTO outbound_webhooks (tenant_id, id, event_id, url, body, status) VALUES ($1, $2, $3, $4, '{}', 'pending')`, [
        tenant.tenantId,
        webhookId,
        `alert_${webhookId}`,
        `http://127.0.0.1:${port}/hook`,
      ]);
      await waitFor(() => logs.some((l) => l.webhookId === webhookId), 15_000, 'the delivery log line');
      const line = logs.find((l) => l.webhookId === webhookId)!;
      expect(line.msg).toBe('webhook delivery failed, will retry');
      expect(line.err).toEqual({ name: 'DeliveryFailedError', message: expect.stringContaining('ECONNREFUSED'), code: 'ECONNREFUSED' });
    });

    it('writes no error as {}', () => {
      const empty = logs.filter((l) => l.err !== undefined && JSON.stringify(l.err) === '{}');
      expect(empty).toEqual([]);
    });
  });
});
