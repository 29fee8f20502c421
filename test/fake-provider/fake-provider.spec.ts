/**
 * The fake model provider, exercised over real HTTP on loopback with the global fetch, FormData and
 * Blob (and the official openai client), the batch API included. Token counts are checked against
 * js-tiktoken directly, not against the fake provider's own helpers.
 */
import { getEncoding } from 'js-tiktoken';
import OpenAI, { toFile } from 'openai';
import { startFakeProvider, type Dialect, type FakeProvider, type Step } from './fake-provider';
import { PRESETS, REQUEST_ID_PLACEHOLDER } from './presets';

const enc = getEncoding('o200k_base');
const tokens = (s: string): number => enc.encode(s).length;
const promptTokens = (messages: Array<{ content: string }>): number =>
  messages.reduce((n, m) => n + tokens(m.content) + 4, 3);

const DIALECTS: Dialect[] = ['deepseek', 'zhipu', 'dashscope', 'openai'];
const MODEL: Record<Dialect, string> = {
  deepseek: 'deepseek-flash',
  zhipu: 'glm-5.3-flash',
  dashscope: 'qwen-flash',
  openai: 'gpt-6-luna',
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Msg {
  role: string;
  content: string;
}

/** Any JSON answer: the tests look into it freely. */
type Json = Record<string, any>;

let fake: FakeProvider;

beforeAll(async () => {
  fake = await startFakeProvider();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

function chatUrl(d: Dialect): string {
  return `${fake.baseUrl(d)}/chat/completions`;
}

async function post(
  d: Dialect,
  body: Record<string, unknown>,
  opts: { auth?: string | null; signal?: AbortSignal; url?: string } = {},
): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const auth = opts.auth === undefined ? 'Bearer sk-test-1' : opts.auth;
  if (auth !== null) headers.authorization = auth;
  return fetch(opts.url ?? chatUrl(d), { method: 'POST', headers, body: JSON.stringify(body), signal: opts.signal });
}

async function chat(d: Dialect, messages: Msg[], extra: Record<string, unknown> = {}, auth?: string): Promise<Json> {
  const res = await post(d, { model: MODEL[d], messages, ...extra }, { auth });
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

function cachedTokens(d: Dialect, usage: Json): number {
  return d === 'deepseek' ? usage.prompt_cache_hit_tokens : usage.prompt_tokens_details.cached_tokens;
}

/** The `data:` payloads of an SSE text, in order ([DONE] included as the string). */
function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
}

function parseChunks(text: string): Json[] {
  return sseData(text)
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Json);
}

/** Deterministic English-and-Chinese filler of roughly `approxTokens` tokens. */
function filler(seed: number, approxTokens: number): string {
  const words = [
    'the', 'student', 'argues', 'that', 'climate', 'policy', 'must', 'balance', 'growth', 'and', 'equity',
    '作文', '结构', '清晰', '论点', '明确', 'rubric', 'criterion', 'evidence', 'paragraph', 'coherence',
  ];
  let x = seed;
  const out: string[] = [];
  while (tokens(out.join(' ')) < approxTokens) {
    for (let i = 0; i < 10; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      out.push(words[x % words.length]);
    }
  }
  return out.join(' ');
}

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

describe('presets', () => {
  const cases = DIALECTS.flatMap((d) => Object.keys(PRESETS[d]).map((name) => [d, name] as const));

  it.each(cases)('%s %s has the real status and body', async (d, name) => {
    fake.enqueue(d, { kind: 'preset', name });
    const res = await post(d, { model: MODEL[d], messages: [{ role: 'user', content: 'x' }] });
    const preset = PRESETS[d][name];
    expect(res.status).toBe(preset.status);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('retry-after')).toBe(res.status === 429 ? '1' : null);
    const body = (await res.json()) as Json;
    if (d === 'dashscope') {
      expect(body.request_id).toMatch(UUID);
      expect({ ...body, request_id: REQUEST_ID_PLACEHOLDER }).toEqual(preset.body);
    } else {
      expect(body).toEqual(preset.body);
    }
  });

  it('spells the bodies exactly as the providers do', () => {
    expect(JSON.stringify(PRESETS.deepseek.insufficient_balance.body)).toBe(
      '{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}',
    );
    expect(JSON.stringify(PRESETS.zhipu.content_filter.body)).toBe(
      '{"contentFilter":[{"level":1,"role":"user"}],"error":{"code":"1301","message":"系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。"}}',
    );
    expect(JSON.stringify(PRESETS.dashscope.arrearage.body)).toBe(
      `{"error":{"message":"Access denied, please make sure your account is in good standing.","type":"Arrearage","param":null,"code":"Arrearage"},"request_id":"${REQUEST_ID_PLACEHOLDER}"}`,
    );
    expect(JSON.stringify(PRESETS.openai.content_filter.body)).toBe(
      '{"error":{"message":"The response was filtered due to the prompt triggering content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}',
    );
  });

  it('gives every DashScope answer a fresh request_id', async () => {
    fake.enqueue('dashscope', [{ kind: 'preset', name: 'server_error' }, { kind: 'preset', name: 'server_error' }]);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await post('dashscope', { model: 'qwen-flash', messages: [] });
      ids.push(((await res.json()) as Json).request_id);
    }
    expect(ids[0]).toMatch(UUID);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('lets a step override the preset headers', async () => {
    fake.enqueue('deepseek', { kind: 'preset', name: 'rate_limit', headers: { 'Retry-After': '7', 'x-extra': 'y' } });
    const res = await post('deepseek', { model: 'deepseek-flash', messages: [] });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.headers.get('x-extra')).toBe('y');
  });

  it('plays Zhipu stream_sensitive as a stream that stops at once with finish_reason "sensitive"', async () => {
    fake.enqueue('zhipu', { kind: 'preset', name: 'stream_sensitive' });
    const res = await post('zhipu', { model: 'glm-4', stream: true, messages: [{ role: 'user', content: 'x' }] });
    expect(res.status).toBe(200);
    const text = await res.text();
    const chunks = parseChunks(text);
    expect(chunks[0].choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: 'sensitive' });
    expect(chunks).toHaveLength(1);
    expect(sseData(text).at(-1)).toBe('[DONE]');

    fake.enqueue('zhipu', { kind: 'preset', name: 'stream_sensitive' });
    const plain = (await (await post('zhipu', { model: 'glm-4', messages: [{ role: 'user', content: 'x' }] })).json()) as Json;
    expect(plain.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'sensitive' });
  });

  it('refuses unknown presets and step kinds at enqueue time', () => {
    expect(() => fake.enqueue('openai', { kind: 'preset', name: 'stream_sensitive' })).toThrow(/no preset 'stream_sensitive'/);
    expect(() => fake.enqueue('deepseek', { kind: 'nope' } as unknown as Step)).toThrow(/unknown step kind/);
    expect(() => fake.enqueue('deepseek', { kind: 'error', status: 99, body: {} })).toThrow(/status/);
  });
});

describe('automatic provider rules', () => {
  it('DashScope refuses JSON mode when no message says "json"', async () => {
    const res = await post('dashscope', {
      model: 'qwen-flash',
      response_format: { type: 'json_object' },
      messages: [{ role: 'user', content: 'Grade this essay.' }],
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Json;
    expect(body.request_id).toMatch(UUID);
    expect(body.error).toEqual({
      message:
        "<400> InternalError.Algo.InvalidParameter: 'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
      type: 'invalid_request_error',
      param: null,
      code: 'invalid_parameter_error',
    });

    const ok = await chat('dashscope', [{ role: 'system', content: 'Answer in JSON.' }, { role: 'user', content: 'Grade.' }], {
      response_format: { type: 'json_object' },
    });
    expect(JSON.parse(ok.choices[0].message.content)).toEqual({ answer: 'Fake answer from qwen-flash.' });
    // Other providers do not have the rule.
    await chat('deepseek', [{ role: 'user', content: 'Grade this essay.' }], { response_format: { type: 'json_object' } });
  });

  it('answers each dialect\'s context-length error with the real numbers', async () => {
    const messages = [{ role: 'user', content: filler(6, 80) }];
    const p = promptTokens(messages);
    fake.setContextWindow('tiny', p + 10);

    // Fits: prompt + max_tokens = window.
    expect((await post('deepseek', { model: 'tiny', messages, max_tokens: 10 })).status).toBe(200);

    const deep = await post('deepseek', { model: 'tiny', messages, max_tokens: 11 });
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as Json).error).toEqual({
      message: `This model's maximum context length is ${p + 10} tokens. However, you requested ${p + 11} tokens (${p} in the messages, 11 in the completion). Please reduce the length of the messages or completion.`,
      type: 'invalid_request_error',
      param: null,
      code: 'invalid_request_error',
    });

    fake.setContextWindow('tiny', p - 1);
    const oa = await post('openai', { model: 'tiny', messages });
    expect(oa.status).toBe(400);
    expect(((await oa.json()) as Json).error).toEqual({
      message: `This model's maximum context length is ${p - 1} tokens. However, your messages resulted in ${p} tokens. Please reduce the length of the messages.`,
      type: 'invalid_request_error',
      param: 'messages',
      code: 'context_length_exceeded',
    });

    const ds = await post('dashscope', { model: 'tiny', messages });
    expect(ds.status).toBe(400);
    expect(((await ds.json()) as Json).error.message).toBe(
      `<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, ${p - 1}]`,
    );

    const zp = await post('zhipu', { model: 'tiny', messages });
    expect(zp.status).toBe(400);
    expect(await zp.json()).toEqual({ error: { code: '1261', message: 'Prompt 超长' } });
  });

  it('uses the default windows (DeepSeek 1,000,000) for other models', async () => {
    const messages = [{ role: 'user', content: 'short' }];
    const p = promptTokens(messages);
    expect((await post('deepseek', { model: 'deepseek-flash', messages, max_tokens: 1_000_000 - p })).status).toBe(200);
    const res = await post('deepseek', { model: 'deepseek-flash', messages, max_tokens: 1_000_001 - p });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toContain('maximum context length is 1000000 tokens');
    expect((await post('zhipu', { model: 'glm-4', messages, max_tokens: 100_000 })).status).toBe(200);
  });
});

describe('streaming', () => {
  it('streams role, content pieces, finish and usage chunks, then [DONE]', async () => {
    fake.setResponder(() => 'A fine essay with a clear thesis.');
    const messages = [{ role: 'user', content: 'Grade it.' }];
    const res = await post('deepseek', {
      model: 'deepseek-flash',
      stream: true,
      stream_options: { include_usage: true },
      messages,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = parseChunks(text);
    for (const c of chunks) expect(c).toMatchObject({ object: 'chat.completion.chunk', model: 'deepseek-flash', id: chunks[0].id });
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const pieces = chunks.slice(1, -2).map((c) => c.choices[0].delta.content as string);
    expect(pieces).toHaveLength(4);
    expect(pieces.join('')).toBe('A fine essay with a clear thesis.');
    expect(chunks.at(-2)?.choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
    const p = promptTokens(messages);
    const c = tokens('A fine essay with a clear thesis.');
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c, prompt_cache_hit_tokens: 0, prompt_cache_miss_tokens: p },
    });
  });

  it('sends no usage chunk without include_usage, except Zhipu on its final chunk', async () => {
    const openaiText = await (await post('openai', { model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] })).text();
    const openaiChunks = parseChunks(openaiText);
    expect(openaiChunks.some((c) => c.usage)).toBe(false);
    expect(openaiChunks.at(-1)?.choices[0].finish_reason).toBe('stop');

    const zhipuChunks = parseChunks(await (await post('zhipu', { model: 'glm-4', stream: true, messages: [{ role: 'user', content: 'x' }] })).text());
    const last = zhipuChunks.at(-1);
    expect(last?.choices[0].finish_reason).toBe('stop');
    expect(last?.usage).toEqual({
      prompt_tokens: tokens('x') + 7,
      completion_tokens: tokens('Fake answer from glm-4.'),
      total_tokens: tokens('x') + 7 + tokens('Fake answer from glm-4.'),
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(zhipuChunks.filter((c) => c.usage)).toHaveLength(1);
  });

  it('starts with keep-alive comments when asked', async () => {
    fake.enqueue('deepseek', { kind: 'stream', content: 'Hello there', keepAliveComments: 3, chunks: 2 });
    const text = await (await post('deepseek', { model: 'deepseek-flash', stream: true, messages: [] })).text();
    expect(text.startsWith(': keep-alive\n\n: keep-alive\n\n: keep-alive\n\ndata: ')).toBe(true);
    expect(text.split(': keep-alive\n\n')).toHaveLength(4);
    const chunks = parseChunks(text);
    expect(chunks.slice(1, -1).map((c) => c.choices[0].delta.content)).toEqual(['Hello ', 'there']);
  });

  it('streams an ok step and honours chunkDelayMs', async () => {
    fake.enqueue('openai', { kind: 'stream', content: 'abcdef', chunks: 3, chunkDelayMs: 60, finishReason: 'length' });
    const started = Date.now();
    const text = await (await post('openai', { model: 'm', stream: true, messages: [] })).text();
    expect(Date.now() - started).toBeGreaterThanOrEqual(200); // 5 writes before [DONE], 60 ms apart
    const chunks = parseChunks(text);
    expect(chunks.slice(1, -1).map((c) => c.choices[0].delta.content)).toEqual(['ab', 'cd', 'ef']);
    expect(chunks.at(-1)?.choices[0].finish_reason).toBe('length');
  });

  it('cuts a stream: the client sees the socket close without [DONE]', async () => {
    fake.enqueue('deepseek', { kind: 'stream', content: 'one two three four', chunks: 4, cutAfterChunks: 2 });
    const res = await post('deepseek', { model: 'deepseek-flash', stream: true, messages: [] });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    let failure: unknown;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        received += decoder.decode(value, { stream: true });
      }
    } catch (err) {
      failure = err;
    }
    expect((failure as Error).message).toBe('terminated'); // undici's word for a body cut short
    expect(received).not.toContain('[DONE]');
    const chunks = parseChunks(received);
    expect(chunks).toHaveLength(3); // the role chunk and two content chunks
    expect(chunks.slice(1).map((c) => c.choices[0].delta.content).join('')).toBe('one two th');
  });

  it('answers a stream step as a plain completion to a non-streaming request', async () => {
    fake.enqueue('zhipu', { kind: 'stream', content: 'plain now', chunks: 3 });
    const body = await chat('zhipu', [{ role: 'user', content: 'x' }]);
    expect(body.choices[0].message.content).toBe('plain now');
  });

  it('streams an ok step when the request streams', async () => {
    fake.enqueue('dashscope', { kind: 'ok', content: 'streamed ok' });
    const chunks = parseChunks(await (await post('dashscope', { model: 'qwen-flash', stream: true, messages: [] })).text());
    expect(chunks.slice(1, -1).map((c) => c.choices[0].delta.content).join('')).toBe('streamed ok');
  });
});

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
    fake.setLatency(1000);
    fake.enqueue('zhipu', { kind: 'ok', latencyMs: 0 });
    let t = Date.now();
    await chat('zhipu', []);
    expect(Date.now() - t).toBeLessThan(500);

    t = Date.now();
    await chat('zhipu', []);
    expect(Date.now() - t).toBeGreaterThanOrEqual(990);
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
    expect((await control('GET', 'requests')).json).toEqual({ count: 0, requests: [] });
    expect((await post('zhipu', { model: 'm', messages: [] })).status).toBe(200);
  });
});

describe('the official openai client', () => {
  function client(): OpenAI {
    return new OpenAI({ apiKey: 'x', baseURL: fake.baseUrl('openai'), maxRetries: 0 });
  }

  it('calls it without streaming', async () => {
    const completion = await client().chat.completions.create({
      model: 'gpt-6-luna',
      messages: [{ role: 'user', content: 'Grade: 好文章' }],
    });
    expect(completion.choices[0].message.content).toBe('Fake answer from gpt-6-luna.');
    expect(completion.usage?.prompt_tokens).toBe(tokens('Grade: 好文章') + 7);
    expect(completion.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    expect(fake.requests[0].headers.authorization).toBe('Bearer x');
  });

  it('calls it streaming with usage', async () => {
    fake.setResponder(() => 'Streamed through the SDK.');
    const stream = await client().chat.completions.create({
      model: 'gpt-6-luna',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let finish: string | null = null;
    let completionTokens: number | undefined;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    expect(content).toBe('Streamed through the SDK.');
    expect(finish).toBe('stop');
    expect(completionTokens).toBe(tokens('Streamed through the SDK.'));
  });

  it('surfaces preset errors as the SDK\'s typed errors', async () => {
    fake.enqueue('openai', { kind: 'preset', name: 'rate_limit' });
    const err = await client()
      .chat.completions.create({ model: 'gpt-6-luna', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('rate_limit_exceeded');
  });
});

describe('batch API (files + batches)', () => {
  type BatchDialect = 'dashscope' | 'openai' | 'zhipu';
  const BATCH_DIALECTS: BatchDialect[] = ['dashscope', 'openai', 'zhipu'];
  const AUTH = 'Bearer sk-batch-1';
  const TERMINAL = ['completed', 'failed', 'expired'];
  const FILE_ID = /^file-batch-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const BATCH_ID = /^batch_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const REQ_ID = /^batch_req_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  function line(customId: string, body: Record<string, unknown>): string {
    return JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body });
  }

  async function upload(
    d: Dialect,
    content: string,
    opts: { auth?: string | null; purpose?: string | null; filename?: string; type?: string } = {},
  ): Promise<Response> {
    const form = new FormData();
    if (opts.purpose !== null) form.append('purpose', opts.purpose ?? 'batch');
    form.append('file', new Blob([content], { type: opts.type ?? 'application/jsonl' }), opts.filename ?? 'in.jsonl');
    const auth = opts.auth === undefined ? AUTH : opts.auth;
    return fetch(`${fake.baseUrl(d)}/files`, { method: 'POST', headers: auth === null ? {} : { authorization: auth }, body: form });
  }

  async function uploadOk(d: Dialect, lines: string[]): Promise<string> {
    const res = await upload(d, lines.join('\n') + '\n');
    expect(res.status).toBe(200);
    return ((await res.json()) as Json).id as string;
  }

  async function createBatch(d: Dialect, body: Record<string, unknown>, auth: string | null = AUTH): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (auth !== null) headers.authorization = auth;
    return fetch(`${fake.baseUrl(d)}/batches`, { method: 'POST', headers, body: JSON.stringify(body) });
  }

  async function startBatch(d: Dialect, lines: string[]): Promise<Json> {
    const res = await createBatch(d, { input_file_id: await uploadOk(d, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(res.status).toBe(200);
    return (await res.json()) as Json;
  }

  async function get(d: Dialect, path: string, auth: string | null = AUTH): Promise<Response> {
    return fetch(`${fake.baseUrl(d)}${path}`, { headers: auth === null ? {} : { authorization: auth } });
  }

  async function batchNow(d: Dialect, id: string): Promise<Json> {
    const res = await get(d, `/batches/${id}`);
    expect(res.status).toBe(200);
    return (await res.json()) as Json;
  }

  async function waitForBatch(d: Dialect, id: string, timeoutMs = 10_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const b = await batchNow(d, id);
      if (TERMINAL.includes(b.status)) return b;
      if (Date.now() > deadline) throw new Error(`batch ${id} still ${b.status as string}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The JSON lines of a file, each line ending with "\n". */
  async function download(d: Dialect, fileId: string): Promise<Json[]> {
    const res = await get(d, `/files/${fileId}/content`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jsonl');
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    return text
      .slice(0, -1)
      .split('\n')
      .map((l) => JSON.parse(l) as Json);
  }

  function expectAuthError(d: Dialect, body: Json): void {
    if (d === 'dashscope') {
      expect(body.request_id).toMatch(UUID);
      expect({ ...body, request_id: REQUEST_ID_PLACEHOLDER }).toEqual(PRESETS.dashscope.auth.body);
    } else {
      expect(body).toEqual(PRESETS[d].auth.body);
    }
  }

  /** A preset body with DashScope's fresh request_id put back to the placeholder. */
  function placeholder(body: Json): Json {
    return body.request_id === undefined ? body : { ...body, request_id: REQUEST_ID_PLACEHOLDER };
  }

  describe.each(BATCH_DIALECTS)('%s', (d) => {
    const UNIT = { dashscope: 64, zhipu: 64, openai: 128 }[d];
    const system = filler(21, 1500);
    const shared = tokens(system) + 7; // the system message and the user message's leading template tokens
    const users = ['Alpha: the first essay.', 'Zebra crossing: a second, longer essay to grade.', 'Mango: the third one.'];
    const bodies = users.map((u) => ({
      model: MODEL[d],
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: u },
      ],
    }));

    it('uploads, creates, completes and writes usage as the real-time endpoint counts it, prefix cache included', async () => {
      const jsonl = bodies.map((b, i) => line(`req-${i}`, b)).join('\n') + '\n';
      const before = Math.floor(Date.now() / 1000);
      const up = await upload(d, jsonl);
      expect(up.status).toBe(200);
      const file = (await up.json()) as Json;
      expect(file).toEqual({
        id: expect.stringMatching(FILE_ID),
        object: 'file',
        bytes: Buffer.byteLength(jsonl),
        created_at: expect.any(Number),
        filename: 'in.jsonl',
        purpose: 'batch',
      });
      expect(file.created_at).toBeGreaterThanOrEqual(before);

      const created = await createBatch(d, {
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        metadata: { assignment: 'a-1' },
      });
      expect(created.status).toBe(200);
      const batch = (await created.json()) as Json;
      expect(batch).toEqual({
        id: expect.stringMatching(BATCH_ID),
        object: 'batch',
        endpoint: '/v1/chat/completions',
        errors: null,
        input_file_id: file.id,
        completion_window: '24h',
        status: 'validating',
        output_file_id: null,
        error_file_id: null,
        created_at: expect.any(Number),
        in_progress_at: null,
        completed_at: null,
        failed_at: null,
        expired_at: null,
        request_counts: { total: 3, completed: 0, failed: 0 },
        metadata: { assignment: 'a-1' },
      });
      expect(batch.created_at).toBeGreaterThanOrEqual(before);

      const done = await waitForBatch(d, batch.id);
      expect(done).toMatchObject({ status: 'completed', error_file_id: null, errors: null, request_counts: { total: 3, completed: 3, failed: 0 } });
      expect(done.output_file_id).toMatch(/^file-/);
      expect(done.in_progress_at).toBeGreaterThanOrEqual(batch.created_at);
      expect(done.completed_at).toBeGreaterThanOrEqual(done.in_progress_at);
      expect(fake.batches.map((b) => [b.id, b.status])).toEqual([[batch.id, 'completed']]);

      const out = await download(d, done.output_file_id);
      expect(out.map((o) => o.custom_id)).toEqual(['req-0', 'req-1', 'req-2']);
      const content = `Fake answer from ${MODEL[d]}.`;
      const cachedAfterFirst = Math.floor(shared / UNIT) * UNIT;
      expect(cachedAfterFirst).toBeGreaterThan(1024);
      out.forEach((o, i) => {
        expect(o).toMatchObject({ id: expect.stringMatching(REQ_ID), error: null, response: { status_code: 200 } });
        expect(o.response.request_id).toMatch(UUID);
        expect(o.response.body).toMatchObject({
          object: 'chat.completion',
          model: MODEL[d],
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
        });
        expect(o.response.body.id).toMatch(/^chatcmpl-/);
        const p = promptTokens(bodies[i].messages);
        const c = tokens(content);
        // The first line fills the provider's prefix cache; the next ones hit the shared system prompt.
        expect(o.response.body.usage).toEqual({
          prompt_tokens: p,
          completion_tokens: c,
          total_tokens: p + c,
          prompt_tokens_details: { cached_tokens: i === 0 ? 0 : cachedAfterFirst },
        });
      });
      expect(new Set(out.map((o) => o.id)).size).toBe(3);

      // Each line was recorded like a request to the chat route, with the batch's id and headers.
      const recorded = fake.requests.filter((r) => r.batchId === batch.id);
      expect(recorded.map((r) => r.body)).toEqual(bodies);
      for (const r of recorded) {
        expect(r).toMatchObject({ dialect: d, path: new URL(chatUrl(d)).pathname, model: MODEL[d] });
        expect(r.headers.authorization).toBe(AUTH);
      }
      const listed = (await (await fetch(`${fake.url}/_fake/requests`)).json()) as Json;
      expect(listed.requests.map((r: Json) => r.batchId)).toEqual([batch.id, batch.id, batch.id]);

      // The batch shares the provider's prefix cache of its API key with real-time calls…
      const sameKey = await chat(d, [{ role: 'system', content: system }, { role: 'user', content: 'Quince' }], {}, AUTH);
      expect(cachedTokens(d, sameKey.usage)).toBe(cachedAfterFirst);
      const otherKey = await chat(d, [{ role: 'system', content: system }, { role: 'user', content: 'Quince' }], {}, 'Bearer other');
      expect(cachedTokens(d, otherKey.usage)).toBe(0);
      expect(fake.requests.filter((r) => r.batchId === undefined)).toHaveLength(2);

      // …and each line's usage is exactly what the real-time endpoint reports for the same body.
      fake.reset();
      for (let i = 0; i < bodies.length; i++) {
        const res = await post(d, bodies[i], { auth: AUTH });
        expect(((await res.json()) as Json).usage).toEqual(out[i].response.body.usage);
      }
    });

    it('keeps files and batches to their own dialect', async () => {
      const other: BatchDialect = d === 'openai' ? 'zhipu' : 'openai';
      const fileId = await uploadOk(d, [line('x', bodies[0])]);
      expect((await get(other, `/files/${fileId}/content`)).status).toBe(404);
      const res = await createBatch(other, { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
      expect(res.status).toBe(404);
      const batch = await startBatch(d, [line('x', bodies[0])]);
      expect((await get(other, `/batches/${batch.id}`)).status).toBe(404);
    });

    it('answers 401 with the dialect\'s preset without a bearer token', async () => {
      const fileId = await uploadOk(d, [line('x', bodies[0])]);
      const batch = await startBatch(d, [line('x', bodies[0])]);
      const answers = [
        await upload(d, 'x\n', { auth: null }),
        await createBatch(d, { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }, null),
        await get(d, `/batches/${batch.id}`, null),
        await get(d, `/files/${fileId}/content`, 'Bearer '),
      ];
      for (const res of answers) {
        expect(res.status).toBe(401);
        expectAuthError(d, (await res.json()) as Json);
      }
      expect(fake.batches).toHaveLength(1);
    });
  });

  it('puts a scripted preset, an error step and provider-rule errors in the error file with their status and body', async () => {
    fake.enqueue('dashscope', { kind: 'preset', name: 'limit_requests' });
    fake.enqueue('dashscope', { kind: 'error', status: 503, body: { error: { message: 'busy' } } }, { model: 'qwen3-max' });
    fake.setContextWindow('qwen-tiny', 20);
    const user = [{ role: 'user', content: 'Grade this essay.' }];
    const batch = await startBatch('dashscope', [
      line('preset', { model: 'qwen-flash', messages: user }),
      line('json-rule', { model: 'qwen-flash', messages: user, response_format: { type: 'json_object' } }),
      line('ok', { model: 'qwen-flash', messages: user }),
      line('error-step', { model: 'qwen3-max', messages: user }),
      line('too-long', { model: 'qwen-tiny', messages: [{ role: 'user', content: filler(7, 40) }] }),
    ]);
    const done = await waitForBatch('dashscope', batch.id);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 5, completed: 1, failed: 4 } });
    expect(done.error_file_id).toMatch(/^file-/);
    expect(done.error_file_id).not.toBe(done.output_file_id);

    const out = await download('dashscope', done.output_file_id);
    expect(out.map((o) => o.custom_id)).toEqual(['ok']);
    expect(out[0].response.body.choices[0].message.content).toBe('Fake answer from qwen-flash.');

    const errors = await download('dashscope', done.error_file_id);
    expect(errors.map((e) => [e.custom_id, e.response.status_code, e.error])).toEqual([
      ['preset', 429, null],
      ['json-rule', 400, null],
      ['error-step', 503, null],
      ['too-long', 400, null],
    ]);
    for (const e of errors) expect(e.id).toMatch(REQ_ID);
    const [preset, jsonRule, errorStep, tooLong] = errors.map((e) => e.response);
    expect(placeholder(preset.body)).toEqual(PRESETS.dashscope.limit_requests.body);
    expect(preset.request_id).toBe(preset.body.request_id); // DashScope's request_id, fresh per answer
    expect(preset.request_id).toMatch(UUID);
    expect(jsonRule.body.error.message).toContain("must contain the word 'json'");
    expect(errorStep.body).toEqual({ error: { message: 'busy' } });
    expect(errorStep.request_id).toMatch(UUID);
    expect(tooLong.body.error.message).toBe('<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 20]');

    // The steps were consumed: real-time calls get normal answers now.
    expect((await post('dashscope', { model: 'qwen-flash', messages: user })).status).toBe(200);
    expect((await post('dashscope', { model: 'qwen3-max', messages: user })).status).toBe(200);
  });

  it('plays queued steps in order across lines, and answers hang, reset and stream steps with a 500 line', async () => {
    fake.enqueue('openai', [
      { kind: 'ok', content: 'scripted one' },
      { kind: 'hang' },
      { kind: 'reset' },
      { kind: 'stream', content: 'not in a batch' },
      { kind: 'invalid-json', content: '{"score": 3,' },
    ]);
    const msgs = [{ role: 'user', content: 'x' }];
    const batch = await startBatch('openai', ['a', 'b', 'c', 'd', 'e', 'f'].map((id) => line(id, { model: 'gpt-6-luna', messages: msgs })));
    const done = await waitForBatch('openai', batch.id);
    expect(done.request_counts).toEqual({ total: 6, completed: 3, failed: 3 });

    const out = await download('openai', done.output_file_id);
    expect(out.map((o) => [o.custom_id, o.response.body.choices[0].message.content])).toEqual([
      ['a', 'scripted one'],
      ['e', '{"score": 3,'],
      ['f', 'Fake answer from gpt-6-luna.'],
    ]);
    expect(out[0].response.body.usage.completion_tokens).toBe(tokens('scripted one'));
    const errors = await download('openai', done.error_file_id);
    expect(errors.map((e) => e.custom_id)).toEqual(['b', 'c', 'd']);
    for (const e of errors) {
      expect(e.response.status_code).toBe(500);
      expect(e.response.body).toEqual(PRESETS.openai.server_error.body);
    }
  });

  it('answers a responder that throws with a 500 line', async () => {
    fake.setResponder((req) => {
      if (req.messages[0].content === 'boom') throw new Error('kaput');
      return 'fine';
    });
    const batch = await startBatch('zhipu', [
      line('bad', { model: 'glm-4', messages: [{ role: 'user', content: 'boom' }] }),
      line('good', { model: 'glm-4', messages: [{ role: 'user', content: 'calm' }] }),
    ]);
    const done = await waitForBatch('zhipu', batch.id);
    const [bad] = await download('zhipu', done.error_file_id);
    expect(bad.response.status_code).toBe(500);
    expect(bad.response.body.error.message).toContain('kaput');
    const [good] = await download('zhipu', done.output_file_id);
    expect(good.response.body.choices[0].message.content).toBe('fine');
  });

  it('puts malformed lines in the error file with a null response, and skips blank lines', async () => {
    const body = { model: 'glm-5.3-flash', messages: [{ role: 'user', content: 'hello' }] };
    const lines = [
      'not json at all',
      JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body }),
      JSON.stringify({ custom_id: 'no-body', method: 'POST', url: '/v1/chat/completions' }),
      JSON.stringify({ custom_id: 'wrong-url', method: 'POST', url: '/v1/embeddings', body }),
      '',
      line('not-a-chat-request', { model: 'glm-5.3-flash' }),
      line('fine', body),
      '   ',
    ];
    const batch = await startBatch('zhipu', lines);
    expect(batch.request_counts.total).toBe(6);
    const done = await waitForBatch('zhipu', batch.id);
    expect(done.request_counts).toEqual({ total: 6, completed: 1, failed: 5 });

    const errors = await download('zhipu', done.error_file_id);
    expect(errors.map((e) => e.custom_id)).toEqual([null, null, 'no-body', 'wrong-url', 'not-a-chat-request']);
    for (const e of errors.slice(0, 4)) {
      expect(e).toEqual({ id: expect.stringMatching(REQ_ID), custom_id: e.custom_id, response: null, error: { code: 'invalid_request', message: expect.any(String) } });
    }
    // A well-formed line whose body is not a chat request gets the chat route's own 400.
    expect(errors[4]).toMatchObject({ response: { status_code: 400, body: { error: { type: 'invalid_request_error' } } }, error: null });

    const out = await download('zhipu', done.output_file_id);
    expect(out.map((o) => o.custom_id)).toEqual(['fine']);
    expect(out[0].response.body.usage.prompt_tokens).toBe(tokens('hello') + 7);
    // Only the lines that were requests were recorded.
    expect(fake.requests.map((r) => [r.batchId, r.model])).toEqual([
      [batch.id, 'glm-5.3-flash'],
      [batch.id, 'glm-5.3-flash'],
    ]);
  });

  it('stays in_progress until the batch latency has passed', async () => {
    fake.setBatchLatency(700);
    const t = Date.now();
    const batch = await startBatch('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    await new Promise((r) => setTimeout(r, 150));
    const early = await batchNow('openai', batch.id);
    expect(Date.now() - t).toBeLessThan(650);
    expect(early).toMatchObject({ status: 'in_progress', output_file_id: null, completed_at: null });
    expect(early.in_progress_at).toBeGreaterThanOrEqual(batch.created_at);
    expect(fake.requests).toHaveLength(1); // the line itself ran at once
    const done = await waitForBatch('openai', batch.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(690);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 1, completed: 1, failed: 0 } });
    expect(done.completed_at).toBeGreaterThanOrEqual(early.in_progress_at);
    expect(fake.requests).toHaveLength(1); // waiting did not run the line again
  });

  it('sets the batch latency over HTTP and from the start option; reset() returns to the start value', async () => {
    const setLatency = await fetch(`${fake.url}/_fake/batch-latency`, { method: 'POST', body: JSON.stringify({ ms: 400 }) });
    expect(await setLatency.json()).toEqual({ ok: true, batchLatencyMs: 400 });
    expect((await fetch(`${fake.url}/_fake/batch-latency`, { method: 'POST', body: JSON.stringify({ ms: -5 }) })).status).toBe(400);
    const slow = await startBatch('zhipu', [line('a', { model: 'glm-4', messages: [] })]);
    await new Promise((r) => setTimeout(r, 100));
    expect((await batchNow('zhipu', slow.id)).status).toBe('in_progress');
    fake.reset();
    expect(fake.batches).toEqual([]);
    expect((await get('zhipu', `/batches/${slow.id}`)).status).toBe(404);
    const fast = await startBatch('zhipu', [line('a', { model: 'glm-4', messages: [] })]);
    const t = Date.now();
    expect((await waitForBatch('zhipu', fast.id)).status).toBe('completed');
    expect(Date.now() - t).toBeLessThan(300);

    const own = await startFakeProvider({ batchLatencyMs: 5000 });
    try {
      own.setBatchLatency(0);
      own.reset();
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', new Blob([line('a', { model: 'm', messages: [] })]), 'in.jsonl');
      const file = (await (await fetch(`${own.baseUrl('openai')}/files`, { method: 'POST', headers: { authorization: AUTH }, body: form })).json()) as Json;
      const res = await fetch(`${own.baseUrl('openai')}/batches`, {
        method: 'POST',
        headers: { authorization: AUTH },
        body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      });
      expect(res.status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(own.requests).toHaveLength(1);
      expect(own.batches[0].status).toBe('in_progress'); // 5 s again after reset()
    } finally {
      await own.close();
    }
  });

  it.each(['failed', 'expired'] as const)('failNextBatch(%s): ends so after the latency, without processing the lines', async (outcome) => {
    fake.enqueue('dashscope', { kind: 'ok', content: 'still queued' });
    fake.failNextBatch('dashscope', outcome);
    fake.setBatchLatency(300);
    const msgs = [{ role: 'user', content: 'x' }];
    const t = Date.now();
    const batch = await startBatch('dashscope', [line('a', { model: 'qwen-flash', messages: msgs }), line('b', { model: 'qwen-flash', messages: msgs })]);
    expect(batch.status).toBe('validating');
    await new Promise((r) => setTimeout(r, 100));
    expect((await batchNow('dashscope', batch.id)).status).toBe(outcome === 'failed' ? 'validating' : 'in_progress');

    const done = await waitForBatch('dashscope', batch.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(290);
    expect(done).toMatchObject({
      status: outcome,
      output_file_id: null,
      error_file_id: null,
      completed_at: null,
      request_counts: { total: 2, completed: 0, failed: 0 },
      errors: { object: 'list', data: [{ code: expect.any(String), message: expect.any(String), line: null, param: null }] },
    });
    expect(done.failed_at === null).toBe(outcome !== 'failed');
    expect(done.expired_at === null).toBe(outcome !== 'expired');
    expect(done[`${outcome}_at`]).toBeGreaterThanOrEqual(done.created_at);
    expect(fake.requests).toHaveLength(0);

    // The step was not consumed, and only the next batch failed.
    expect((await chat('dashscope', msgs)).choices[0].message.content).toBe('still queued');
    fake.setBatchLatency(0);
    const next = await startBatch('dashscope', [line('a', { model: 'qwen-flash', messages: msgs })]);
    expect((await waitForBatch('dashscope', next.id)).status).toBe('completed');
  });

  it('scripts a batch failure over HTTP and refuses bad input', async () => {
    const ok = await fetch(`${fake.url}/_fake/batch-failure`, { method: 'POST', body: JSON.stringify({ dialect: 'zhipu', outcome: 'expired' }) });
    expect(await ok.json()).toEqual({ ok: true });
    for (const bad of [{ dialect: 'zhipu', outcome: 'cancelled' }, { dialect: 'deepseek', outcome: 'failed' }, { dialect: 'x', outcome: 'failed' }]) {
      expect((await fetch(`${fake.url}/_fake/batch-failure`, { method: 'POST', body: JSON.stringify(bad) })).status).toBe(400);
    }
    expect(() => fake.failNextBatch('deepseek', 'failed')).toThrow(/no batch API/);
    const batch = await startBatch('zhipu', [line('a', { model: 'glm-4', messages: [] })]);
    expect((await waitForBatch('zhipu', batch.id)).status).toBe('expired');
  });

  it('answers 404 for unknown files and batches', async () => {
    const unknownFile = await createBatch('openai', { input_file_id: 'file-batch-nope', endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(unknownFile.status).toBe(404);
    const body = (await unknownFile.json()) as Json;
    expect(body.error).toMatchObject({ type: 'invalid_request_error', message: expect.stringContaining('file-batch-nope') });
    const unknownBatch = await get('openai', '/batches/batch_nope');
    expect(unknownBatch.status).toBe(404);
    expect(((await unknownBatch.json()) as Json).error.message).toContain('batch_nope');
    expect((await get('openai', '/files/file-batch-nope/content')).status).toBe(404);
    expect((await get('openai', '/files/file-batch-nope')).status).toBe(404);
  });

  it('refuses a bad endpoint, completion window or input with 400', async () => {
    const fileId = await uploadOk('dashscope', [line('a', { model: 'qwen-flash', messages: [] })]);
    const base = { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' };
    for (const bad of [{ endpoint: '/v1/embeddings' }, { completion_window: '1h' }, { input_file_id: undefined }, { metadata: { n: 1 } }]) {
      const res = await createBatch('dashscope', { ...base, ...bad });
      expect(res.status).toBe(400);
      expect(((await res.json()) as Json).error.type).toBe('invalid_request_error');
    }
    const notJson = await fetch(`${fake.baseUrl('dashscope')}/batches`, { method: 'POST', headers: { authorization: AUTH }, body: '{' });
    expect(notJson.status).toBe(400);
    const empty = await createBatch('dashscope', { ...base, input_file_id: await uploadOk('dashscope', ['', '']) });
    expect(empty.status).toBe(400);
    expect(fake.batches).toHaveLength(0);
  });

  it('refuses uploads without purpose "batch", without a file, or not multipart with 400', async () => {
    const noPurpose = await upload('openai', 'x\n', { purpose: null });
    expect(noPurpose.status).toBe(400);
    expect(await noPurpose.json()).toEqual({
      error: { message: expect.stringContaining('purpose'), type: 'invalid_request_error', param: 'purpose', code: null },
    });
    expect((await upload('openai', 'x\n', { purpose: 'fine-tune' })).status).toBe(400);

    const noFile = new FormData();
    noFile.append('purpose', 'batch');
    noFile.append('file', 'a text field, not a file');
    const res = await fetch(`${fake.baseUrl('openai')}/files`, { method: 'POST', headers: { authorization: AUTH }, body: noFile });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.param).toBe('file');

    const notMultipart = await fetch(`${fake.baseUrl('openai')}/files`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ purpose: 'batch' }),
    });
    expect(notMultipart.status).toBe(400);
    expect(await notMultipart.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null },
    });
    const truncated = await fetch(`${fake.baseUrl('openai')}/files`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'multipart/form-data; boundary=xyz' },
      body: '--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{}',
    });
    expect(truncated.status).toBe(400);
  });

  it('parses a hand-written multipart body: quoted boundary, preamble, octet-stream part, CRLF and UTF-8 in the file', async () => {
    const content = `${line('中文', { model: 'qwen-flash', messages: [{ role: 'user', content: '春天 --b1 来了' }] })}\r\n`;
    const raw = [
      'This preamble is ignored.',
      '--b1',
      'Content-Disposition: form-data; name="file"; filename="my \\"batch\\".jsonl"',
      'Content-Type: application/octet-stream',
      '',
      content,
      '--b1',
      'content-disposition: form-data; name="purpose"',
      '',
      'batch',
      '--b1--',
      'epilogue',
    ].join('\r\n');
    const res = await fetch(`${fake.baseUrl('dashscope')}/files`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'multipart/form-data; boundary="b1"' },
      body: raw,
    });
    expect(res.status).toBe(200);
    const file = (await res.json()) as Json;
    expect(file).toMatchObject({ filename: 'my "batch".jsonl', bytes: Buffer.byteLength(content), purpose: 'batch' });
    expect(await (await get('dashscope', `/files/${file.id}/content`)).text()).toBe(content);

    // The CRLF-terminated line is a request like any other.
    const created = await createBatch('dashscope', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await waitForBatch('dashscope', ((await created.json()) as Json).id);
    const [out] = await download('dashscope', done.output_file_id);
    expect(out.custom_id).toBe('中文');
    expect(out.response.body.usage.prompt_tokens).toBe(tokens('春天 --b1 来了') + 7);
  });

  it('has no batch API for DeepSeek: 404', async () => {
    const res = await upload('deepseek', 'x\n');
    expect(res.status).toBe(404);
    expect(((await res.json()) as Json).error.code).toBe('not_found');
    expect((await createBatch('deepseek', { input_file_id: 'f', endpoint: '/v1/chat/completions', completion_window: '24h' })).status).toBe(404);
    expect((await get('deepseek', '/batches/batch_x')).status).toBe(404);
    expect((await get('deepseek', '/files/f/content')).status).toBe(404);
  });

  it('works with the official openai client against the DashScope base URL', async () => {
    const client = new OpenAI({ apiKey: 'sk-dashscope', baseURL: fake.baseUrl('dashscope'), maxRetries: 0 });
    const messages = [{ role: 'user', content: 'Grade: 好文章, reply in JSON.' }];
    const jsonl = [
      line('one', { model: 'qwen-flash', messages, response_format: { type: 'json_object' } }),
      line('two', { model: 'qwen-flash', messages: [{ role: 'user', content: 'no keyword here' }], response_format: { type: 'json_object' } }),
    ].join('\n');

    const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'in.jsonl'), purpose: 'batch' });
    expect(file.id).toMatch(FILE_ID);
    expect(file.bytes).toBe(Buffer.byteLength(jsonl));
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.status).toBe('validating');

    let current = await client.batches.retrieve(batch.id);
    for (let i = 0; i < 200 && current.status !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      current = await client.batches.retrieve(batch.id);
    }
    expect(current.status).toBe('completed');
    expect(current.request_counts).toEqual({ total: 2, completed: 1, failed: 1 });

    const output = (await (await client.files.content(current.output_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l) as Json);
    expect(output).toHaveLength(1);
    expect(JSON.parse(output[0].response.body.choices[0].message.content)).toEqual({ answer: 'Fake answer from qwen-flash.' });
    expect(output[0].response.body.usage.prompt_tokens).toBe(promptTokens(messages));
    const errors = (await (await client.files.content(current.error_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l) as Json);
    expect(errors.map((e) => [e.custom_id, e.response.status_code])).toEqual([['two', 400]]);
    expect(fake.requests.every((r) => r.headers.authorization === 'Bearer sk-dashscope')).toBe(true);

    const missing = await client.batches.retrieve('batch_missing').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
  });
});
