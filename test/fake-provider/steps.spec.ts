/**
 * The fake provider over real HTTP on loopback: scripted steps (every kind, per model, latency,
 * hang and reset) and the `/_fake/*` control endpoints.
 */
import { startFakeProvider } from './fake-provider';
import { chat, DIALECTS, fake, post, tokens, useFakeProvider, type Json } from './spec-support';

useFakeProvider();

describe('scripted steps', () => {
  it('plays steps FIFO per dialect', async () => {
    fake.enqueue('openai', [
      { kind: 'error', status: 502, body: '<html>bad gateway</html>', headers: { 'content-type': 'text/html' } },
      { kind: 'ok', content: 'second', finishReason: 'length' },
    ]);
    // A queue for one dialect does not affect another.
    expect((await chat('deepseek', [{ role: 'user', content: 'x' }])).choices[0].message.content).toBe('Fake answer from deepseek-flash.');

    const first = await post('openai', { model: 'm', messages: [] });
    expect(first.status).toBe(502);
    expect(first.headers.get('content-type')).toBe('text/html');
    expect(await first.text()).toBe('<html>bad gateway</html>');
    const second = await chat('openai', []);
    expect(second.choices[0]).toMatchObject({ message: { content: 'second' }, finish_reason: 'length' });
    expect(second.usage.completion_tokens).toBe(tokens('second'));
    expect((await chat('openai', [])).choices[0].message.content).toBe('Fake answer from gpt-6-luna.');
  });

  it('sends an error step body as JSON with its headers', async () => {
    fake.enqueue('zhipu', { kind: 'error', status: 503, body: { error: { code: '1305', message: '该模型当前访问量过大' } }, headers: { 'Retry-After': '3' } });
    const res = await post('zhipu', { model: 'glm-4', messages: [] });
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toEqual({ error: { code: '1305', message: '该模型当前访问量过大' } });
  });

  it('keeps per-model queues: only that model consumes them', async () => {
    fake.enqueue('deepseek', { kind: 'preset', name: 'rate_limit' }, { model: 'deepseek-v4-pro' });
    fake.enqueue('deepseek', { kind: 'ok', content: 'any model' });
    const chatRes = await post('deepseek', { model: 'deepseek-flash', messages: [] });
    expect(((await chatRes.json()) as Json).choices[0].message.content).toBe('any model');
    expect((await post('deepseek', { model: 'deepseek-flash', messages: [] })).status).toBe(200);
    const reasoner = await post('deepseek', { model: 'deepseek-v4-pro', messages: [] });
    expect(reasoner.status).toBe(429);
    expect((await post('deepseek', { model: 'deepseek-v4-pro', messages: [] })).status).toBe(200);
  });

  it('blank-json: 200 with only whitespace and finish_reason "stop"', async () => {
    fake.enqueue('deepseek', { kind: 'blank-json' });
    const body = await chat('deepseek', [{ role: 'user', content: 'json please' }], { response_format: { type: 'json_object' } });
    const content = body.choices[0].message.content as string;
    expect(content.length).toBeGreaterThan(0);
    expect(content).toMatch(/^[ \n]+$/);
    expect(body.choices[0].finish_reason).toBe('stop');
    expect(body.usage.completion_tokens).toBe(tokens(content));
  });

  it('invalid-json: 200 with content that does not parse', async () => {
    fake.enqueue('openai', [{ kind: 'invalid-json' }, { kind: 'invalid-json', content: '{"score": 3,}' }]);
    for (const expected of [undefined, '{"score": 3,}']) {
      const body = await chat('openai', [{ role: 'user', content: 'json' }], { response_format: { type: 'json_object' } });
      const content = body.choices[0].message.content as string;
      if (expected) expect(content).toBe(expected);
      expect(() => JSON.parse(content)).toThrow();
    }
  });

  it('applies the default latency and a step\'s own latency', async () => {
    fake.setLatency(3000);
    fake.enqueue('zhipu', { kind: 'ok', latencyMs: 0 });
    let t = Date.now();
    await chat('zhipu', []);
    expect(Date.now() - t).toBeLessThan(2_000); // not the default 3 s (a wide margin: a loaded machine)

    t = Date.now();
    await chat('zhipu', []);
    expect(Date.now() - t).toBeGreaterThanOrEqual(2_990);
  });

  it('blankLinesBefore: headers first, then "\\n" lines, then the JSON body', async () => {
    fake.enqueue('deepseek', { kind: 'ok', content: 'late', latencyMs: 600, blankLinesBefore: 3 });
    const t = Date.now();
    const res = await post('deepseek', { model: 'deepseek-flash', messages: [] });
    const headersAt = Date.now() - t;
    expect(res.status).toBe(200);
    const text = await res.text();
    const bodyAt = Date.now() - t;
    expect(headersAt).toBeLessThan(300);
    expect(bodyAt).toBeGreaterThanOrEqual(580);
    expect(text.startsWith('\n\n\n{')).toBe(true);
    expect(JSON.parse(text).choices[0].message.content).toBe('late'); // JSON.parse skips the blank lines
  });

  it('reset: the socket is destroyed without an answer', async () => {
    fake.enqueue('openai', { kind: 'reset' });
    await expect(post('openai', { model: 'm', messages: [] })).rejects.toThrow('fetch failed');
    expect((await post('openai', { model: 'm', messages: [] })).status).toBe(200);
  });

  it('hang: the client times out, and close() still returns promptly', async () => {
    const own = await startFakeProvider();
    try {
      own.enqueue('deepseek', [{ kind: 'hang' }, { kind: 'hang' }]);
      const url = `${own.baseUrl('deepseek')}/chat/completions`;
      const t = Date.now();
      await expect(post('deepseek', { model: 'x', messages: [] }, { url, signal: AbortSignal.timeout(300) })).rejects.toMatchObject({
        name: 'TimeoutError',
      });
      expect(Date.now() - t).toBeGreaterThanOrEqual(290);
      // A second request still hanging when the server closes: close() ends it.
      const pending = post('deepseek', { model: 'x', messages: [] }, { url });
      const outcome = pending.then(
        () => 'answered',
        () => 'failed',
      );
      await new Promise((r) => setTimeout(r, 100));
      expect(own.requests).toHaveLength(2);
      const closing = Date.now();
      await own.close();
      expect(Date.now() - closing).toBeLessThan(1000);
      expect(await outcome).toBe('failed');
    } finally {
      await own.close();
    }
  });

  it('close() is prompt with a slow answer pending', async () => {
    const own = await startFakeProvider({ latencyMs: 10_000 });
    const pending = post('zhipu', { model: 'x', messages: [] }, { url: `${own.baseUrl('zhipu')}/chat/completions` }).then(
      (r) => r.status,
      () => 'failed',
    );
    await new Promise((r) => setTimeout(r, 100));
    const t = Date.now();
    await own.close();
    expect(Date.now() - t).toBeLessThan(1000);
    expect(await pending).toBe('failed');
  });

  it('reset() clears queues, requests, responder, latency and context windows', async () => {
    fake.enqueue('openai', { kind: 'preset', name: 'server_error' });
    fake.setResponder(() => 'custom');
    fake.setLatency(5000);
    fake.setContextWindow('gpt-6-luna', 5);
    await post('openai', { model: 'x', messages: [] }, { auth: null });
    fake.reset();
    expect(fake.requests).toHaveLength(0);
    expect(fake.requestCount).toBe(0);
    const t = Date.now();
    const body = await chat('openai', [{ role: 'user', content: 'hello' }]);
    expect(Date.now() - t).toBeLessThan(1000);
    expect(body.choices[0].message.content).toBe('Fake answer from gpt-6-luna.');
  });
});

describe('HTTP control endpoints', () => {
  async function control(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Json }> {
    const res = await fetch(`${fake.url}/_fake/${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Json };
  }

  it('health names the base URLs', async () => {
    const { status, json } = await control('GET', 'health');
    expect(status).toBe(200);
    expect(json).toEqual({
      status: 'ok',
      url: fake.url,
      baseUrls: Object.fromEntries(DIALECTS.map((d) => [d, fake.baseUrl(d)])),
    });
  });

  it('enqueue scripts steps, per model too', async () => {
    expect(await control('POST', 'enqueue', { dialect: 'dashscope', steps: [{ kind: 'preset', name: 'limit_requests' }, { kind: 'ok', content: 'then ok' }] })).toEqual({
      status: 200,
      json: { ok: true, queued: 2 },
    });
    expect((await control('POST', 'enqueue', { dialect: 'dashscope', steps: { kind: 'reset' }, model: 'other' })).status).toBe(200);
    expect((await post('dashscope', { model: 'qwen-flash', messages: [] })).status).toBe(429);
    expect(((await (await post('dashscope', { model: 'qwen-flash', messages: [] })).json()) as Json).choices[0].message.content).toBe('then ok');
    await expect(post('dashscope', { model: 'other', messages: [] })).rejects.toThrow('fetch failed');
  });

  it('enqueue refuses bad input with 400', async () => {
    expect((await control('POST', 'enqueue', { dialect: 'mistral', steps: [] })).status).toBe(400);
    const bad = await control('POST', 'enqueue', { dialect: 'zhipu', steps: [{ kind: 'preset', name: 'insufficient_balance' }] });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain("zhipu has no preset 'insufficient_balance'");
    const notJson = await fetch(`${fake.url}/_fake/enqueue`, { method: 'POST', body: '{' });
    expect(notJson.status).toBe(400);
  });

  it('latency sets the default delay', async () => {
    expect(await control('POST', 'latency', { ms: 200 })).toEqual({ status: 200, json: { ok: true, latencyMs: 200 } });
    const t = Date.now();
    await chat('openai', []);
    expect(Date.now() - t).toBeGreaterThanOrEqual(190);
    expect((await control('POST', 'latency', { ms: -1 })).status).toBe(400);
  });

  it('context-window sets a model window', async () => {
    expect((await control('POST', 'context-window', { model: 'small', tokens: 5 })).status).toBe(200);
    expect((await post('openai', { model: 'small', messages: [{ role: 'user', content: 'hello' }] })).status).toBe(400);
  });

  it('requests reports the count and the last 100 without bodies; reset clears', async () => {
    for (let i = 0; i < 103; i++) await post('zhipu', { model: `m${i}`, messages: [], stream: i === 102 });
    const { json } = await control('GET', 'requests');
    expect(json.count).toBe(103);
    expect(json.requests).toHaveLength(100);
    expect(json.requests[0]).toEqual({ dialect: 'zhipu', path: '/zhipu/api/paas/v4/chat/completions', model: 'm3', stream: false, at: expect.any(Number) });
    expect(json.requests[99]).toMatchObject({ model: 'm102', stream: true });
    expect(json.requests[0].body).toBeUndefined();

    fake.enqueue('zhipu', { kind: 'preset', name: 'server_error' });
    expect(await control('POST', 'reset')).toEqual({ status: 200, json: { ok: true } });
    expect((await control('GET', 'requests')).json).toEqual({ count: 0, answered: 0, answeredInBatches: 0, answeredAgain: 0, filesStored: 0, requests: [] });
    expect((await post('zhipu', { model: 'm', messages: [] })).status).toBe(200);
  });
});
