/**
 * The fake provider's batch API (global fetch, FormData and Blob), per dialect: upload, create,
 * complete, with usage and prefix cache as in real time; steps, responders and malformed lines in a
 * batch.
 */
import { PRESETS } from './presets';
import {
  AUTH,
  BATCH_DIALECTS,
  BATCH_ID,
  createBatch,
  download,
  expectAuthError,
  FILE_ID,
  get,
  line,
  placeholder,
  REQ_ID,
  startBatch,
  upload,
  uploadOk,
  waitForBatch,
  type BatchDialect,
} from './batch-spec-support';
import {
  cachedTokens,
  chat,
  chatUrl,
  fake,
  filler,
  MODEL,
  post,
  promptTokens,
  tokens,
  useFakeProvider,
  UUID,
  type Json,
} from './spec-support';

useFakeProvider();

describe('batch API (files + batches)', () => {
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
        cancelled_at: null,
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
});

describe('what it would bill, in batches', () => {
  it('counts a batch line answered with 200 as billed, and a prompt answered in a batch and again in real time as paid twice', async () => {
    const again = [{ role: 'user' as const, content: 'Grade essay C' }];
    const once = [{ role: 'user' as const, content: 'Grade essay D' }];
    const lines = [
      line('again', { model: MODEL.dashscope, messages: again }),
      line('once', { model: MODEL.dashscope, messages: once }),
      line('not-a-chat-request', { model: MODEL.dashscope }), // answered 400: not billed
    ];
    const batch = await startBatch('dashscope', lines);
    expect((await waitForBatch('dashscope', batch.id)).request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    const counts = async () => {
      const { count, answered, answeredInBatches, answeredAgain, filesStored } = (await (await fetch(`${fake.url}/_fake/requests`)).json()) as Json;
      return { count, answered, answeredInBatches, answeredAgain, filesStored };
    };
    // The upload, the batch's answers and its errors (the line it answered 400) are stored.
    expect(await counts()).toEqual({ count: 3, answered: 2, answeredInBatches: 2, answeredAgain: 0, filesStored: 3 });
    await chat('dashscope', again);
    expect(await counts()).toEqual({ count: 4, answered: 3, answeredInBatches: 2, answeredAgain: 1, filesStored: 3 });
    expect((await fetch(`${fake.baseUrl('dashscope')}/files/${batch.input_file_id}`, { method: 'DELETE', headers: { authorization: AUTH } })).status).toBe(200);
    expect((await counts()).filesStored).toBe(2);
    fake.reset();
    expect(await counts()).toEqual({ count: 0, answered: 0, answeredInBatches: 0, answeredAgain: 0, filesStored: 0 });
  });
});
