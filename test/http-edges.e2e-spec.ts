import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config/app-config';
import { MAX_JSON_DEPTH, MAX_JSON_ITEMS } from '../src/app.factory';
import { DEFAULT_JSON_TOTAL_ITEMS, MAX_JSON_TOTAL_ITEMS } from '../src/common/route-config';
import { bearer, Factory, TestTenant } from './support/factories';
import { generateEssay } from './support/essays';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { startFakeProvider } from './fake-provider/fake-provider';
import { providerEnv } from './support/providers';
import { waitFor } from './support/wait';

/** A raw request over loopback: the body as given, chunked when no length is declared. */
function raw(
  port: number,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean },
): Promise<{ status: number; body: any; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
    const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
    if (body && !opts.chunked) headers['content-length'] = String(body.length);
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'POST', path: opts.path, headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        const json = (res.headers['content-type'] ?? '').includes('json');
        resolve({ status: res.statusCode!, body: json && text ? JSON.parse(text) : text, ms: performance.now() - t0 });
      });
    });
    // The server may answer and close before it has read the whole body: that is the point.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    if (body && opts.chunked) {
      for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
      req.end();
    } else req.end(body);
  });
}

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('the HTTP edge: keys before bodies, per-route body limits, nesting, timeouts', () => {
  let t: TestApp;
  let port: number;
  let tenant: TestTenant;
  let teacherKey: string;

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.getHttpServer().address() as AddressInfo).port;
    const f = new Factory(t.app);
    tenant = await f.newTenant();
    teacherKey = (await f.newKey(tenant, 'teacher')).key;
  });
  afterAll(() => t.close());

  const essays = () => t.dataSource.query(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1`, [tenant.tenantId]).then((r) => r[0].n as number);

  it('answers a request without a valid key with 401 before reading its body', async () => {
    // Not JSON at all: had it been parsed, the answer would be 400 INVALID_JSON.
    const noKey = await raw(port, { path: '/v1/essays', body: '{ this is not json' });
    expect(noKey.status).toBe(401);
    expect(noKey.body.error.code).toBe('UNAUTHENTICATED');
    const badKey = await raw(port, { path: '/v1/essays', body: '{ this is not json', headers: bearer('isk_not-a-real-key') });
    expect(badKey.status).toBe(401);
    // With a key, the same body is parsed and refused as JSON.
    const withKey = await raw(port, { path: '/v1/essays', body: '{ this is not json', headers: bearer(teacherKey) });
    expect(withKey.status).toBe(400);
    expect(withKey.body.error.code).toBe('INVALID_JSON');
  });

  it('refuses an 8 MiB nested body without a key at once, declared or chunked', async () => {
    const body = Buffer.from(nested(4 * 1024 * 1024));
    for (const chunked of [false, true]) {
      const res = await raw(port, { path: '/v1/essays/batch', body, chunked });
      expect(res.status).toBe(401);
    }
    expect(await essays()).toBe(0);
  });

  it('takes one essay up to 256 KiB, the payment webhook up to 64 KiB, and refuses more with 413 before parsing', async () => {
    const big = JSON.stringify({ text: 'a'.repeat(256 * 1024) });
    const res = await raw(port, { path: '/v1/essays', body: big, headers: bearer(teacherKey) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(res.body.error.message).toContain('262144');
    const chunked = await raw(port, { path: '/v1/essays', body: big, chunked: true, headers: bearer(teacherKey) });
    expect(chunked.status).toBe(413);
    const webhook = await raw(port, { path: `/v1/payments/webhook/${tenant.tenantId}`, body: JSON.stringify({ id: 'x'.repeat(65 * 1024) }) });
    expect(webhook.status).toBe(413);
    // A class set is bigger than one essay: 100 essays of ~1,200 characters (over 256 KiB) are taken in one batch.
    const batch = JSON.stringify({ essays: Array.from({ length: 100 }, (_, i) => ({ text: generateEssay(i, 'zh', { targetChars: 1200 }).text })) });
    expect(Buffer.byteLength(batch)).toBeGreaterThan(256 * 1024);
    const ok = await raw(port, { path: '/v1/essays/batch', body: batch, headers: bearer(teacherKey) });
    expect(ok.status).toBe(202);
    expect(await essays()).toBe(100);
  });

  it('takes no more body than a request declares (a declared length is not counted again), and refuses a length that also says chunked', async () => {
    /** Bytes as written, over a socket of their own; the status lines the server answered with. */
    const exchange = (bytes: string) =>
      new Promise<string[]>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.end(bytes));
        let text = '';
        sock.on('data', (c) => (text += c));
        sock.on('close', () => resolve([...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1])));
        sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? resolve([...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1])) : reject(err)));
      });
    const head = (extra: string) => `POST /v1/essays HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${teacherKey}\r\nContent-Type: application/json\r\nConnection: close\r\n${extra}\r\n`;
    const big = JSON.stringify({ text: 'a'.repeat(300 * 1024) });
    const before = await t.dataSource.query(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1`, [tenant.tenantId]);
    // 20 bytes declared, 300 KiB sent: the body is the 20 (not JSON: 400), the rest never an essay.
    const short = await exchange(`${head('Content-Length: 20\r\n')}${big}`);
    expect(short[0]).toBe('400');
    // Both a length and chunked: refused by the HTTP parser before any route sees it.
    expect(await exchange(`${head('Content-Length: 20\r\nTransfer-Encoding: chunked\r\n')}${big}`)).toEqual(['400']);
    expect(await t.dataSource.query(`SELECT count(*)::int AS n FROM essays WHERE tenant_id = $1`, [tenant.tenantId])).toEqual(before);
  });

  it(`refuses JSON nested deeper than ${MAX_JSON_DEPTH} levels without parsing it, and takes ordinary nesting`, async () => {
    const deep = await raw(port, { path: '/v1/essays', body: `{"text": ${nested(MAX_JSON_DEPTH + 1)}}`, headers: bearer(teacherKey) });
    expect(deep.status).toBe(400);
    expect(deep.body.error).toMatchObject({ code: 'INVALID_JSON', message: expect.stringContaining(`deeper than ${MAX_JSON_DEPTH}`) });
    // Brackets inside strings are text, not nesting.
    const inString = await raw(port, { path: '/v1/essays', body: JSON.stringify({ text: `${nested(500)} 这是一篇作文。`.repeat(2) }), headers: bearer(teacherKey) });
    expect(inString.status).toBe(202);
    const atLimit = await raw(port, { path: '/v1/essays', body: `{"text": ${nested(MAX_JSON_DEPTH - 1)}}`, headers: bearer(teacherKey) });
    expect(atLimit.status).toBe(400);
    expect(atLimit.body.error.code).toBe('VALIDATION_FAILED'); // parsed, then refused field by field
  });

  it(`refuses a body with more than ${MAX_JSON_ITEMS} items in an array or object, or ${MAX_JSON_TOTAL_ITEMS} in all, before parsing it; the service stays up`, async () => {
    // What crashed the heap or held the event loop for seconds: hundreds of thousands of array
    // elements turned into objects before the DTO's own size check, or of keys deduped in quadratic time.
    const cases = [
      { method: 'POST', path: '/v1/essays/batch', body: JSON.stringify({ rubric: 'zh-gaokao-60', essays: Array.from({ length: 300_000 }, () => ({ text: 'a' })) }) },
      { method: 'PATCH', path: '/v1/essays/00000000-0000-4000-8000-000000000000/grade', body: JSON.stringify({ dimensions: Array.from({ length: 100_000 }, () => ({})) }) },
      { method: 'POST', path: '/v1/advisor/business-value', body: JSON.stringify(Object.fromEntries(Array.from({ length: 6_000 }, (_, i) => [`k${i}`, 1]))) },
      { method: 'POST', path: '/v1/essays', body: JSON.stringify({ text: Array.from({ length: 20 }, () => Array.from({ length: 4_000 }, () => 1)) }) }, // 80,000 in all
      // A route other than chat takes DEFAULT_JSON_TOTAL_ITEMS in all: 6,000 unknown keys are refused unvalidated.
      { method: 'POST', path: '/v1/essays/batch', body: JSON.stringify({ essays: Array.from({ length: 3 }, (_, j) => Object.fromEntries(Array.from({ length: 2_000 }, (_, i) => [`k${j}_${i}`, 1]))) }) },
    ];
    for (const c of cases) {
      const res = await raw(port, { ...c, headers: bearer(teacherKey) });
      expect([c.path, res.status, res.body.error?.code]).toEqual([c.path, 400, 'INVALID_JSON']);
      expect(res.body.error.message).toMatch(/more than/);
    }
    expect((await raw(port, { method: 'GET', path: '/health' })).status).toBe(200);
    // A class set of 200 essays is far within the limits.
    const batch = await raw(port, { path: '/v1/essays/batch', body: JSON.stringify({ rubric: 'zh-gaokao-60', essays: Array.from({ length: 201 }, () => ({ text: 'a' })) }), headers: bearer(teacherKey) });
    expect(batch.body.error?.code).not.toBe('INVALID_JSON');
    // The chat route takes more than DEFAULT_JSON_TOTAL_ITEMS: 500 messages of 12 content parts each.
    const parts = Array.from({ length: 12 }, () => ({ type: 'text', text: '读' }));
    const chat = await raw(port, { path: '/v1/chat/completions', body: JSON.stringify({ model: 'inkstone-standard', messages: Array.from({ length: 500 }, () => ({ role: 'user', content: parts })) }), headers: bearer(teacherKey) });
    expect(chat.body.error?.code).not.toBe('INVALID_JSON');
    expect(DEFAULT_JSON_TOTAL_ITEMS).toBeLessThan(500 * 12 * 3);
  });

  it("answers a path part over 100 characters (414) and a bad percent-encoding (400) in the API's error shape, without echoing the path", async () => {
    const long = 'x'.repeat(600);
    for (const res of [
      await t.http.get(`/v1/essays/${long}`).set(bearer(teacherKey)),
      await t.http.get(`/v1/essays/${long}`), // before the key is looked at, too
      await t.http.delete(`/v1/api-keys/${long}`).set(bearer(tenant.adminKey)),
    ]) {
      expect(res.status).toBe(414);
      expect(res.body.error).toMatchObject({ code: 'URI_TOO_LONG', type: 'invalid_request_error' });
      expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
      expect(JSON.stringify(res.body)).not.toContain(long.slice(0, 150));
    }
    const bad = await t.http.get('/v1/essays/%E0%A4%A').set(bearer(teacherKey));
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('BAD_REQUEST');
    expect(bad.body.error.message).toContain('not a valid URL');
    // an id of ordinary length that is no essay is still 404
    expect((await t.http.get(`/v1/essays/${'x'.repeat(90)}`).set(bearer(teacherKey))).status).toBe(404);
  });

  it('keeps the public routes public and the operator routes behind the operator token', async () => {
    expect((await raw(port, { method: 'GET', path: '/health' })).status).toBe(200);
    expect((await raw(port, { method: 'GET', path: '/metrics' })).status).toBe(401);
    expect((await raw(port, { method: 'GET', path: '/metrics', headers: bearer(OPERATOR_TOKEN) })).status).toBe(200);
    expect((await raw(port, { method: 'GET', path: '/v1/nothing-here' })).status).toBe(404);
  });

  it('sets the server timeouts from the configuration, and refuses a headers timeout over the request timeout', () => {
    const server = t.app.getHttpServer() as http.Server;
    expect(server.requestTimeout).toBe(30_000);
    expect(server.headersTimeout).toBe(10_000);
    expect(server.keepAliveTimeout).toBe(65_000);
    expect(() => loadConfig({ INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, HTTP_REQUEST_TIMEOUT_MS: '5000', HTTP_HEADERS_TIMEOUT_MS: '6000' })).toThrow(
      /HTTP_HEADERS_TIMEOUT_MS must not exceed HTTP_REQUEST_TIMEOUT_MS/,
    );
  });
});

describe('the HTTP edge while the server stops', () => {
  /**
   * A chat call at the provider when the server begins to stop (A); then, on the same connection,
   * after the stop began, the request `second` writes (B). The raw answers, in order.
   */
  async function stopDuringACall(second: (key: string, essayId: string) => string): Promise<string[]> {
    const fake = await startFakeProvider();
    const t = await createTestApp(providerEnv(fake, { WORKERS_ENABLED: 'false' }));
    try {
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const server = t.app.getHttpServer();
      const port = (server.address() as AddressInfo).port;
      const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '10.00' });
      const essay = (await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(51, 'zh').text }).expect(202)).body.id as string;
      fake.setLatency(1_500);
      const sock = net.connect(port, '127.0.0.1');
      let got = '';
      sock.on('data', (c: Buffer) => (got += c.toString('utf8')));
      const closed = new Promise((resolve) => sock.on('close', resolve));
      const body = JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'hello' }], max_tokens: 20 });
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tenant.adminKey}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await waitFor(() => fake.requests.length === 1, 10_000, 'the call at the provider');
      const stopping = t.app.close();
      await waitFor(() => !server.listening, 10_000, 'the server to stop listening');
      sock.write(second(tenant.adminKey, essay));
      await stopping;
      sock.end();
      await closed;
      return got.split(/(?=HTTP\/1\.1 )/);
    } finally {
      fake.setLatency(0);
      await t.close();
      await fake.close();
    }
  }

  it.each([
    ['a route of the API', () => 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n'],
    // (the router cuts the path at '#': this is GET /v1/essays/:id, whatever the raw URL ends with;
    // before, it passed for an essay's event stream, which a closing server still answers)
    ['a path that only reads like an event stream', (key: string) => `GET /v1/essays/00000000-0000-4000-8000-000000000000#/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`],
  ])("finishes a call under way, and answers one that arrives on its connection meanwhile (%s) 503 in the API's error shape (Retry-After, the connection closed)", async (_what, second) => {
    const answers = await stopDuringACall(second);
    expect(answers).toHaveLength(2);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 503 /);
    expect(answers[1]).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(answers[1]).toMatch(/\r\nconnection: close\r\n/i);
    const error = JSON.parse(answers[1].slice(answers[1].indexOf('\r\n\r\n') + 4)).error;
    expect(error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('stopping') });
    expect(error.requestId).toEqual(expect.any(String));
  }, 60_000);

  it("answers an essay's event stream asked for on a connection meanwhile with the retry hint (200): the route is marked to answer while closing", async () => {
    const answers = await stopDuringACall((key, essay) => `GET /v1/essays/${essay}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`);
    expect(answers).toHaveLength(2);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 200 /);
    // Before the route was marked, the hook answered it 503 like any other: an EventSource stops for good on that.
    expect(answers[1]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[1]).toMatch(/\r\ncontent-type: text\/event-stream/i);
    expect(answers[1]).toContain('retry: 1000');
    expect(answers[1]).not.toContain('event: ');
  }, 60_000);
});
