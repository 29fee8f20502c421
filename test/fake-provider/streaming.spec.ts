/**
 * The fake provider over real HTTP on loopback: streamed answers (SSE chunks, usage, keep-alive
 * comments, cut streams) and the official openai client against it.
 */
import OpenAI from 'openai';
import { chat, fake, parseChunks, post, promptTokens, tokens, useFakeProvider } from './spec-support';

useFakeProvider();

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
