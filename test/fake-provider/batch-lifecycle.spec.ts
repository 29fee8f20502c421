/**
 * The fake provider's batch API, its lifecycle and edges: batch latency, scripted failures, 404 and
 * 400 answers, hand-written multipart bodies, DeepSeek without one, and the official openai client.
 */
import OpenAI, { toFile } from 'openai';
import { startFakeProvider } from './fake-provider';
import {
  AUTH,
  batchNow,
  createBatch,
  download,
  FILE_ID,
  get,
  line,
  startBatch,
  upload,
  uploadOk,
  waitForBatch,
} from './batch-spec-support';
import { chat, fake, MODEL, promptTokens, tokens, useFakeProvider, type Json } from './spec-support';

useFakeProvider();

describe('batch API (files + batches)', () => {
  it('stays in_progress until the batch latency has passed', async () => {
    // (A latency long enough that the early read comes before it even on a loaded machine: at 700 ms
    // the read came 780 ms after the start once, with two test runs side by side.)
    fake.setBatchLatency(3_000);
    const t = Date.now();
    const batch = await startBatch('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    await new Promise((r) => setTimeout(r, 150));
    const early = await batchNow('openai', batch.id);
    expect(Date.now() - t).toBeLessThan(2_900); // the premise: read before the latency passed
    expect(early).toMatchObject({ status: 'in_progress', output_file_id: null, completed_at: null });
    expect(early.in_progress_at).toBeGreaterThanOrEqual(batch.created_at);
    expect(fake.requests).toHaveLength(1); // the line itself ran at once
    const done = await waitForBatch('openai', batch.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(2_990);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 1, completed: 1, failed: 0 } });
    expect(done.completed_at).toBeGreaterThanOrEqual(early.in_progress_at);
    expect(fake.requests).toHaveLength(1); // waiting did not run the line again
  });

  it('cancels a batch that has not ended (cancelling, then cancelled with its time), and refuses to cancel one that has ended or is not there', async () => {
    const cancel = (id: string, method = 'POST') => fetch(`${fake.baseUrl('dashscope')}/batches/${id}/cancel`, { method, headers: { authorization: AUTH } });
    fake.setBatchLatency(60_000);
    const running = await startBatch('dashscope', [line('a', { model: 'qwen3-max', messages: [{ role: 'user', content: 'x' }] })]);
    const res = await cancel(running.id);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: running.id, status: 'cancelling' });
    const now = await batchNow('dashscope', running.id);
    expect(now).toMatchObject({ status: 'cancelled', completed_at: null });
    expect(now.cancelled_at).toBeGreaterThanOrEqual(running.created_at);
    expect((await cancel(running.id)).status).toBe(400); // ended
    fake.setBatchLatency(0);
    const done = await waitForBatch('dashscope', (await startBatch('dashscope', [line('b', { model: 'qwen3-max', messages: [{ role: 'user', content: 'y' }] })])).id);
    const refused = await cancel(done.id);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toBe("Cannot cancel a batch with status 'completed'.");
    expect((await cancel('batch_nope')).status).toBe(404);
    expect((await cancel(running.id, 'GET')).status).toBe(405);
  });

  it('sets the batch latency over HTTP and from the start option; reset() returns to the start value', async () => {
    const setLatency = await fetch(`${fake.url}/_fake/batch-latency`, { method: 'POST', body: JSON.stringify({ ms: 3000 }) });
    expect(await setLatency.json()).toEqual({ ok: true, batchLatencyMs: 3000 });
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
    expect(Date.now() - t).toBeLessThan(2_000); // not the 3 s set before reset() (a wide margin: a loaded machine)

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
    fake.setBatchLatency(2_000); // (the read 100 ms in comes before it even on a loaded machine)
    const msgs = [{ role: 'user', content: 'x' }];
    const t = Date.now();
    const batch = await startBatch('dashscope', [line('a', { model: 'qwen-flash', messages: msgs }), line('b', { model: 'qwen-flash', messages: msgs })]);
    expect(batch.status).toBe('validating');
    await new Promise((r) => setTimeout(r, 100));
    expect((await batchNow('dashscope', batch.id)).status).toBe(outcome === 'failed' ? 'validating' : 'in_progress');

    const done = await waitForBatch('dashscope', batch.id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1_990);
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

    // Files are deleted as OpenAI deletes them; a deleted file is then not found.
    for (const id of [file.id, current.output_file_id!, current.error_file_id!]) expect(await client.files.delete(id)).toEqual({ id, object: 'file', deleted: true });
    expect(fake.files).toEqual([]);
    expect(await client.files.retrieve(file.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    expect(await client.files.delete(file.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("lists a dialect's batches newest first, a page at a time (limit, after, has_more), as the official client reads them", async () => {
    const body = { model: 'qwen-flash', messages: [{ role: 'user', content: 'x' }] };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await startBatch('dashscope', [line(`l${i}`, body)])).id as string);
    await startBatch('zhipu', [line('other', { ...body, model: 'glm-5.3-flash' })]); // another dialect's: not listed
    const page = async (query: string) => {
      const res = await get('dashscope', `/batches${query}`);
      return { status: res.status, body: (await res.json()) as Json };
    };
    const first = await page('?limit=2');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ object: 'list', first_id: ids[2], last_id: ids[1], has_more: true });
    expect(first.body.data.map((b: Json) => [b.id, b.input_file_id])).toEqual([
      [ids[2], expect.stringMatching(FILE_ID)],
      [ids[1], expect.stringMatching(FILE_ID)],
    ]);
    const second = await page(`?limit=2&after=${ids[1]}`);
    expect(second.body).toMatchObject({ first_id: ids[0], last_id: ids[0], has_more: false });
    expect(second.body.data).toHaveLength(1);
    expect((await page('')).body.data).toHaveLength(3); // default limit 20
    expect((await page('?limit=0')).status).toBe(400);
    expect((await page('?after=batch_unknown')).status).toBe(404);
    const client = new OpenAI({ apiKey: 'sk-dashscope', baseURL: fake.baseUrl('dashscope'), maxRetries: 0 });
    const listed: string[] = [];
    for await (const b of client.batches.list({ limit: 2 })) listed.push(b.id);
    expect(listed).toEqual([...ids].reverse());
  });

  it('lists the files of a dialect newest first (GET /files with purpose, limit and after), as the openai client pages them', async () => {
    const ids: string[] = [];
    for (const n of ['a', 'b', 'c']) ids.push(await uploadOk('dashscope', [line(n, { model: MODEL.dashscope, messages: [{ role: 'user', content: n }] })]));
    const batch = await startBatch('dashscope', [line('x', { model: MODEL.dashscope, messages: [{ role: 'user', content: 'x' }] })]);
    await waitForBatch('dashscope', batch.id); // its upload, and its results (purpose batch_output)
    await uploadOk('openai', [line('other', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]); // another dialect's
    const page = async (query: string) => {
      const res = await fetch(`${fake.baseUrl('dashscope')}/files${query}`, { headers: { authorization: AUTH } });
      return { status: res.status, body: (await res.json()) as Json };
    };
    const uploads = [batch.input_file_id, ...[...ids].reverse()];
    const first = await page('?purpose=batch&limit=2');
    expect(first.body).toMatchObject({ object: 'list', first_id: uploads[0], last_id: uploads[1], has_more: true });
    expect(first.body.data.map((f: Json) => [f.id, f.purpose, f.filename])).toEqual([
      [uploads[0], 'batch', expect.any(String)],
      [uploads[1], 'batch', expect.any(String)],
    ]);
    expect((await page(`?purpose=batch&limit=2&after=${uploads[1]}`)).body.data.map((f: Json) => f.id)).toEqual(uploads.slice(2));
    expect((await page('')).body.data).toHaveLength(5); // every purpose, default limit 10,000
    expect((await page('?limit=0')).status).toBe(400);
    expect((await page('?after=file-unknown')).status).toBe(404);
    const client = new OpenAI({ apiKey: 'sk-dashscope', baseURL: fake.baseUrl('dashscope'), maxRetries: 0 });
    const listed: string[] = [];
    for await (const f of client.files.list({ purpose: 'batch', limit: 2 })) listed.push(f.id);
    expect(listed).toEqual(uploads);
  });

  it('answers POST /batches late with a batch create delay, the batch created (and listed) at once; reset() clears it', async () => {
    fake.setBatchCreateDelay(2_000);
    const fileId = await uploadOk('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    const t = Date.now();
    const answer = createBatch('openai', { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await new Promise((r) => setTimeout(r, 150));
    expect(fake.batches.map((b) => b.input_file_id)).toEqual([fileId]); // there before its id is answered
    expect((await answer).status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1_990);
    fake.reset();
    const again = Date.now();
    await startBatch('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    expect(Date.now() - again).toBeLessThan(1_500); // not the 2 s delay set before reset() (a wide margin: a loaded machine)
  });

  it('leaves a new batch out of GET /batches for the list lag (GET /batches/:id knows it at once); reset() clears it', async () => {
    const listed = async () => ((await (await get('openai', '/batches?limit=100')).json()) as { data: Json[] }).data.map((b) => b.id);
    fake.setBatchListLag(400);
    const lagging = await startBatch('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    expect(await listed()).toEqual([]);
    expect((await batchNow('openai', lagging.id)).id).toBe(lagging.id);
    await new Promise((r) => setTimeout(r, 450));
    expect(await listed()).toEqual([lagging.id]);
    fake.reset();
    const after = await startBatch('openai', [line('only', { model: 'gpt-6-luna', messages: [{ role: 'user', content: 'x' }] })]);
    expect(await listed()).toEqual([after.id]);
  });
});

