import { createHmac, randomBytes } from 'node:crypto';
import { ConsoleSessions, SESSION_TTL_S } from '../src/tenancy/console-sessions';
import { EssayEvents } from '../src/grading/essay-events';
import { BUS_CHANNEL, ClusterBus } from '../src/db/cluster-bus';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { serverUrl } from './support/test-database';
import { waitFor } from './support/wait';
import { streamBody } from './support/event-stream';

/**
 * Console sign-in (SPEC §11): an API key exchanged for a session cookie bound to it. The page never
 * holds the key; state-changing calls need the CSRF token; revoking the key ends the session.
 */
const SCHOOL = '第一实验中学';

describe('console sessions (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: { id: string; key: string };

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    f = new Factory(t.app);
    tenant = await f.newTenant({ name: SCHOOL });
    teacher = await f.newKey(tenant, 'teacher');
  });
  afterAll(async () => {
    await t.close();
  });

  async function signIn(key: string) {
    const res = await t.http.post('/v1/console/session').send({ key }).expect(201);
    const setCookie = String(res.headers['set-cookie']);
    const cookie = setCookie.split(';')[0];
    return { res, setCookie, cookie, csrf: res.body.csrfToken as string };
  }

  it('exchanges a key for an HttpOnly, SameSite=Strict cookie that does not contain the key', async () => {
    const { res, setCookie, cookie } = await signIn(teacher.key);
    expect(setCookie).toMatch(/^inkstone_session=[^;]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(teacher.key);
    expect(res.body).toMatchObject({ tenantId: tenant.tenantId, tenantName: SCHOOL, keyId: teacher.id, role: 'teacher', timezone: 'Asia/Shanghai' });
    expect(typeof res.body.csrfToken).toBe('string');
    expect(res.headers['cache-control']).toBe('no-store');
    // Over HTTPS (here: a proxy saying so) the cookie is Secure and of a __Host- name, however the proxy writes it.
    for (const [header, value] of [['x-forwarded-proto', 'https'], ['x-forwarded-proto', 'HTTPS, http'], ['forwarded', 'for=192.0.2.60;proto=https;by=203.0.113.43']]) {
      const viaTls = await t.http.post('/v1/console/session').set(header, value).send({ key: teacher.key }).expect(201);
      expect([value, String(viaTls.headers['set-cookie'])]).toEqual([value, expect.stringMatching(/^__Host-inkstone_session=[^;]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Strict; Secure$/)]);
    }
    const plain = await t.http.post('/v1/console/session').set('x-forwarded-proto', 'http, https').send({ key: teacher.key }).expect(201);
    expect(String(plain.headers['set-cookie'])).not.toMatch(/Secure/);
  });

  it("keeps the API's answers out of every cache (a cookie-signed answer is one school's); a sign-out that fails keeps the cookie to try again with", async () => {
    const { cookie } = await signIn(teacher.key);
    for (const path of ['/v1/essays', '/v1/budget', '/v1/console/session']) {
      const res = await t.http.get(path).set('cookie', cookie);
      expect([path, res.headers['cache-control']]).toEqual([path, 'no-store']);
    }
    const sessions = t.app.get(ConsoleSessions);
    const failing = jest.spyOn(sessions, 'end').mockRejectedValueOnce(new Error('connection reset'));
    try {
      const out = await t.http.delete('/v1/console/session').set('cookie', cookie);
      expect(out.status).toBeGreaterThanOrEqual(500);
      expect(out.headers['set-cookie']).toBeUndefined();
    } finally {
      failing.mockRestore();
    }
    // Still signed in; signing out again ends the session, and its cookie is refused from then on.
    await t.http.get('/v1/essays').set('cookie', cookie).expect(200);
    const out = await t.http.delete('/v1/console/session').set('cookie', cookie).expect(204);
    expect(String(out.headers['set-cookie'])).toMatch(/^inkstone_session=; Path=\/; Max-Age=0/);
    await t.http.get('/v1/essays').set('cookie', cookie).expect(401);
  });

  it('authenticates reads with the cookie, and changes only with the CSRF token', async () => {
    const { cookie, csrf } = await signIn(teacher.key);
    await t.http.get('/v1/essays').set('cookie', cookie).expect(200);
    const me = await t.http.get('/v1/console/session').set('cookie', cookie).expect(200);
    expect(me.body).toMatchObject({ keyId: teacher.id, csrfToken: csrf });
    const text = generateEssay(1, 'zh').text;
    const refused = await t.http.post('/v1/essays').set('cookie', cookie).send({ text }).expect(403);
    expect(refused.body.error).toMatchObject({ code: 'CSRF_TOKEN_INVALID', message: expect.stringMatching(/CSRF/) });
    await t.http.post('/v1/essays').set('cookie', cookie).set('x-csrf-token', 'x'.repeat(csrf.length)).send({ text }).expect(403);
    await t.http.post('/v1/essays').set('cookie', cookie).set('x-csrf-token', csrf).send({ text }).expect(202);
    // Another session's token does not fit this one.
    const other = await signIn(teacher.key);
    await t.http.post('/v1/essays').set('cookie', cookie).set('x-csrf-token', other.csrf).send({ text }).expect(403);
  });

  it("takes the page's key id from a link's or event stream's query (sessionKey), as from its header: a cookie of another key is refused for it, and no route sees the parameter", async () => {
    const own = await signIn(tenant.adminKey);
    const period = new Date().toISOString().slice(0, 7);
    const csv = await t.http.get(`/v1/reports/month.csv?period=${period}&sessionKey=${tenant.adminKeyId}`).set('cookie', own.cookie).expect(200);
    expect(csv.headers['content-type']).toMatch(/text\/csv/);
    await t.http.get(`/v1/essays?sessionKey=${tenant.adminKeyId}`).set('cookie', own.cookie).expect(200);
    // The cookie is another school's now (signed in in another tab of the browser): the link made for the first is refused.
    const other = await f.newTenant();
    const theirs = await signIn(other.adminKey);
    const essay = await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(2, 'zh').text }).expect(202);
    for (const path of [`/v1/reports/month.csv?period=${period}&sessionKey=${tenant.adminKeyId}`, `/v1/essays/${essay.body.id}/events?sessionKey=${tenant.adminKeyId}`, `/v1/essays?sessionKey=${tenant.adminKeyId}&sessionKey=${tenant.adminKeyId}`]) {
      const res = await t.http.get(path).set('cookie', theirs.cookie);
      expect([path, res.status, res.body.error?.code]).toEqual([path, 401, 'UNAUTHENTICATED']);
    }
    // The header, when sent, is what counts; with a key in Authorization the parameter is only taken off the query.
    await t.http.get(`/v1/essays?sessionKey=${tenant.adminKeyId}`).set('cookie', theirs.cookie).set('x-inkstone-session-key', other.adminKeyId).expect(200);
    await t.http.get(`/v1/reports/month.csv?period=${period}&sessionKey=nobody`).set(bearer(tenant.adminKey)).expect(200);
  });

  it("over HTTPS takes only the __Host- cookie, which no sibling host can plant: a lone plain one (planted from a sibling domain) is no session", async () => {
    const https = { 'x-forwarded-proto': 'https' };
    const own = await t.http.post('/v1/console/session').set(https).send({ key: teacher.key }).expect(201);
    const ownCookie = String(own.headers['set-cookie']).split(';')[0];
    expect(ownCookie).toMatch(/^__Host-inkstone_session=/);
    const me = await t.http.get('/v1/console/session').set(https).set('cookie', ownCookie).expect(200);
    expect(me.body).toMatchObject({ tenantId: tenant.tenantId, keyId: teacher.id });
    // A session of the planter's own school, under the plain name a sibling host can set for the parent domain.
    const planted = await signIn((await new Factory(t.app).newTenant()).adminKey);
    expect(planted.cookie).toMatch(/^inkstone_session=/);
    await t.http.get('/v1/essays').set(https).set('cookie', planted.cookie).expect(401);
    await t.http.get('/v1/console/session').set(https).set('cookie', planted.cookie).expect(401);
    // Beside the teacher's own it changes nothing: the teacher stays in their school.
    const both = await t.http.get('/v1/console/session').set(https).set('cookie', `${planted.cookie}; ${ownCookie}`).expect(200);
    expect(both.body.tenantId).toBe(tenant.tenantId);
    // A proxy that says "https" on some requests only: the __Host- cookie (only this host can have set it) still counts.
    await t.http.get('/v1/console/session').set('cookie', ownCookie).expect(200);
    // ... and over plain HTTP it wins over a plain one beside it (which a sibling can plant).
    expect((await t.http.get('/v1/console/session').set('cookie', `${planted.cookie}; ${ownCookie}`).expect(200)).body.tenantId).toBe(tenant.tenantId);
    // Signing out over HTTPS clears both names (the __Host- one Secure, as it was set) and ends the sessions it carries.
    const out = await t.http.delete('/v1/console/session').set(https).set('cookie', ownCookie).expect(204);
    expect(out.headers['set-cookie']).toEqual([
      '__Host-inkstone_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure',
      'inkstone_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict',
    ]);
    await t.http.get('/v1/essays').set(https).set('cookie', ownCookie).expect(401);
    // (Over plain HTTP the plain name alone is the session's, as before.)
    await t.http.get('/v1/essays').set('cookie', planted.cookie).expect(200);
  });

  it('refuses a request carrying two session cookies: one was planted from elsewhere, and neither is taken', async () => {
    // Another school's session, set for a parent domain with a longer path: a browser sends it first.
    const planted = await signIn((await new Factory(t.app).newTenant()).adminKey);
    const own = await signIn(teacher.key);
    const both = `${planted.cookie}; ${own.cookie}`;
    await t.http.get('/v1/console/session').set('cookie', both).expect(401);
    await t.http.get('/v1/essays').set('cookie', both).expect(401);
    // Each alone is its own session.
    expect((await t.http.get('/v1/console/session').set('cookie', own.cookie).expect(200)).body.keyId).toBe(teacher.id);
    // Signing out with both ends both on the server.
    await t.http.delete('/v1/console/session').set('cookie', both).expect(204);
    await t.http.get('/v1/console/session').set('cookie', own.cookie).expect(401);
    await t.http.get('/v1/console/session').set('cookie', planted.cookie).expect(401);
  });

  it('keeps the roles of the key: a teacher session cannot open admin routes', async () => {
    const { cookie } = await signIn(teacher.key);
    await t.http.get('/v1/budget').set('cookie', cookie).expect(403);
    const admin = await signIn(tenant.adminKey);
    await t.http.get('/v1/budget').set('cookie', admin.cookie).expect(200);
  });

  it("signs cookies with a key derived from the server key, not from the operator's token: a cookie does not test a guess at the token", async () => {
    const { cookie, csrf } = await signIn(teacher.key);
    const [body, sig] = cookie.split('=')[1].split('.');
    // What an attacker holding the cookie would compute for the right guess, under the old derivation.
    const fromToken = createHmac('sha256', createHmac('sha256', OPERATOR_TOKEN).update('inkstone console session v1').digest()).update(body).digest('base64url');
    expect(sig).not.toBe(fromToken);
    // Another instance with the same server key accepts it; one with another server key does not,
    // unless the first is its previous key (a rolling rotation: a change still made with the CSRF token it had).
    const same = await t.another();
    const newKey = randomBytes(32).toString('base64');
    const otherKey = await t.another({ INKSTONE_SECRET_KEY: newKey });
    const rotated = await t.another({ INKSTONE_SECRET_KEY: newKey, INKSTONE_SECRET_KEY_PREVIOUS: t.config.secrets.key!.toString('base64') });
    try {
      await request(same.getHttpServer()).get('/v1/rubrics').set('cookie', cookie).expect(200);
      await request(otherKey.getHttpServer()).get('/v1/rubrics').set('cookie', cookie).expect(401);
      await request(rotated.getHttpServer()).get('/v1/rubrics').set('cookie', cookie).expect(200);
      await request(rotated.getHttpServer()).post('/v1/essays').set('cookie', cookie).set('x-csrf-token', csrf).send({ text: generateEssay(71, 'zh').text }).expect(202);
    } finally {
      await same.close();
      await otherKey.close();
      await rotated.close();
    }
  });

  it('refuses a wrong key, a forged or expired cookie, and a session whose key was revoked', async () => {
    const bad = await t.http.post('/v1/console/session').send({ key: 'ink_not_a_real_key' }).expect(401);
    expect(bad.body.error.code).toBe('UNAUTHENTICATED');
    await t.http.post('/v1/console/session').send({}).expect(400);
    const { cookie } = await signIn(teacher.key);
    const [name, value] = cookie.split('=');
    const [body, sig] = value.split('.');
    // Another key's id in the claims, the signature unchanged: forged.
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, k: tenant.adminKeyId })).toString('base64url');
    await t.http.get('/v1/budget').set('cookie', `${name}=${forged}.${sig}`).expect(401);
    await t.http.get('/v1/essays').set('cookie', `${name}=garbage`).expect(401);
    // Signed by this service, but past its time.
    const sessions = t.app.get(ConsoleSessions);
    const old = sessions.open({ kind: 'tenant', tenantId: tenant.tenantId, keyId: teacher.id, role: 'teacher' }, Date.now() - (SESSION_TTL_S + 1) * 1000);
    const expired = await t.http.get('/v1/essays').set('cookie', `inkstone_session=${old.token}`).expect(401);
    expect(expired.body.error.message).toMatch(/expired/);
    // Revoking the key ends the session.
    const doomed = await f.newKey(tenant, 'teacher');
    const s = await signIn(doomed.key);
    await t.http.get('/v1/essays').set('cookie', s.cookie).expect(200);
    await t.http.delete(`/v1/api-keys/${doomed.id}`).set(bearer(tenant.adminKey)).expect(204);
    const gone = await t.http.get('/v1/essays').set('cookie', s.cookie).expect(401);
    expect(gone.body.error.message).toMatch(/revoked/);
  });

  it("a sign-in and a sign-out are requests of their key: held to its and its school's request limits; a session signed out already is not written again", async () => {
    const school = await f.newTenant();
    await t.http
      .put(`/v1/tenants/${school.tenantId}/limits`)
      .set(bearer(OPERATOR_TOKEN))
      .send({ requestsPerSecondPerKey: 1, requestBurstPerKey: 2, requestsPerSecondPerTenant: 1, requestBurstPerTenant: 2 })
      .expect(200);
    const signIns: number[] = [];
    let cookie = '';
    for (let i = 0; i < 6; i++) {
      const r = await t.http.post('/v1/console/session').send({ key: school.adminKey });
      signIns.push(r.status);
      if (r.status === 201) cookie ||= String(r.headers['set-cookie']).split(';')[0];
      else expect(r.body.error.code).toBe('RATE_LIMITED');
    }
    expect(signIns.slice(0, 2)).toEqual([201, 201]);
    expect(signIns).toContain(429);
    // Signed out once (after the bucket refills), then the same cookie again: nothing more is written.
    await waitFor(async () => (await t.http.delete('/v1/console/session').set('cookie', cookie)).status === 204, 5_000, 'signed out');
    const ended = async () => (await t.dataSource.query(`SELECT count(*)::int AS n FROM console_sessions_ended WHERE tenant_id = $1`, [school.tenantId]))[0].n;
    expect(await ended()).toBe(1);
    const again: number[] = [];
    for (let i = 0; i < 6; i++) again.push((await t.http.delete('/v1/console/session').set('cookie', cookie)).status);
    expect(again).toEqual(Array(6).fill(204));
    expect(await ended()).toBe(1);
    await t.http.get('/v1/rubrics').set('cookie', cookie).expect(401);
  });

  it('a key revoked by its id written in capitals stops at once, its key and its session: a path id is read in lower case, as the auth cache holds it; a query value is kept as sent', async () => {
    const doomed = await f.newKey(tenant, 'teacher');
    await t.http.get('/v1/rubrics').set(bearer(doomed.key)).expect(200); // cached now
    const s = await signIn(doomed.key);
    await t.http.get('/v1/rubrics').set('cookie', s.cookie).expect(200);
    await t.http.delete(`/v1/api-keys/${doomed.id.toUpperCase()}`).set(bearer(tenant.adminKey)).expect(204);
    expect([(await t.http.get('/v1/rubrics').set(bearer(doomed.key))).status, (await t.http.get('/v1/rubrics').set('cookie', s.cookie)).status]).toEqual([401, 401]);
    // An essay read by an id in capitals is the same essay, under its own id; a school's own value
    // that looks like one (a student id from a .NET system) is kept as sent.
    const ref = '6F9619FF-8B86-D011-B42D-00C04FC964FF';
    const sub = await t.http.post('/v1/essays').set(bearer(teacher.key)).send({ text: generateEssay(72, 'zh').text, studentRef: ref }).expect(202);
    expect((await t.http.get(`/v1/essays/${String(sub.body.id).toUpperCase()}`).set(bearer(teacher.key)).expect(200)).body.id).toBe(sub.body.id);
    const listed = await t.http.get(`/v1/essays?studentRef=${ref}`).set(bearer(teacher.key)).expect(200);
    expect(listed.body.data.map((e: { id: string; studentRef: string }) => [e.id, e.studentRef])).toEqual([[sub.body.id, ref]]);
  });

  it("ends an open event stream once its key is revoked, or its console session signed out: the essay's next event is not sent", async () => {
    const events = t.app.get(EssayEvents);
    const streams = async () => (await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200)).body.usage.eventStreams;
    const open = (id: string, auth: Record<string, string>) => streamBody(t.http.get(`/v1/essays/${id}/events`).set(auth));
    const submitted = async (seed: number) => (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(seed, 'zh').text }).expect(202)).body.id as string;
    // A key's stream; the key revoked; then the essay moves (here, a status event any instance would send).
    const doomed = await f.newKey(tenant, 'teacher');
    const first = await submitted(61);
    const byKey = open(first, bearer(doomed.key));
    await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
    await t.http.delete(`/v1/api-keys/${doomed.id}`).set(bearer(tenant.adminKey)).expect(204);
    await t.dataSource.query(`UPDATE essays SET status = 'grading' WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, first]);
    events.emit({ tenantId: tenant.tenantId, essayId: first, status: 'grading' });
    const keyBody = await byKey; // before, it stayed open and sent 'grading', then the grade
    expect([...keyBody.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]).status)).toEqual(['queued', 'unauthenticated']);
    // A console session's stream; the session signed out.
    const s = await signIn(teacher.key);
    const second = await submitted(62);
    const bySession = open(second, { cookie: s.cookie });
    await waitFor(async () => (await streams()) === 1, 10_000, 'the stream open');
    await t.http.delete('/v1/console/session').set('cookie', s.cookie).expect(204);
    events.emit({ tenantId: tenant.tenantId, essayId: second, status: 'grading' });
    const sessionBody = await bySession;
    expect([...sessionBody.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]).status)).toEqual(['queued', 'unauthenticated']);
    expect(await streams()).toBe(0);
  });

  it("takes the cookie when the Authorization header is another scheme (an HTTP Basic gate in front of the console): the gate's header is no failed sign-in that locks the address out", async () => {
    const w = await createTestApp({ WORKERS_ENABLED: 'false', AUTH_FAILURE_BURST: '3', AUTH_FAILURES_PER_MINUTE: '1' });
    try {
      const wf = new Factory(w.app);
      const school = await wf.newTenant();
      const res = await w.http.post('/v1/console/session').send({ key: school.adminKey }).expect(201);
      const cookie = String(res.headers['set-cookie']).split(';')[0];
      const basic = `Basic ${Buffer.from('staff:gate-password').toString('base64')}`;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await w.http.get('/v1/essays').set('cookie', cookie).set('authorization', basic)).status);
      // Before, the header hid the cookie: 401 "must be Bearer" three times, counted as failures, then 429.
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
      // A change with the cookie still needs the CSRF token, whatever the other header says.
      await w.http.post('/v1/api-keys').set('cookie', cookie).set('authorization', basic).send({ name: 'x', role: 'teacher' }).expect(403);
      // Another school behind the same address is not locked out by the console's polling.
      const other = await wf.newTenant();
      await w.http.get('/v1/rubrics').set(bearer(other.adminKey)).expect(200);
      // Without a cookie the header is refused as before; a Bearer header still wins over a cookie.
      expect((await w.http.get('/v1/essays').set('authorization', basic).expect(401)).body.error.message).toMatch(/Bearer/);
      await w.http.get('/v1/essays').set('cookie', cookie).set('authorization', 'Bearer not-a-key').expect(401);
    } finally {
      await w.close();
    }
  });

  it('lets the Authorization header win over a cookie, and signs out by clearing the cookie', async () => {
    const { cookie } = await signIn(teacher.key);
    await t.http.get('/v1/budget').set('cookie', cookie).set(bearer(tenant.adminKey)).expect(200);
    const out = await t.http.delete('/v1/console/session').set('cookie', cookie).expect(204);
    expect(String(out.headers['set-cookie'])).toMatch(/^inkstone_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict/);
  });

  (serverUrl() ? it : it.skip)('an instance whose bus connection went deaf without an error (a NAT forgot it) finds out within a heartbeat: it listens anew and no longer trusts the revoked key or the ended session it had cached', async () => {
    const other = await t.another({ BUS_HEARTBEAT_MS: '300', AUTH_CACHE_TTL_MS: '60000' });
    try {
      const mine = await signIn(teacher.key);
      const doomed = await f.newKey(tenant, 'teacher');
      const otherHttp = () => request(other.getHttpServer());
      await otherHttp().get('/v1/rubrics').set('cookie', mine.cookie).expect(200);
      await otherHttp().get('/v1/rubrics').set(bearer(doomed.key)).expect(200);
      const bus = other.get(ClusterBus) as unknown as { listener?: { query(sql: string): Promise<unknown> } };
      const deaf = bus.listener!;
      // The connection stays open and says nothing: it simply no longer hears the channel.
      await deaf.query(`UNLISTEN ${BUS_CHANNEL}`);
      await t.http.delete('/v1/console/session').set('cookie', mine.cookie).expect(204);
      await t.http.delete(`/v1/api-keys/${doomed.id}`).set(bearer(tenant.adminKey)).expect(204);
      await waitFor(async () => bus.listener !== undefined && bus.listener !== deaf, 10_000, 'the deaf connection replaced');
      await waitFor(async () => (await otherHttp().get('/v1/rubrics').set(bearer(doomed.key))).status === 401, 5_000, 'the revoked key refused there');
      await otherHttp().get('/v1/rubrics').set('cookie', mine.cookie).expect(401);
      // And the new connection hears: the next revocation reaches it at once.
      const next = await f.newKey(tenant, 'teacher');
      await otherHttp().get('/v1/rubrics').set(bearer(next.key)).expect(200);
      await t.http.delete(`/v1/api-keys/${next.id}`).set(bearer(tenant.adminKey)).expect(204);
      await waitFor(async () => (await otherHttp().get('/v1/rubrics').set(bearer(next.key))).status === 401, 2_000, 'the next revocation heard');
    } finally {
      await other.close();
    }
  });

  (serverUrl() ? it : it.skip)('does not take a busy pool for a deaf listener: a probe waits for its connection before it is timed', async () => {
    const other = await t.another({ BUS_HEARTBEAT_MS: '300', DATABASE_POOL_SIZE: '1' });
    try {
      const bus = other.get(ClusterBus) as unknown as { listener?: object };
      const listening = bus.listener;
      expect(listening).toBeDefined();
      // The one pooled connection is held for 4 s: the heartbeat's NOTIFY waits that long for it.
      await other.get(DataSource).query('SELECT pg_sleep(4)');
      await new Promise((r) => setTimeout(r, 1_000));
      expect(bus.listener).toBe(listening);
    } finally {
      await other.close();
    }
  });

  it('tells another instance of a sign-out and of a revocation with their commits: a notice sent after the commit that fails loses neither', async () => {
    const other = await t.another();
    const mine = await signIn(teacher.key);
    const doomed = await f.newKey(tenant, 'teacher');
    // Both known as live on the other instance (cached there).
    await request(other.getHttpServer()).get('/v1/rubrics').set('cookie', mine.cookie).expect(200);
    await request(other.getHttpServer()).get('/v1/rubrics').set(bearer(doomed.key)).expect(200);
    // From now on, a notice sent on its own (after a commit, on no transaction's runner) fails on this instance.
    const real = t.dataSource.query.bind(t.dataSource);
    const failing = jest.spyOn(t.dataSource, 'query').mockImplementation(((sql: string, params?: unknown[], runner?: unknown) =>
      /pg_notify/.test(sql) && !runner ? Promise.reject(new Error('connection reset')) : real(sql, params, runner as never)) as never);
    try {
      await t.http.delete('/v1/console/session').set('cookie', mine.cookie).expect(204);
      await t.http.delete(`/v1/api-keys/${doomed.id}`).set(bearer(tenant.adminKey)).expect(204);
      await waitFor(async () => (await request(other.getHttpServer()).get('/v1/rubrics').set('cookie', mine.cookie)).status === 401, 5_000, 'the other instance told of the sign-out');
      await waitFor(async () => (await request(other.getHttpServer()).get('/v1/rubrics').set(bearer(doomed.key))).status === 401, 5_000, 'the other instance told of the revocation');
    } finally {
      failing.mockRestore();
      await other.close();
    }
  });

  it('ends a signed-out session on the server: a copy of its cookie is refused, on this instance and another, while the key\'s other sessions go on', async () => {
    const other = await t.another();
    const ended = async () => (await t.dataSource.query(`SELECT expires_at FROM console_sessions_ended WHERE tenant_id = $1 ORDER BY expires_at`, [tenant.tenantId])) as Array<{ expires_at: Date }>;
    const before = (await ended()).length;
    const mine = await signIn(teacher.key);
    const elsewhere = await signIn(teacher.key); // the same key signed in on another device
    // Both instances know the session as live before the sign-out (each has it cached).
    await t.http.get('/v1/rubrics').set('cookie', mine.cookie).expect(200);
    await request(other.getHttpServer()).get('/v1/rubrics').set('cookie', mine.cookie).expect(200);
    await t.http.delete('/v1/console/session').set('cookie', mine.cookie).expect(204);
    const refused = await t.http.get('/v1/rubrics').set('cookie', mine.cookie).expect(401);
    expect(refused.body.error.code).toBe('UNAUTHENTICATED');
    expect(refused.body.error.message).toContain('signed out');
    await t.http.post('/v1/api-keys').set('cookie', mine.cookie).set('x-csrf-token', mine.csrf).send({ name: 'x', role: 'teacher' }).expect(401);
    await waitFor(async () => (await request(other.getHttpServer()).get('/v1/rubrics').set('cookie', mine.cookie)).status === 401, 5_000, 'the other instance told');
    // The same key's other session, and a new sign-in, are not ended.
    await t.http.get('/v1/rubrics').set('cookie', elsewhere.cookie).expect(200);
    await request(other.getHttpServer()).get('/v1/rubrics').set('cookie', elsewhere.cookie).expect(200);
    const again = await signIn(teacher.key);
    await t.http.get('/v1/rubrics').set('cookie', again.cookie).expect(200);
    // Kept until the session would have expired, by the tenant; signing out twice is fine.
    const rows = await ended();
    expect(rows).toHaveLength(before + 1);
    expect(new Date(rows[rows.length - 1].expires_at).getTime()).toBeGreaterThan(Date.now() + (SESSION_TTL_S - 60) * 1000);
    await t.http.delete('/v1/console/session').set('cookie', mine.cookie).expect(204);
    // A sign-out without a session, or with a forged cookie, just clears the cookie.
    await t.http.delete('/v1/console/session').expect(204);
    await t.http.delete('/v1/console/session').set('cookie', 'inkstone_session=forged.value').expect(204);
    expect(await ended()).toHaveLength(before + 1);
  });
});
