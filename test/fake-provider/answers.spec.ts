/**
 * The fake provider over real HTTP on loopback: normal answers and their usage (token counts
 * checked against js-tiktoken directly), authentication and routing, and the prefix cache.
 */
import type { Dialect } from './fake-provider';
import { PRESETS, REQUEST_ID_PLACEHOLDER } from './presets';
import {
  cachedTokens,
  chat,
  chatUrl,
  DIALECTS,
  fake,
  filler,
  MODEL,
  post,
  promptTokens,
  tokens,
  useFakeProvider,
  UUID,
  type Msg,
  type Json,
} from './spec-support';

useFakeProvider();

describe('normal answers', () => {
  const messages: Msg[] = [
    { role: 'system', content: 'You grade essays. 你是一位作文评分老师。' },
    { role: 'user', content: 'Grade this essay: 春天来了，万物复苏。The end.' },
  ];

  it.each(DIALECTS)('%s answers like OpenAI with its own usage shape and real token counts', async (d) => {
    const res = await post(d, { model: MODEL[d], messages });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = (await res.json()) as Json;
    const content = `Fake answer from ${MODEL[d]}.`;
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: MODEL[d],
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(5);

    const p = promptTokens(messages);
    const c = tokens(content);
    if (d === 'deepseek') {
      expect(body.usage).toEqual({
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
        prompt_cache_hit_tokens: 0,
        prompt_cache_miss_tokens: p,
      });
    } else {
      expect(body.usage).toEqual({
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
        prompt_tokens_details: { cached_tokens: 0 },
      });
    }
  });

  it('serves DeepSeek on /v1/chat/completions too', async () => {
    const res = await post('deepseek', { model: 'deepseek-flash', messages }, { url: `${fake.url}/deepseek/v1/chat/completions` });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Json).choices[0].message.content).toBe('Fake answer from deepseek-flash.');
  });

  it('answers JSON mode with a JSON object by default', async () => {
    const body = await chat('deepseek', [{ role: 'user', content: 'Reply in json.' }], {
      response_format: { type: 'json_object' },
    });
    expect(JSON.parse(body.choices[0].message.content)).toEqual({ answer: 'Fake answer from deepseek-flash.' });
  });

  it('counts multi-part content as its text', async () => {
    const body = await chat('openai', [{ role: 'user', content: [{ type: 'text', text: 'Hello ' }, { type: 'text', text: 'world' }] }] as unknown as Msg[]);
    expect(body.usage.prompt_tokens).toBe(tokens('Hello world') + 4 + 3);
  });

  it('uses the responder for content and completion tokens', async () => {
    const seen: Array<{ model: string; jsonMode: boolean; messages: Msg[] }> = [];
    fake.setResponder(async (req) => {
      seen.push({ model: req.model, jsonMode: req.jsonMode, messages: req.messages });
      return `{"score": 42, "echo": ${JSON.stringify(req.messages[0].content)}}`;
    });
    const body = await chat('zhipu', [{ role: 'user', content: '评分 json' }], { response_format: { type: 'json_object' } });
    const content = '{"score": 42, "echo": "评分 json"}';
    expect(body.choices[0].message.content).toBe(content);
    expect(body.usage.completion_tokens).toBe(tokens(content));
    expect(seen).toEqual([{ model: MODEL.zhipu, jsonMode: true, messages: [{ role: 'user', content: '评分 json' }] }]);
  });

  it('answers 500 when the responder throws', async () => {
    fake.setResponder(() => {
      throw new Error('boom');
    });
    const res = await post('openai', { model: 'm', messages: [{ role: 'user', content: 'x' }] });
    expect(res.status).toBe(500);
    expect(((await res.json()) as Json).error.message).toContain('boom');
  });

  it('records every chat request with dialect, path, model, body and headers', async () => {
    const before = Date.now();
    await post('dashscope', { model: 'qwen3-max', messages: [{ role: 'user', content: 'hi' }], temperature: 0.2 });
    await post('openai', { model: 'gpt-4o', messages: [] }, { auth: null });
    expect(fake.requests).toHaveLength(2);
    expect(fake.requestCount).toBe(2);
    const [a, b] = fake.requests;
    expect(a).toMatchObject({
      dialect: 'dashscope',
      path: '/dashscope/compatible-mode/v1/chat/completions',
      model: 'qwen3-max',
      body: { model: 'qwen3-max', temperature: 0.2, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(a.headers.authorization).toBe('Bearer sk-test-1');
    expect(a.at).toBeGreaterThanOrEqual(before);
    expect(b).toMatchObject({ dialect: 'openai', model: 'gpt-4o' });
    expect(b.headers.authorization).toBeUndefined();
  });

  it('rejects a body that is not a chat request with 400, and records it', async () => {
    const res = await fetch(chatUrl('openai'), { method: 'POST', headers: { authorization: 'Bearer k' }, body: 'not json' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.type).toBe('invalid_request_error');
    expect(fake.requests[0].body).toMatchObject({ model: '', messages: [], unparsed: 'not json' });
  });
});

describe('authentication and routing', () => {
  it.each(DIALECTS)('%s answers its 401 preset without a bearer token', async (d) => {
    for (const auth of [null, 'Bearer ', 'Basic abc']) {
      const res = await post(d, { model: MODEL[d], messages: [{ role: 'user', content: 'x' }] }, { auth });
      expect(res.status).toBe(401);
      const body = (await res.json()) as Json;
      if (d === 'dashscope') {
        expect(body.request_id).toMatch(UUID);
        expect({ ...body, request_id: REQUEST_ID_PLACEHOLDER }).toEqual(PRESETS.dashscope.auth.body);
      } else {
        expect(body).toEqual(PRESETS[d].auth.body);
      }
    }
  });

  it('does not let an unauthenticated request consume a queued step', async () => {
    fake.enqueue('openai', { kind: 'preset', name: 'rate_limit' });
    expect((await post('openai', { model: 'm', messages: [] }, { auth: null })).status).toBe(401);
    expect((await post('openai', { model: 'm', messages: [] })).status).toBe(429);
  });

  it('answers 404 JSON for an unknown path', async () => {
    const res = await fetch(`${fake.url}/deepseek/v2/chat/completions`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(((await res.json()) as Json).error.message).toContain('/deepseek/v2/chat/completions');
    expect(fake.requests).toHaveLength(0);
  });

  it('gives each dialect the base URL its real client would use', () => {
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(fake.baseUrl('deepseek')).toBe(`${fake.url}/deepseek`);
    expect(fake.baseUrl('zhipu')).toBe(`${fake.url}/zhipu/api/paas/v4`);
    expect(fake.baseUrl('dashscope')).toBe(`${fake.url}/dashscope/compatible-mode/v1`);
    expect(fake.baseUrl('openai')).toBe(`${fake.url}/openai/v1`);
  });
});

describe('prefix caching', () => {
  const UNIT: Record<Dialect, number> = { deepseek: 64, zhipu: 64, dashscope: 64, openai: 128 };
  const system = filler(1, 1500);
  // The two user messages differ from their first token, so the shared prefix is the system message
  // (its 4 template tokens included) plus the user message's 3 leading template tokens.
  const shared = tokens(system) + 7;

  it.each(DIALECTS)('%s reports the shared prefix, rounded down to its unit, in its own field', async (d) => {
    const first = await chat(d, [
      { role: 'system', content: system },
      { role: 'user', content: 'Alpha: first essay to grade.' },
    ]);
    expect(cachedTokens(d, first.usage)).toBe(0);

    const second = await chat(d, [
      { role: 'system', content: system },
      { role: 'user', content: 'Zebra crossing: the second essay, which is longer than the first one.' },
    ]);
    const expected = Math.floor(shared / UNIT[d]) * UNIT[d];
    expect(expected).toBeGreaterThan(1024);
    expect(cachedTokens(d, second.usage)).toBe(expected);
    if (d === 'deepseek') {
      expect(second.usage.prompt_cache_hit_tokens + second.usage.prompt_cache_miss_tokens).toBe(second.usage.prompt_tokens);
      expect(second.usage.prompt_tokens_details).toBeUndefined();
    }
  });

  it('hits a whole repeated prompt up to its last full unit', async () => {
    const messages = [{ role: 'user', content: filler(2, 700) }];
    await chat('deepseek', messages);
    const again = await chat('deepseek', messages);
    expect(again.usage.prompt_cache_hit_tokens).toBe(Math.floor(again.usage.prompt_tokens / 64) * 64);
  });

  it('reports 0 below the dialect minimum (DashScope 1024, OpenAI 1024)', async () => {
    const shortSystem = filler(3, 200); // shared prefix ≈ 210 tokens → 192 after rounding
    const sharedShort = tokens(shortSystem) + 7;
    expect(Math.floor(sharedShort / 64) * 64).toBeLessThan(1024);
    for (const d of ['dashscope', 'deepseek'] as const) {
      await chat(d, [{ role: 'system', content: shortSystem }, { role: 'user', content: 'Alpha' }]);
      const second = await chat(d, [{ role: 'system', content: shortSystem }, { role: 'user', content: 'Zebra' }]);
      expect(cachedTokens(d, second.usage)).toBe(d === 'dashscope' ? 0 : Math.floor(sharedShort / 64) * 64);
    }

    const midSystem = filler(4, 950); // shared prefix < 1024
    const sharedMid = tokens(midSystem) + 7;
    expect(sharedMid).toBeLessThan(1024);
    for (const d of ['openai', 'dashscope'] as const) {
      await chat(d, [{ role: 'system', content: midSystem }, { role: 'user', content: 'Alpha' }]);
      const o = await chat(d, [{ role: 'system', content: midSystem }, { role: 'user', content: 'Zebra' }]);
      expect(o.usage.prompt_tokens_details.cached_tokens).toBe(0);
    }
    // …while Zhipu (minimum 64) caches the same prefix.
    await chat('zhipu', [{ role: 'system', content: midSystem }, { role: 'user', content: 'Alpha' }]);
    const z = await chat('zhipu', [{ role: 'system', content: midSystem }, { role: 'user', content: 'Zebra' }]);
    expect(z.usage.prompt_tokens_details.cached_tokens).toBe(Math.floor(sharedMid / 64) * 64);
  });

  it('keeps caches apart per API key and per model, and reset() forgets them', async () => {
    const messages = [{ role: 'user', content: filler(5, 400) }];
    await chat('deepseek', messages, {}, 'Bearer key-a');
    expect((await chat('deepseek', messages, {}, 'Bearer key-b')).usage.prompt_cache_hit_tokens).toBe(0);
    expect((await chat('deepseek', messages, { model: 'deepseek-v4-pro' }, 'Bearer key-a')).usage.prompt_cache_hit_tokens).toBe(0);
    expect((await chat('deepseek', messages, {}, 'Bearer key-a')).usage.prompt_cache_hit_tokens).toBeGreaterThan(0);
    fake.reset();
    expect((await chat('deepseek', messages, {}, 'Bearer key-a')).usage.prompt_cache_hit_tokens).toBe(0);
  });
});

describe('what it would bill', () => {
  it('counts the answers it sent whole, and the prompts answered more than once (a call paid twice)', async () => {
    const once: Msg[] = [{ role: 'user', content: 'Grade essay A' }];
    const twice: Msg[] = [{ role: 'user', content: 'Grade essay B' }];
    await chat('deepseek', once);
    await chat('deepseek', twice);
    await chat('dashscope', twice);
    // Refused (401): not billed.
    expect((await post('deepseek', { model: MODEL.deepseek, messages: once }, { auth: null })).status).toBe(401);
    const listed = (await (await fetch(`${fake.url}/_fake/requests`)).json()) as Json;
    expect(listed).toMatchObject({ count: 4, answered: 3, answeredAgain: 1 });
    fake.reset();
    expect(((await (await fetch(`${fake.url}/_fake/requests`)).json()) as Json).answered).toBe(0);
  });
});
