import OpenAI from 'openai';
import request from 'supertest';
import { BudgetService } from '../src/billing/budget.service';
import { ApiKeysService } from '../src/tenancy/api-keys.service';
import { parseCny } from '../src/common/money';
import { countPromptTokens, FakeProvider } from './fake-provider/fake-provider';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { catalogEntry, extendedCatalog } from './support/catalog-entry';
import { waitFor } from './support/wait';

/** The OpenAI-compatible gateway, driven by the official openai client over real HTTP. */
describe('POST /v1/chat/completions and GET /v1/models with the openai client', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let baseURL: string;
  let tenant: TestTenant;
  let teacherKey: string;
  let client: OpenAI;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake());
    await t.app.listen(0, '127.0.0.1');
    baseURL = `${await t.app.getUrl()}/v1`;
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    fake.reset();
    const f = new Factory(t.app);
    tenant = await f.newTenant({ monthlyBudget: '50.00' });
    teacherKey = (await f.newKey(tenant, 'teacher')).key;
    client = new OpenAI({ apiKey: teacherKey, baseURL, maxRetries: 0 });
  });

  /** A teacher key of the tenant's own (one a test may revoke or slow down) and a client on it. */
  const ownTeacherClient = async () => {
    const key = await new Factory(t.app).newKey(tenant, 'teacher');
    return { key, own: new OpenAI({ apiKey: key.key, baseURL, maxRetries: 0 }) };
  };

  it('answers a completion with usage and the x-inkstone headers', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'inkstone-standard', messages: [{ role: 'user', content: '你好' }], max_tokens: 100 })
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0].message.content).toBe('Fake answer from deepseek-flash.');
    expect(data.usage?.prompt_tokens).toBe(countPromptTokens([{ content: '你好' }]));
    expect(response.headers.get('x-inkstone-provider')).toBe('deepseek');
    expect(response.headers.get('x-inkstone-model')).toBe('deepseek-flash');
    expect(response.headers.get('x-inkstone-cache')).toBe('miss');
    expect(response.headers.get('x-inkstone-cost')).toMatch(/^0\.\d+$/);
    const [row] = await t.dataSource.query(`SELECT cost_nanos, api_key_id, purpose FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(row.purpose).toBe('chat');
    expect(BigInt(row.cost_nanos)).toBeGreaterThan(0n);
  });

  it("records what compression saved in the provider's tokens: the bytes it took off, scaled by the call's counted input over its bound", async () => {
    // Pasted text: zero-width characters, runs of spaces, trailing spaces and blank lines.
    const content = `第一段\u200B文字，  很长  很长。   \n\n\n\n\n第二段\u3000\u3000文字。      \n`.repeat(20);
    await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content }], max_tokens: 50 });
    const sent = String(fake.requests[0].body.messages[0].content);
    const boundSaved = Buffer.byteLength(content) - Buffer.byteLength(sent); // the bound counts bytes; the template's tokens cancel
    expect(boundSaved).toBeGreaterThan(200);
    const [row] = await t.dataSource.query(`SELECT compression_saved_tokens, input_tokens, estimated_input_tokens FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(row.input_tokens).toBe(countPromptTokens([{ content: sent }]));
    expect(row.input_tokens).toBeLessThan(row.estimated_input_tokens);
    expect(row.compression_saved_tokens).toBe(Math.round((boundSaved * row.input_tokens) / row.estimated_input_tokens));
    expect(row.compression_saved_tokens).toBeLessThan(boundSaved);
  });

  it('streams, with a usage chunk when asked, and ends with [DONE]', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'deepseek-flash',
        messages: [{ role: 'user', content: 'stream please' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    // The key's rate-limit state comes with a stream as with every answer.
    expect(response.headers.get('ratelimit-limit')).toMatch(/^\d+$/);
    expect(response.headers.get('ratelimit-remaining')).toMatch(/^\d+$/);
    // One school's answer: kept by no cache.
    expect(response.headers.get('cache-control')).toBe('no-store');
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('Fake answer from deepseek-flash.');
    expect(finish).toBe('stop');
    expect(usage?.prompt_tokens).toBe(countPromptTokens([{ content: 'stream please' }]));
    const [row] = await t.dataSource.query(`SELECT streamed, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(row).toMatchObject({ streamed: true, outcome: 'ok' });
  });

  it('answers a repeat from the cache for nothing, and skips the cache with Cache-Control: no-cache', async () => {
    const ask = (headers?: Record<string, string>) =>
      client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'cache me' }], temperature: 0 }, { headers }).withResponse();
    const first = await ask();
    const second = await ask();
    expect(second.response.headers.get('x-inkstone-cache')).toBe('hit');
    expect(second.response.headers.get('x-inkstone-cost')).toBe('0.00');
    expect(second.data.choices[0].message.content).toBe(first.data.choices[0].message.content);
    const third = await ask({ 'Cache-Control': 'no-cache' });
    expect(third.response.headers.get('x-inkstone-cache')).toBe('miss');
    expect(fake.requests).toHaveLength(2);
  });

  it('answers a repeat from the database first, then from memory without it, on each instance', async () => {
    const body = { model: 'inkstone-standard', messages: [{ role: 'user', content: 'remember me' }], temperature: 0 };
    const first = await t.http.post('/v1/chat/completions').set(bearer(teacherKey)).send(body).expect(200);
    expect(first.headers['x-inkstone-cache']).toBe('miss');
    const other = await t.another();
    const otherHttp = request(other.getHttpServer());
    // An answer is held in memory from its first read, not from its store: each instance's first
    // repeat is a database hit (counted on the row), which it then holds.
    for (const http of [t.http, otherHttp]) expect((await http.post('/v1/chat/completions').set(bearer(teacherKey)).send(body).expect(200)).headers['x-inkstone-cache']).toBe('hit');
    const [{ hits }] = await t.dataSource.query(`SELECT hits FROM llm_cache WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(hits).toBe(2);
    // With the row gone from the database, both instances still answer it from memory: no provider call, hits not counted there.
    await t.dataSource.query(`UPDATE llm_cache SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
    for (const http of [t.http, otherHttp]) {
      const res = await http.post('/v1/chat/completions').set(bearer(teacherKey)).send(body).expect(200);
      expect(res.headers['x-inkstone-cache']).toBe('hit');
      expect(res.body.choices[0].message.content).toBe(first.body.choices[0].message.content);
    }
    expect(fake.requests).toHaveLength(1);
    // Each hit is in the ledger, free (written behind its answer, on each instance).
    for (const app of [t.app, other]) await app.get(BudgetService).ledgerWritten();
    const rows = await t.dataSource.query(`SELECT cache_status, cost_nanos FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at`, [tenant.tenantId]);
    expect(rows.map((r: { cache_status: string }) => r.cache_status)).toEqual(['miss', 'hit', 'hit', 'hit', 'hit']);
    // Another tenant asking the same is a miss: memory is per tenant.
    const f = new Factory(t.app);
    const stranger = await f.newTenant({ monthlyBudget: '50.00' });
    expect((await t.http.post('/v1/chat/completions').set(bearer(stranger.adminKey)).send(body).expect(200)).headers['x-inkstone-cache']).toBe('miss');
  });

  it("relays a Chinese answer whose characters the provider's writes cut in two whole, and caches it whole", async () => {
    const content = '好的，老师。这篇作文的结构清楚，语言生动。';
    fake.enqueue('deepseek', { kind: 'stream', content, chunks: 6, splitCharacters: true });
    const messages = [{ role: 'user' as const, content: '请评价这篇作文' }];
    const stream = await client.chat.completions.create({ model: 'inkstone-standard', messages, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    // Each read decoded alone made the cut characters U+FFFD, relayed and cached.
    expect(text).toBe(content);
    const again = await client.chat.completions.create({ model: 'inkstone-standard', messages }).withResponse();
    expect(again.response.headers.get('x-inkstone-cache')).toBe('hit');
    expect(again.data.choices[0].message.content).toBe(content);
  });

  it('takes a stream of white space alone as a blank answer: tried elsewhere, never relayed or cached', async () => {
    fake.enqueue('deepseek', { kind: 'stream', content: '\n\n  \n', chunks: 3 });
    const messages = [{ role: 'user' as const, content: 'blank please' }];
    const stream = await client.chat.completions.create({ model: 'inkstone-standard', messages, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text.trim()).not.toBe('');
    const rows = await t.dataSource.query(`SELECT provider, error_reason FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
    expect(rows[0]).toEqual({ provider: 'deepseek', error_reason: 'blank_output' });
    expect(rows).toHaveLength(2);
    // Asked again whole, the cache has the real answer (it had the blank one, a failure when asked uncached).
    const again = await client.chat.completions.create({ model: 'inkstone-standard', messages }).withResponse();
    expect(again.response.headers.get('x-inkstone-cache')).toBe('hit');
    expect(again.data.choices[0].message.content).toBe(text);
  });

  it('reports a stream that breaks after its first token as an error, not a success', async () => {
    fake.enqueue('deepseek', { kind: 'stream', content: 'a b c d e f g h', chunks: 8, cutAfterChunks: 2 });
    const stream = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'x' }], stream: true });
    let text = '';
    await expect(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      })(),
    ).rejects.toThrow(/stream broke off/);
    expect(text.length).toBeGreaterThan(0);
  });

  it('charges a stream whose client leaves mid-way for what it produced, once; caches none of it and frees its slots', async () => {
    fake.enqueue('deepseek', { kind: 'stream', content: 'one two three four five six seven eight nine ten', chunks: 10, chunkDelayMs: 150 });
    const leave = new AbortController();
    const question = { model: 'inkstone-standard', messages: [{ role: 'user' as const, content: 'leave half way' }], stream: true as const };
    const stream = await client.chat.completions.create(question, { signal: leave.signal });
    let text = '';
    try {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (text.trim().split(' ').length >= 2) leave.abort(); // the client goes away after two words
      }
    } catch {
      // (the client's own abort)
    }
    expect(text.trim().split(' ').length).toBeLessThan(10);
    const row = async () => (await t.dataSource.query(`SELECT outcome, error_reason, cost_nanos, output_tokens FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId])) as Array<Record<string, string>>;
    await waitFor(async () => (await row()).length > 0, 10_000, 'the interrupted stream settled');
    await t.app.get(BudgetService).ledgerWritten();
    // One row: cut by its client, charged for the input and the words produced (the provider bills them), not for the whole answer.
    const rows = await row();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'cancelled' });
    expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n);
    expect(Number(rows[0].output_tokens)).toBeLessThan(countPromptTokens([{ content: 'one two three four five six seven eight nine ten' }]));
    const spent = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.spent;
    expect(parseCny(spent)).toBe(BigInt(rows[0].cost_nanos));
    // Its slots are free and nothing of it is held; the part answer is not cached.
    const limits = await t.http.get('/v1/limits').set(bearer(teacherKey)).expect(200);
    expect(limits.body.usage).toMatchObject({ chatInFlight: 0, providerCalls: 0 });
    const { held, available } = t.app.get(BudgetService).leases!.holding(tenant.tenantId);
    expect(held).toBe(available);
    const again = await client.chat.completions.create({ ...question, stream: false }).withResponse();
    expect(again.response.headers.get('x-inkstone-cache')).toBe('miss');
    // A client leaving is not a provider error.
    const metrics = await t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200);
    expect(metrics.text.split('\n').filter((l) => l.startsWith('inkstone_llm_provider_errors_total') && l.includes('reason="cancelled"'))).toEqual([]);
  });

  it('ends a stream whose key is revoked with an error event within a second or so: the call cancelled and charged for what it produced, once', async () => {
    const { key, own } = await ownTeacherClient();
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    fake.enqueue('deepseek', { kind: 'stream', content: words, chunks: 40, chunkDelayMs: 60 });
    const stream = await own.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'a long answer' }], stream: true });
    let text = '';
    let revoked = false;
    const read = (async () => {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (!revoked && text.trim().split(' ').length >= 2) {
          revoked = true;
          await t.http.delete(`/v1/api-keys/${key.id}`).set(bearer(tenant.adminKey)).expect(204);
        }
      }
    })();
    // Before: the whole answer streamed to the revoked key (40 words, 2.4 s), a success.
    await expect(read).rejects.toThrow(/revoked/);
    expect(text.trim().split(' ').length).toBeLessThan(30);
    const row = async () => (await t.dataSource.query(`SELECT outcome, error_reason, cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId])) as Array<Record<string, string>>;
    await waitFor(async () => (await row()).length > 0, 10_000, 'the cut stream settled');
    await t.app.get(BudgetService).ledgerWritten();
    const rows = await row();
    expect(rows).toEqual([{ outcome: 'stream_interrupted', error_reason: 'cancelled', cost: expect.stringMatching(/^[1-9]\d*$/) }]);
    const spent = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.spent;
    expect(parseCny(spent)).toBe(BigInt(rows[0].cost));
    const limits = await t.http.get('/v1/limits').set(bearer(tenant.adminKey)).expect(200);
    expect(limits.body.usage).toMatchObject({ chatInFlight: 0, providerCalls: 0 });
  });

  it('delivers a JSON-mode stream whole when its key is revoked while it is answered: it was paid for before its first byte', async () => {
    const { key, own } = await ownTeacherClient();
    fake.setLatency(1_500); // (past the second after which a stream's caller is identified again)
    let text = '';
    try {
      const stream = own.chat.completions.create({
        model: 'inkstone-standard',
        messages: [{ role: 'user', content: 'Answer in json: the capital of France' }],
        response_format: { type: 'json_object' },
        stream: true,
      });
      await waitFor(async () => fake.requests.length > 0, 10_000, 'the call at the provider');
      await t.http.delete(`/v1/api-keys/${key.id}`).set(bearer(tenant.adminKey)).expect(204);
      for await (const chunk of await stream) text += chunk.choices[0]?.delta?.content ?? '';
    } finally {
      fake.setLatency(0);
    }
    // Before: no text and an error, the whole answer billed all the same.
    expect(JSON.parse(text)).toEqual(expect.any(Object));
    await t.app.get(BudgetService).ledgerWritten();
    const rows = await t.dataSource.query(`SELECT outcome, cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(rows).toEqual([{ outcome: 'ok', cost: expect.stringMatching(/^[1-9]\d*$/) }]);
    // The key is refused from here on.
    await t.http.get('/v1/models').set(bearer(key.key)).expect(401);
  });

  it('keeps streaming while a check of its key is slow: the check runs beside the stream, not in front of it', async () => {
    const { own } = await ownTeacherClient();
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    fake.enqueue('deepseek', { kind: 'stream', content: words, chunks: 40, chunkDelayMs: 60 });
    const stream = await own.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'a long answer' }], stream: true });
    // From the first token on, every key check waits (a busy pool) until the stream has ended.
    const keys = t.app.get(ApiKeysService);
    const original = keys.authenticate.bind(keys);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = 0;
    const spy = jest.spyOn(keys, 'authenticate').mockImplementation(async (...args) => {
      asked++;
      await gate;
      return original(...args);
    });
    let text = '';
    try {
      const read = (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      })();
      // Before: the stream stopped at its first check, a second in, until the key was read.
      await Promise.race([read, new Promise((_, reject) => setTimeout(() => reject(new Error(`the stream waited for its key check (${text.trim().split(' ').length} words)`)), 20_000))]);
    } finally {
      release();
      spy.mockRestore();
    }
    expect(text.trim().split(' ')).toHaveLength(40);
    expect(asked).toBeGreaterThan(0); // a check was made while it streamed
  });

  it('charges a stream whose client leaves before its first token for its prompt (the provider read it): not nothing', async () => {
    fake.setLatency(1_500);
    try {
      const leave = new AbortController();
      const long = '请把这段话读完。'.repeat(500);
      const stream = client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: long }], stream: true }, { signal: leave.signal });
      await waitFor(async () => fake.requests.length > 0, 10_000, 'the prompt at the provider');
      leave.abort();
      await stream.then(
        async (s) => {
          for await (const _ of s) void _;
        },
        () => undefined,
      ).catch(() => undefined);
      const row = async () => (await t.dataSource.query(`SELECT outcome, error_reason, cost_nanos::text AS cost, input_tokens, usage_source FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId])) as Array<Record<string, string | number>>;
      await waitFor(async () => (await row()).length > 0, 10_000, 'the cancelled call settled');
      await t.app.get(BudgetService).ledgerWritten();
      const [r] = await row();
      expect(r).toMatchObject({ error_reason: 'cancelled', usage_source: 'estimated' });
      expect(Number(r.input_tokens)).toBeGreaterThan(0);
      expect(BigInt(r.cost)).toBeGreaterThan(0n);
      const spent = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.spent;
      expect(parseCny(spent)).toBe(BigInt(r.cost));
    } finally {
      fake.setLatency(0);
    }
  });

  it('in JSON mode, takes an answer that is not JSON as a failed attempt: billed, and the next provider answers', async () => {
    fake.enqueue('deepseek', { kind: 'invalid-json' });
    const { data, response } = await client.chat.completions
      .create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'Answer in json: the capital of France' }], response_format: { type: 'json_object' } })
      .withResponse();
    expect(response.headers.get('x-inkstone-provider')).toBe('dashscope');
    expect(JSON.parse(data.choices[0].message.content!)).toEqual(expect.any(Object));
    const rows = await t.dataSource.query(`SELECT provider, outcome, error_reason, cost_nanos FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
    expect(rows.map((r: { provider: string; outcome: string }) => [r.provider, r.outcome])).toEqual([
      ['deepseek', 'invalid_output'],
      ['dashscope', 'ok'],
    ]);
    expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n); // its tokens were produced: billed once
    const spent = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.spent;
    expect(parseCny(spent)).toBe(rows.reduce((a: bigint, r: { cost_nanos: string }) => a + BigInt(r.cost_nanos), 0n));
    // streamed, the same: the answer that reaches the client is JSON
    fake.enqueue('deepseek', { kind: 'invalid-json', content: 'Sure! {"answer": ' });
    const stream = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'json again, streamed' }], response_format: { type: 'json_object' }, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(JSON.parse(text)).toEqual(expect.any(Object));
  });

  it('in JSON mode, never answers 200 with content that is not JSON: when every provider fails it is a 503 that says why', async () => {
    for (const d of ['deepseek', 'dashscope', 'zhipu'] as const) fake.enqueue(d, { kind: 'invalid-json' });
    const res = await t.http
      .post('/v1/chat/completions')
      .set(bearer(teacherKey))
      .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'json please' }], response_format: { type: 'json_object' } })
      .expect(503);
    expect(res.body.error).toMatchObject({ code: 'NO_PROVIDER_AVAILABLE', message: expect.stringContaining('invalid_output') });
    // When to come back: at least a second (the providers answered; their breakers are closed).
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const streamed = await t.http
      .post('/v1/chat/completions')
      .set(bearer(teacherKey))
      .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'json please, streamed' }], response_format: { type: 'json_object' }, stream: true });
    // (the fake answers JSON again once its script is used up, so this one succeeds as JSON)
    expect(streamed.status).toBe(200);
    const rows = await t.dataSource.query(`SELECT outcome FROM llm_calls WHERE tenant_id = $1 AND outcome = 'invalid_output'`, [tenant.tenantId]);
    expect(rows).toHaveLength(3);
  });

  it("in JSON mode, an answer cut at the caller's max_tokens is a 400 to raise it, paid once: not tried on every provider, then a 503 the client retries", async () => {
    fake.enqueue('deepseek', { kind: 'ok', content: '{"answer": "The capital of Fr', finishReason: 'length' });
    const err = await client.chat.completions
      .create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'Answer in json, at length' }], response_format: { type: 'json_object' }, max_tokens: 8 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect([err.status, err.error.code]).toEqual([400, 'BAD_REQUEST']);
    expect(err.error.message).toMatch(/max_tokens \(8\)/);
    expect(fake.requests).toHaveLength(1); // one provider call (and no retry of the client's: a 400)
    const rows = await t.dataSource.query(`SELECT provider, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(rows.map((r: { provider: string; outcome: string }) => [r.provider, r.outcome])).toEqual([['deepseek', 'invalid_output']]);
    expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n); // its tokens were produced: billed once
    // Streamed, the same, before any byte of the stream.
    fake.enqueue('deepseek', { kind: 'ok', content: '{"answer": "The capital of Fr', finishReason: 'length' });
    const streamed = await t.http
      .post('/v1/chat/completions')
      .set(bearer(teacherKey))
      .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'json, at length, streamed' }], response_format: { type: 'json_object' }, max_tokens: 8, stream: true });
    expect([streamed.status, streamed.body.error?.code]).toEqual([400, 'BAD_REQUEST']);
    expect(fake.requests).toHaveLength(2);
  });

  it("takes a provider's failure told as a finish reason (DeepSeek's insufficient_system_resource) as a failed attempt, not a 200 with half an answer", async () => {
    fake.enqueue('deepseek', { kind: 'ok', content: 'The first half of an answ', finishReason: 'insufficient_system_resource' });
    const { data } = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'a whole answer, please' }] }).withResponse();
    expect(data.choices[0].finish_reason).toBe('stop');
    expect(data.choices[0].message.content).not.toBe('The first half of an answ');
    const rows = await t.dataSource.query(`SELECT provider, outcome, error_reason FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
    expect(rows[0]).toMatchObject({ provider: 'deepseek', error_reason: 'interrupted' });
    expect(rows[0].outcome).not.toBe('ok');
    expect(rows[rows.length - 1].outcome).toBe('ok');
    // Streamed, its first words were sent: the stream ends with an error, never a finish of that reason.
    fake.enqueue('deepseek', { kind: 'stream', content: 'The first half of an answer, streamed', finishReason: 'insufficient_system_resource' });
    const stream = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'a whole answer, streamed' }], stream: true });
    const finishes: Array<string | null> = [];
    const ended = await (async () => {
      for await (const chunk of stream) finishes.push(chunk.choices[0]?.finish_reason ?? null);
    })().then(
      () => 'done',
      (e: Error) => e.message,
    );
    expect(finishes).not.toContain('insufficient_system_resource');
    expect(ended).not.toBe('done');
  });

  it('answers 402 BUDGET_EXHAUSTED when the call cannot fit the budget, streaming or not', async () => {
    await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '0.000001' }).expect(200);
    const err = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(402);
    expect(err.error).toMatchObject({ code: 'BUDGET_EXHAUSTED' });
    // The openai client reads the error's class as from OpenAI.
    expect(err.type).toBe('insufficient_quota');
    const streamErr = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'x' }], stream: true }).catch((e) => e);
    expect(streamErr.status).toBe(402);
    expect(streamErr.headers.get('ratelimit-limit')).toMatch(/^\d+$/);
    expect(fake.requests).toHaveLength(0);
  });

  it('reaches the premium tier only with an admin key and directDeep on, as essays do', async () => {
    const admin = new OpenAI({ apiKey: tenant.adminKey, baseURL, maxRetries: 0 });
    const ask = (c: OpenAI, model: string) => c.chat.completions.create({ model, messages: [{ role: 'user', content: 'a premium answer, please' }], max_tokens: 50 }).withResponse();
    for (const [c, model] of [
      [client, 'inkstone-deep'],
      [client, 'qwen3-max'], // a deep-tier model by its id
      [client, 'dashscope:qwen3-max'],
      [client, 'gpt-6.2-sol'], // a premium model in no tier
      [client, 'openai:gpt-6.2-sol'],
      [admin, 'inkstone-deep'], // an admin, before directDeep is on
    ] as const) {
      const err = await ask(c, model).catch((e) => e);
      expect(err.status).toBe(403);
      expect(err.error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('deep-review order') });
    }
    expect(fake.requests).toHaveLength(0);
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(0);
    await ask(client, 'inkstone-standard'); // the standard tier is every key's

    await t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ directDeep: true }).expect(200);
    expect((await ask(client, 'inkstone-deep').catch((e) => e)).status).toBe(403); // still not a teacher's
    const { response } = await ask(admin, 'inkstone-deep');
    expect(response.headers.get('x-inkstone-model')).toBe('qwen3-max');
  });

  it('answers 404 for a model that is not in the catalog and 400 naming bad fields', async () => {
    const err = await client.chat.completions.create({ model: 'gpt-99', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err.status).toBe(404);
    // Names an object has from its prototype are no tier alias either.
    for (const model of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect((await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)).status).toBe(404);
    }
    const res = await t.http
      .post('/v1/chat/completions')
      .set(bearer(teacherKey))
      .send({ model: 'inkstone-standard', messages: [{ role: 'wizard', content: 'x' }], temperature: 'hot' })
      .expect(400);
    expect(res.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(['messages[0].role', 'temperature']);
    // Tools are refused by name, not dropped: after the same prompt without tools (now cached), no text answer comes back as if it were one.
    await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'weather in Beijing?' }] });
    const tools = await client.chat.completions
      .create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'weather in Beijing?' }], tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }], tool_choice: 'required' })
      .catch((e) => e);
    expect(tools.status).toBe(400);
    expect(tools.error.details.map((d: { field: string }) => d.field)).toEqual(['tools', 'tool_choice']);
  });

  it('answers 400 CONTEXT_LENGTH_EXCEEDED for a prompt longer than every candidate takes: not a 503 to retry, nothing charged', async () => {
    const listed = await client.models.list();
    const flash = listed.data.find((m) => m.id === 'qwen-flash') as unknown as { inkstone: { contextWindow: number } };
    const content = 'word '.repeat(flash.inkstone.contextWindow + 1);
    for (const stream of [false, true]) {
      const err = await client.chat.completions.create({ model: 'dashscope:qwen-flash', messages: [{ role: 'user', content }], max_tokens: 10, stream }).catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err.status).toBe(400);
      expect(err.error).toMatchObject({ code: 'CONTEXT_LENGTH_EXCEEDED', message: expect.stringContaining(String(flash.inkstone.contextWindow)) });
    }
    expect(fake.requests).toHaveLength(0);
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND cost_nanos > 0`, [tenant.tenantId]);
    expect(n).toBe(0);
    // The same prompt, short enough, is answered.
    await client.chat.completions.create({ model: 'dashscope:qwen-flash', messages: [{ role: 'user', content: 'word '.repeat(100) }], max_tokens: 10 });
  });

  it('answers 422 when every provider refuses the content', async () => {
    fake.enqueue('deepseek', { kind: 'preset', name: 'content_risk' });
    fake.enqueue('dashscope', { kind: 'preset', name: 'data_inspection_failed' });
    fake.enqueue('zhipu', { kind: 'preset', name: 'content_filter' });
    const err = await client.chat.completions.create({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err.status).toBe(422);
    expect(err.error).toMatchObject({ code: 'CONTENT_REJECTED' });
  });

  it('lists models in OpenAI shape with Inkstone pricing, time-of-day windows and sources; retired models are not listed', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['inkstone-standard', 'inkstone-deep', 'deepseek-flash', 'qwen3-max']));
    expect(ids).not.toContain('qwen-turbo');
    expect(ids).not.toContain('deepseek-chat');
    const find = (id: string) => page.data.find((m) => m.id === id) as unknown as { owned_by: string; inkstone: Record<string, unknown> };
    const deepseek = find('deepseek-flash');
    expect(deepseek.owned_by).toBe('deepseek');
    expect(deepseek.inkstone).toMatchObject({
      provider: 'deepseek',
      tiers: ['standard'],
      pricing: { input: '1', cachedInput: '0.02', output: '4' },
      windows: [
        {
          name: 'peak',
          timezone: 'Asia/Shanghai',
          days: ['mon', 'tue', 'wed', 'thu', 'fri'],
          hours: ['09:00-12:00', '14:00-18:00'],
          exceptHolidays: 'cn-public-holidays',
          pricing: { input: '2', cachedInput: '0.04', output: '8' },
        },
      ],
      batchPricing: null,
      contextWindow: 1000000,
      source: 'https://api-docs.deepseek.com/zh-cn/quick_start/pricing',
      checkedOn: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/),
    });
    expect(find('qwen3-max').inkstone).toMatchObject({ pricing: { input: '2.5', cachedInput: '0.5', output: '10' }, batchPricing: { input: '1.25', cachedInput: '1.25', output: '5' }, maxInputTokens: 32768 });
    // A tier alias carries its candidates and the prices of the first.
    expect(find('inkstone-standard').inkstone).toMatchObject({
      alias: true,
      candidates: ['deepseek:deepseek-flash', 'dashscope:qwen-flash', 'zhipu:glm-5.3-flash'],
      first: 'deepseek:deepseek-flash',
      provider: 'deepseek',
      tiers: ['standard'],
      pricing: { input: '1', cachedInput: '0.02', output: '4' },
      contextWindow: 1000000,
    });
    // Every entry, aliases included, has the fields SPEC §2 lists.
    for (const m of page.data as unknown as Array<{ inkstone: object }>) expect(Object.keys(m.inkstone)).toEqual(expect.arrayContaining(['provider', 'tiers', 'pricing', 'contextWindow']));
    // The openai client's models.retrieve: one entry as listed, by its id or its provider:id key.
    expect(await client.models.retrieve('inkstone-standard')).toEqual(page.data.find((m) => m.id === 'inkstone-standard'));
    expect(await client.models.retrieve('dashscope:qwen-flash')).toEqual(page.data.find((m) => m.id === 'qwen-flash'));
    const retired = await client.models.retrieve('qwen-turbo').catch((e) => e);
    expect(retired.status).toBe(404);
    expect(retired.error.message).toBe('dashscope:qwen-turbo was retired by its provider on 2026-10-10; use dashscope:qwen-flash instead');
    expect((await client.models.retrieve('gpt-99').catch((e) => e)).status).toBe(404);
  });

  it('answers 404 for a retired model, naming its replacement', async () => {
    const err = await client.chat.completions.create({ model: 'qwen-turbo', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err.status).toBe(404);
    expect(err.error).toMatchObject({ code: 'NOT_FOUND', message: 'dashscope:qwen-turbo was retired by its provider on 2026-10-10; use dashscope:qwen-flash instead' });
    const unknown = await client.chat.completions.create({ model: 'qwen-99', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(unknown.status).toBe(404);
    expect(unknown.error.message).toMatch(/not in the catalog/);
  });

  it('needs a tenant key', async () => {
    const anonymous = new OpenAI({ apiKey: 'not-a-key', baseURL, maxRetries: 0 });
    const err = await anonymous.models.list().catch((e) => e);
    expect(err.status).toBe(401);
  });
});

describe('the gateway with no provider configured', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('answers 503 NO_PROVIDER_AVAILABLE and charges nothing', async () => {
    const tenant = await new Factory(t.app).newTenant();
    const res = await t.http
      .post('/v1/chat/completions')
      .set(bearer(tenant.adminKey))
      .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'x' }] })
      .expect(503);
    expect(res.body.error.code).toBe('NO_PROVIDER_AVAILABLE');
    // No provider is configured: coming back later changes nothing, so no Retry-After.
    expect(res.headers['retry-after']).toBeUndefined();
    const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM llm_calls`);
    expect(n).toBe(0);
  });

  it('lists the tier aliases with no candidate: provider, pricing and context window are null', async () => {
    const tenant = await new Factory(t.app).newTenant();
    const res = await t.http.get('/v1/models').set(bearer(tenant.adminKey)).expect(200);
    expect(res.body.data.map((m: { id: string }) => m.id)).toEqual(['inkstone-standard', 'inkstone-deep']);
    expect(res.body.data[0].inkstone).toEqual({
      alias: true,
      provider: null,
      tiers: ['standard'],
      candidates: [],
      first: null,
      pricing: null,
      batchPricing: null,
      pricingUnit: 'CNY per million tokens',
      contextWindow: null,
    });
  });
});

describe('catalog warnings for the operator', () => {
  let t: TestApp;
  let catalog: ReturnType<typeof extendedCatalog>;
  const DAY = 86_400_000;
  beforeAll(async () => {
    const soon = new Date(Date.now() + 10 * DAY).toISOString().slice(0, 10);
    catalog = extendedCatalog([catalogEntry({ retiresOn: soon, replacement: 'dashscope:qwen-flash' })]);
    t = await createTestApp({ LLM_CATALOG_FILE: catalog.file, DASHSCOPE_API_KEY: 'sk-x', LLM_STANDARD_MODELS: 'dashscope:qwen3.8-flash,dashscope:qwen-flash' });
  });
  afterAll(async () => {
    await t.close();
    catalog.remove();
  });

  it('names a configured model that retires within 30 days on /health, without making the service unready', async () => {
    // Warnings are details: the operator's token sees them, anyone else the status only.
    expect((await t.http.get('/health').expect(200)).body).toEqual({ status: 'ok' });
    const res = await t.http.get('/health').set(bearer(OPERATOR_TOKEN)).expect(200);
    expect(res.body.status).toBe('ok');
    expect(res.body.warnings).toEqual([expect.stringMatching(/^dashscope:qwen3\.8-flash \(tier standard\) retires on \d{4}-\d{2}-\d{2}, in (9|10) days; replace it with dashscope:qwen-flash$/)]);
  });

  it("names a catalog tier none of whose models' providers has a key on /health (only a local model's key set)", async () => {
    // (A tier named in LLM_STANDARD_MODELS / LLM_DEEP_MODELS without a key stops the start: catalog.spec.ts.)
    const forgot = await createTestApp({ OPENAI_API_KEY: 'ollama' });
    try {
      const res = await forgot.http.get('/health').set(bearer(OPERATOR_TOKEN)).expect(200);
      // Before, the service said nothing, and failed every deep review.
      expect(res.body.warnings).toEqual([expect.stringMatching(/^tier deep has no model whose provider has an API key: deep reviews and escalations fail/)]);
    } finally {
      await forgot.close();
    }
  });
});
