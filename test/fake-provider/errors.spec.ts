/**
 * The fake provider over real HTTP on loopback: the providers' real error answers (presets.ts) and
 * the rules it applies on its own (DashScope's JSON-mode word, context windows).
 */
import type { Step } from './fake-provider';
import { PRESETS, REQUEST_ID_PLACEHOLDER } from './presets';
import {
  chat,
  DIALECTS,
  fake,
  filler,
  MODEL,
  parseChunks,
  post,
  promptTokens,
  sseData,
  useFakeProvider,
  UUID,
  type Json,
} from './spec-support';

useFakeProvider();

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
