import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { GatewayRequest, GatewayService } from '../src/llm/gateway.service';
import { BatchCollector } from '../src/llm/batch-collector';
import { ProviderClient } from '../src/llm/provider-client';
import { ProviderUploadsRepository } from '../src/llm/provider-uploads.repository';
import { MetricsService } from '../src/metrics/metrics.service';
import { ADAPTERS } from '../src/llm/providers';
import { ProviderError } from '../src/llm/types';
import { FakeProvider } from './fake-provider/fake-provider';
import { Factory, TestTenant } from './support/factories';
import { TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';
import { waitFor } from './support/wait';

/** qwen3-max: real time 2.5 / 0.5 / 10 CNY per million tokens; batch 1.25 / 1.25 / 5 (no cache discount in batch). */
const REALTIME = { input: 2500n, cached: 500n, output: 10_000n };
const BATCH = { input: 1250n, cached: 1250n, output: 5000n };

describe("calls that can wait go through the provider's Batch API", () => {
  let fake: FakeProvider;
  let t: TestApp;
  let gw: GatewayService;
  let ds: DataSource;
  let tenant: TestTenant;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ LLM_BATCH_WINDOW_MS: '300' }));
    gw = t.app.get(GatewayService);
    ds = t.dataSource;
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    fake.reset();
    gw.resetHealth();
    tenant = await new Factory(t.app).newTenant({ monthlyBudget: '50.00' });
  });

  const ask = (content: string, extra: Partial<GatewayRequest> = {}) =>
    gw.complete({ tenantId: tenant.tenantId, purpose: 'deep_review', target: { model: 'dashscope:qwen3-max' }, messages: [{ role: 'user', content }], maxTokens: 300, batch: true, ...extra });

  const price = (u: { inputTokens: number; cachedInputTokens: number; outputTokens: number }, p: typeof BATCH) =>
    BigInt(u.inputTokens - u.cachedInputTokens) * p.input + BigInt(u.cachedInputTokens) * p.cached + BigInt(u.outputTokens) * p.output;

  it('collects concurrent calls into one batch and prices each answer at the batch rate', async () => {
    const [a, b] = await Promise.all([ask('第一篇作文的深度点评'), ask('第二篇作文的深度点评')]);
    const lines = fake.requests.filter((r) => r.batchId);
    expect(lines).toHaveLength(2);
    expect(new Set(lines.map((r) => r.batchId)).size).toBe(1); // one batch
    expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(0); // no real-time call
    for (const r of [a, b]) {
      expect(r.costNanos).toBe(price(r.usage, BATCH));
      expect(r.costNanos * 2n).toBe(price(r.usage, REALTIME)); // half the real-time price
    }
    const rows = await ds.query(`SELECT batch, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(rows.map((r: { batch: boolean; outcome: string }) => [r.batch, r.outcome])).toEqual([
      [true, 'ok'],
      [true, 'ok'],
    ]);
    const { spent } = await expectBooksBalanced(ds, tenant.tenantId);
    expect(spent).toBe(a.costNanos + b.costNanos);
    // The batch's files (the requests uploaded, the answers) are deleted at the provider once read.
    expect(fake.batches[0].input_file_id).toEqual(expect.any(String));
    await waitFor(() => fake.files.length === 0, 5_000, 'the batch files to be deleted');
  });

  it('makes the call in real time when the batch as a whole fails or expires', async () => {
    for (const outcome of ['failed', 'expired'] as const) {
      fake.reset();
      fake.failNextBatch('dashscope', outcome);
      const r = await ask(`batch ${outcome}`);
      expect(r.costNanos).toBe(price(r.usage, REALTIME));
      expect(fake.requests.filter((x) => !x.batchId)).toHaveLength(1);
      await waitFor(() => fake.files.length === 0, 5_000, `the ${outcome} batch's upload to be deleted`);
    }
    const rows = await ds.query(`SELECT batch, outcome, error_reason, cost_nanos FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at`, [tenant.tenantId]);
    expect(rows.map((r: { batch: boolean; outcome: string; error_reason: string | null; cost_nanos: string }) => [r.batch, r.outcome, r.error_reason, r.cost_nanos === '0'])).toEqual([
      [true, 'retryable', 'batch_failed', true],
      [false, 'ok', null, false],
      [true, 'retryable', 'batch_failed', true],
      [false, 'ok', null, false],
    ]);
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  it('waits for a batch it gave up on to end its cancelling, and answers what it ran from its output at the batch price: nothing paid again in real time', async () => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    fake.setBatchLatency(30_000); // its lines run at once; the batch shows in_progress for 30 s
    const client = new ProviderClient(t.config.llm);
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50, batchMaxWaitMs: 300 });
    try {
      const answered = await collector.submit(provider, ADAPTERS.dashscope, model, { messages: [{ role: 'user', content: '一篇被放弃的批次作文' }], maxTokens: 50, stream: false });
      expect(answered.content.length).toBeGreaterThan(0);
      expect(answered.usage).not.toBeNull();
      // The cancel answered 'cancelling'; its end was read, and the line it had run answered from its output.
      expect(fake.batches[0].status).toBe('cancelled');
      expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(0);
      const counts = (await (await fetch(`${fake.url}/_fake/requests`)).json()) as { answeredInBatches: number; answeredAgain: number };
      expect(counts).toMatchObject({ answeredInBatches: 1, answeredAgain: 0 });
    } finally {
      await collector.close();
      await client.close();
    }
  });

  it('answers the lines an expired batch ran from its output file, at the batch price, and makes only the others in real time (each paid once)', async () => {
    fake.failNextBatch('dashscope', 'expired', 1);
    const [a, b] = await Promise.all([ask('赶在期限前跑完的一篇'), ask('没来得及跑的一篇')]);
    expect(fake.requests.filter((r) => r.batchId)).toHaveLength(1); // one line ran before the window ran out
    expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(1); // the other, in real time
    const [inBatch, realtime] = a.costNanos === price(a.usage, BATCH) ? [a, b] : [b, a];
    expect(inBatch.costNanos).toBe(price(inBatch.usage, BATCH));
    expect(realtime.costNanos).toBe(price(realtime.usage, REALTIME));
    // Paid once each: what the provider billed (one batch line, one real-time answer) is what the ledger holds.
    const counts = (await (await fetch(`${fake.url}/_fake/requests`)).json()) as { answered: number; answeredInBatches: number; answeredAgain: number };
    expect(counts).toMatchObject({ answered: 2, answeredInBatches: 1, answeredAgain: 0 });
    const rows = await ds.query(`SELECT batch, outcome, error_reason, cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, batch`, [tenant.tenantId]);
    expect(rows.filter((r: { cost: string }) => r.cost !== '0').map((r: { batch: boolean; outcome: string }) => [r.batch, r.outcome]).sort()).toEqual([
      [false, 'ok'],
      [true, 'ok'],
    ]);
    expect(rows.filter((r: { cost: string }) => r.cost === '0').map((r: { batch: boolean; error_reason: string }) => [r.batch, r.error_reason])).toEqual([[true, 'batch_failed']]);
    const { spent } = await expectBooksBalanced(ds, tenant.tenantId);
    expect(spent).toBe(a.costNanos + b.costNanos);
    await waitFor(() => fake.files.length === 0, 5_000, "the expired batch's files to be deleted");
  });

  it("handles one line's error like any answer of that model (a content rejection goes to the next model)", async () => {
    fake.enqueue('dashscope', { kind: 'preset', name: 'data_inspection_failed' });
    const r = await ask('refused in the batch', { target: { tier: 'deep' } });
    expect(r.provider).toBe('zhipu'); // the deep tier's next model
    const rows = await ds.query(`SELECT provider, batch, outcome FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at`, [tenant.tenantId]);
    expect(rows[0]).toEqual({ provider: 'dashscope', batch: true, outcome: 'content_rejected' });
  });

  it("deletes the upload of a batch it gives up on, and of a batch the provider would not create: no essay is left at the provider", async () => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    const params = { messages: [{ role: 'user' as const, content: '一篇作文' }], maxTokens: 50, stream: false };
    // Given up: the batch outlasts the wait (the provider's batch takes 10 s, the wait is 300 ms).
    fake.setBatchLatency(10_000);
    const client = new ProviderClient(t.config.llm);
    // (Its cancelling not waited for: what the batch ran is not read back, as with a provider slow to end it.)
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50, batchMaxWaitMs: 300, batchCancelWaitMs: 0 });
    try {
      const err = await collector.submit(provider, ADAPTERS.dashscope, model, params).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as ProviderError).reason).toBe('batch_failed');
      expect(fake.batches).toHaveLength(1);
      // Cancelled at the provider: what it has not run is neither run nor billed.
      expect(fake.batches[0].status).toBe('cancelled');
      const upload = fake.batches[0].input_file_id;
      expect(fake.files).toContain(upload);
      await waitFor(() => !fake.files.includes(upload), 5_000, "the abandoned batch's upload to be deleted");
      // A file that cannot be deleted (gone already: 404) is logged and passed over; the caller's answer is the batch's.
      const pending = collector.submit(provider, ADAPTERS.dashscope, model, params).catch((e: unknown) => e);
      await waitFor(() => fake.batches.length === 2, 5_000, 'the second batch');
      await client.deleteFile(provider, ADAPTERS.dashscope, fake.batches[1].input_file_id);
      const second = await pending;
      expect(second).toBeInstanceOf(ProviderError);
      expect((second as ProviderError).reason).toBe('batch_failed');
      await collector.close(); // returns: the failed delete did not throw out of the batch's run
      // Not created: the upload went through, the batch was refused (its input holds no request).
      const before = fake.files.length;
      const refused = await client.createBatch(provider, ADAPTERS.dashscope, '\n').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ProviderError);
      expect(fake.files).toHaveLength(before);
      // A refusal is an answer (no batch was made): the upload goes at once even when the caller
      // would look for a batch behind an error without one.
      const empty = await client.uploadBatchFile(provider, ADAPTERS.dashscope, '\n');
      const again = await client.createBatchFromFile(provider, ADAPTERS.dashscope, empty, { keepUploadUnanswered: true }).catch((e: unknown) => e);
      expect((again as ProviderError).extra.status).toBe(400);
      expect(fake.files).not.toContain(empty);
      // So is a 404 (read as a model's fault elsewhere): nothing was made from the upload it names.
      const deletes = jest.spyOn(client, 'deleteFile');
      const unknown = await client.createBatchFromFile(provider, ADAPTERS.dashscope, 'file-unknown', { keepUploadUnanswered: true }).catch((e: unknown) => e);
      expect((unknown as ProviderError).extra.status).toBe(404);
      expect(deletes).toHaveBeenCalledWith(provider, ADAPTERS.dashscope, 'file-unknown');
      deletes.mockRestore();
    } finally {
      await collector.close();
      await client.close();
    }
  });

  it("waits for the batch a creation without an answer made (a timeout): found by its upload, no real-time call, paid once", async () => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    const params = { messages: [{ role: 'user' as const, content: '创建没有回音的一批' }], maxTokens: 50, stream: false };
    // The provider makes the batch but answers after the client has given up on the request.
    fake.setBatchCreateDelay(1_500);
    const client = new ProviderClient({ ...t.config.llm, totalTimeoutMs: 500 });
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50, batchListSettleMs: 0 });
    const creates = jest.spyOn(client, 'createBatchFromFile');
    try {
      const answered = await collector.submit(provider, ADAPTERS.dashscope, model, params);
      expect(answered.content.length).toBeGreaterThan(0);
      await expect(creates.mock.results[0].value).rejects.toMatchObject({ reason: 'timeout' });
      expect(fake.batches).toHaveLength(1);
      expect(fake.requests.filter((r) => r.batchId)).toHaveLength(1);
      expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(0);
      await waitFor(() => fake.files.length === 0, 5_000, "the batch's files deleted once read");
    } finally {
      fake.setBatchCreateDelay(0);
      creates.mockRestore();
      await collector.close();
      await client.close();
    }
  });

  it('on a stop, fails the calls not sent yet without an upload, and cancels a batch under way without waiting for its next poll', async () => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    const params = (content: string) => ({ messages: [{ role: 'user' as const, content }], maxTokens: 50, stream: false });
    fake.setBatchLatency(60_000);
    const client = new ProviderClient(t.config.llm);
    // Two calls fill a batch (sent at once); a third waits for the next one. Polls a minute apart.
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 60_000, batchMaxRequests: 2, batchPollMs: 60_000, batchCancelWaitMs: 0 });
    try {
      const sent = [collector.submit(provider, ADAPTERS.dashscope, model, params('一')), collector.submit(provider, ADAPTERS.dashscope, model, params('二'))].map((c) =>
        c.catch((e: unknown) => e),
      );
      await waitFor(() => fake.batches.length === 1 && fake.batches[0].status === 'in_progress', 5_000, 'the first batch under way');
      const waiting = collector.submit(provider, ADAPTERS.dashscope, model, params('三')).catch((e: unknown) => e);
      const before = [...fake.files];
      await collector.close(); // would wait out the minute's poll before
      for (const err of [...(await Promise.all(sent)), await waiting]) {
        expect(err).toBeInstanceOf(ProviderError);
        expect((err as ProviderError).reason).toBe('batch_failed');
      }
      expect(((await waiting) as ProviderError).message).toContain('stopping');
      expect(fake.batches).toHaveLength(1); // the waiting call was never uploaded
      // The batch's upload deleted, none added (its answer files, which the provider may write while
      // it runs, are the sweep's once it has ended). (A count of the files failed on a loaded machine:
      // the fake had written the batch's output file before the count was taken.)
      const [b] = fake.batches;
      expect(before).toContain(b.input_file_id);
      expect(fake.files).not.toContain(b.input_file_id);
      expect(fake.files.filter((f) => !before.includes(f) && f !== b.output_file_id && f !== b.error_file_id)).toEqual([]);
      expect(fake.batches[0].status).toBe('cancelled');
      // A call after the stop fails at once too.
      expect(((await collector.submit(provider, ADAPTERS.dashscope, model, params('四')).catch((e: unknown) => e)) as ProviderError).reason).toBe('batch_failed');
    } finally {
      await collector.close();
      await client.close();
    }
  });

  /** A collector taking calls over (its guards name nothing, and are recorded), and one-line batches created at the fake. */
  const takingOver = (cfg: Partial<typeof t.config.llm> = {}) => {
    const provider = t.models.providers.get('dashscope')!;
    const client = new ProviderClient(t.config.llm);
    const guards = { markUploaded: jest.fn(async () => 0), markBatched: jest.fn(async () => 0), othersAwaitingBatch: jest.fn(async () => 0) };
    const collector = new BatchCollector(client, { ...t.config.llm, batchPollMs: 50, ...cfg }, guards);
    const line = JSON.stringify({ custom_id: 'l1', method: 'POST', url: '/v1/chat/completions', body: { model: 'qwen3-max', messages: [{ role: 'user', content: '作文' }] } });
    const guard = { tenantId: randomUUID(), key: 'k', token: randomUUID(), reservationId: randomUUID() };
    return {
      client,
      collector,
      guards,
      guard,
      oneLineBatch: () => client.createBatch(provider, ADAPTERS.dashscope, line),
      upload: () => client.uploadBatchFile(provider, ADAPTERS.dashscope, line),
      adopt: (batchId: string, customId: string) =>
        collector.adopt(provider, ADAPTERS.dashscope, { batchId, fileId: null, line: customId, guardedAt: Date.now() }, { ...guard, token: randomUUID() }),
      /** a call whose sender named only the batch's upload */
      adoptByUpload: (fileId: string, customId: string) => collector.adopt(provider, ADAPTERS.dashscope, { batchId: null, fileId, line: customId, guardedAt: Date.now() - 5_000 }, guard),
      getBatch: (batchId: string) => client.getBatch(provider, ADAPTERS.dashscope, batchId),
      close: async () => {
        await collector.close();
        await client.close();
      },
    };
  };

  it('a call taken over asks for its batch again after an error that may pass, and gets its line', async () => {
    const c = takingOver();
    try {
      fake.setBatchLatency(200);
      const batch = await c.oneLineBatch();
      const reads = jest.spyOn(c.client, 'getBatch').mockRejectedValueOnce(new ProviderError('retryable', 'timeout', 'no answer within 4000 ms'));
      const answer = await c.adopt(batch.id, 'l1');
      expect(answer.content).toEqual(expect.any(String));
      expect(reads.mock.calls.length).toBeGreaterThan(1);
      await waitFor(() => fake.files.length === 0, 5_000, "the batch's files deleted");
    } finally {
      await c.close();
    }
  });

  it('fails a call taken over from a batch that failed as a whole, also one that asks while the batch is still being cleaned up', async () => {
    const c = takingOver();
    let deleted: (() => void) | undefined;
    try {
      fake.failNextBatch('dashscope', 'failed');
      const batch = await c.oneLineBatch();
      await waitFor(async () => (await c.getBatch(batch.id)).status === 'failed', 5_000, 'the batch failed');
      // Hold the clean-up (its upload's deletion) open, as a slow provider would.
      const deleting = jest.spyOn(c.client, 'deleteFile').mockImplementation(() => new Promise<void>((r) => (deleted = r)));
      const first = await c.adopt(batch.id, 'l1').catch((e: unknown) => e);
      expect((first as ProviderError).reason).toBe('batch_failed');
      await waitFor(() => deleting.mock.calls.length === 1, 5_000, 'the clean-up under way');
      const second = await Promise.race([c.adopt(batch.id, 'l2').catch((e: unknown) => e), new Promise((r) => setTimeout(() => r('still waiting'), 2_000))]);
      expect((second as ProviderError).reason).toBe('batch_failed');
    } finally {
      deleted?.();
      await c.close();
    }
  });

  it('a call taken over whose sender named only the upload finds the batch made from it (a page back in the list), names it on its guard and gets its line', async () => {
    const c = takingOver();
    try {
      fake.setBatchLatency(200);
      const batch = await c.oneLineBatch();
      for (let i = 0; i < 101; i++) await c.oneLineBatch(); // newer batches: the one made from the upload is on the list's second page
      const lists = jest.spyOn(c.client, 'findBatchByFile');
      const answer = await c.adoptByUpload(batch.input_file_id!, 'l1');
      expect(answer.content).toEqual(expect.any(String));
      expect(lists).toHaveBeenCalledTimes(1);
      expect(c.guards.markBatched).toHaveBeenCalledWith('dashscope', batch.id, [{ ...c.guard, line: 'l1' }]);
      // Its line was run once, in that batch; nothing in real time.
      expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(0);
      expect(fake.batches).toHaveLength(102);
      // The last reader deletes the batch's files, asking by the batch and by its upload.
      await waitFor(() => !fake.files.includes(batch.input_file_id!), 5_000, "the batch's upload deleted");
      expect(c.guards.othersAwaitingBatch).toHaveBeenCalledWith(batch.id, batch.input_file_id, [c.guard.token]);
    } finally {
      await c.close();
    }
  });

  it("looks for the batch made from an upload again after an error that may pass; a list that is not one, or a batch not found within the pages it reads, is an error, not 'none made' (the upload kept)", async () => {
    const c = takingOver();
    const provider = t.models.providers.get('dashscope')!;
    // A provider whose list of batches is not a list.
    const deletes: string[] = [];
    const odd = http.createServer((req, res) => {
      if (req.method === 'DELETE') deletes.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list' }));
    });
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
    try {
      fake.setBatchLatency(100);
      const batch = await c.oneLineBatch();
      const looks = jest.spyOn(c.client, 'findBatchByFile').mockRejectedValueOnce(new ProviderError('retryable', 'timeout', 'no answer within 4000 ms'));
      expect((await c.adoptByUpload(batch.input_file_id!, 'l1')).content).toEqual(expect.any(String));
      expect(looks).toHaveBeenCalledTimes(2);
      looks.mockRestore();

      // Not found within the pages read (one page of 100 here, 101 newer batches): an error, not "none made".
      for (let i = 0; i < 101; i++) await c.oneLineBatch();
      const paged = await c.client.findBatchByFile(provider, ADAPTERS.dashscope, batch.input_file_id!, 0, 1).catch((e: unknown) => e);
      expect((paged as ProviderError).reason).toBe('batch_failed');
      expect((paged as ProviderError).message).toMatch(/not found in 1 pages/);
      expect((await c.client.findBatchByFile(provider, ADAPTERS.dashscope, batch.input_file_id!, 0, 2))?.id).toBe(batch.id);

      const oddProvider = { ...provider, baseUrl: `http://127.0.0.1:${(odd.address() as AddressInfo).port}` };
      const malformed = await c.collector
        .adopt(oddProvider, ADAPTERS.dashscope, { batchId: null, fileId: 'file-x', line: 'l1', guardedAt: Date.now() }, c.guard)
        .catch((e: unknown) => e);
      expect((malformed as ProviderError).reason).toBe('malformed_response');
      expect(deletes).toEqual([]); // not taken for "no batch made": the upload is kept
    } finally {
      odd.closeAllConnections();
      odd.close();
      await c.close();
    }
  });

  it('a call taken over whose upload no batch was made from was never sent: it fails batch_failed once a second look (LLM_BATCH_LIST_SETTLE_MS later) does not find it either, for the gateway to make it in real time, and the upload is deleted', async () => {
    const c = takingOver();
    try {
      const fileId = await c.upload();
      await c.oneLineBatch(); // another batch, from another upload
      const looks = jest.spyOn(c.client, 'findBatchByFile');
      const failed = await c.adoptByUpload(fileId, 'l1').catch((e: unknown) => e);
      expect(looks).toHaveBeenCalledTimes(2);
      expect(failed).toBeInstanceOf(ProviderError);
      expect((failed as ProviderError).reason).toBe('batch_failed');
      expect((failed as ProviderError).message).toMatch(/never sent/);
      expect(fake.files).not.toContain(fileId);
      expect(c.guards.markBatched).not.toHaveBeenCalled();
      expect(fake.batches).toHaveLength(1);
    } finally {
      await c.close();
    }
  });

  it("a call taken over whose batch the provider's list does not show yet looks again after LLM_BATCH_LIST_SETTLE_MS: it gets its line from that batch, nothing made twice, the upload kept until the batch ends", async () => {
    const c = takingOver();
    try {
      expect(t.config.llm.batchListSettleMs).toBe(300);
      fake.setBatchLatency(100);
      fake.setBatchListLag(200); // the list shows a batch 200 ms after its creation
      const batch = await c.oneLineBatch();
      const looks = jest.spyOn(c.client, 'findBatchByFile');
      const answer = await c.adoptByUpload(batch.input_file_id!, 'l1');
      expect(answer.content).toEqual(expect.any(String));
      expect(looks).toHaveBeenCalledTimes(2); // not in the list at the first look
      expect(c.guards.markBatched).toHaveBeenCalledWith('dashscope', batch.id, [expect.objectContaining({ line: 'l1' })]);
      expect(fake.batches.map((b) => b.id)).toEqual([batch.id]);
      expect(fake.requests.filter((r) => r.path.endsWith('/chat/completions') && !r.batchId)).toHaveLength(0);
    } finally {
      await c.close();
    }
  });

  it('a call taken over whose batch is not in the list at the first look is handed back to its job when the service stops before the second: the upload kept, nothing concluded', async () => {
    const c = takingOver({ batchListSettleMs: 600_000 }); // ended by the stop, not by the wait
    try {
      const fileId = await c.upload();
      const looks = jest.spyOn(c.client, 'findBatchByFile');
      const adopting = c.adoptByUpload(fileId, 'l1').catch((e: unknown) => e);
      await waitFor(() => looks.mock.calls.length === 1, 5_000, 'the first look');
      await (looks.mock.results[0].value as Promise<unknown>);
      await c.collector.close();
      const stopped = await adopting;
      expect(stopped).toBeInstanceOf(ProviderError);
      expect((stopped as ProviderError).reason).toBe('batch_handed_over');
      expect(looks).toHaveBeenCalledTimes(1);
      expect(fake.files).toContain(fileId);
    } finally {
      await c.close();
    }
  });

  /** A collector sending a job's call (with a guard) in a batch of its own, its guards' naming recorded (`markUploaded` as given). */
  const sendingGuarded = (markUploaded: () => Promise<number>) => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    const client = new ProviderClient(t.config.llm);
    const guards = { markUploaded: jest.fn(markUploaded), markBatched: jest.fn(async () => 1), othersAwaitingBatch: jest.fn(async () => 0) };
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50 }, guards);
    const guard = { tenantId: randomUUID(), key: 'k', token: randomUUID(), reservationId: randomUUID() };
    return {
      client,
      guards,
      guard,
      send: () => collector.submit(provider, ADAPTERS.dashscope, model, { messages: [{ role: 'user', content: '一篇作文' }], maxTokens: 50, stream: false }, guard),
      close: async () => {
        await collector.close();
        await client.close();
      },
    };
  };

  it("does not create a batch whose upload cannot be named on its calls' guards: its calls fail batch_failed (made in real time by the gateway), the upload deleted", async () => {
    const c = sendingGuarded(() => Promise.reject(new Error('connection terminated')));
    try {
      const failed = await c.send().catch((e: unknown) => e);
      expect((failed as ProviderError).reason).toBe('batch_failed');
      expect(c.guards.markUploaded).toHaveBeenCalledTimes(1);
      expect(fake.batches).toHaveLength(0);
      expect(fake.files).toEqual([]);
      expect(fake.requests).toHaveLength(0);
    } finally {
      await c.close();
    }
  });

  it("names a batch's upload on its calls' guards before it creates the batch, then the batch", async () => {
    const c = sendingGuarded(async () => 1);
    const creates = jest.spyOn(c.client, 'createBatchFromFile');
    try {
      await c.send();
      const [batch] = fake.batches;
      const named = c.guards.markUploaded.mock.calls[0] as unknown[];
      expect(named[0]).toBe('dashscope');
      expect(named[1]).toBe(batch.input_file_id);
      expect(named[2]).toEqual([{ ...c.guard, line: expect.any(String) }]);
      expect(c.guards.markUploaded.mock.invocationCallOrder[0]).toBeLessThan(creates.mock.invocationCallOrder[0]);
      expect(c.guards.markBatched.mock.invocationCallOrder[0]).toBeGreaterThan(creates.mock.invocationCallOrder[0]);
      expect((c.guards.markBatched.mock.calls[0] as unknown[])[1]).toBe(batch.id);
    } finally {
      await c.close();
    }
  });

  it("polls again after a poll that fails for a passing reason (and reads the results again), and gives the batch up on one that cannot pass", async () => {
    const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
    const provider = t.models.providers.get('dashscope')!;
    const params = { messages: [{ role: 'user' as const, content: '一篇作文' }], maxTokens: 50, stream: false };
    fake.setBatchLatency(300);
    const client = new ProviderClient(t.config.llm);
    const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50 });
    try {
      const polls = jest.spyOn(client, 'getBatch').mockRejectedValueOnce(new ProviderError('retryable', 'timeout', 'no answer within 4000 ms'));
      const answer = await collector.submit(provider, ADAPTERS.dashscope, model, params);
      expect(answer.content).toEqual(expect.any(String));
      expect(polls.mock.calls.length).toBeGreaterThan(1);
      expect(fake.batches).toHaveLength(1);
      expect(fake.requests.filter((r) => !r.batchId)).toHaveLength(0);
      // The same for the results' read: the lines are paid for.
      const reads = jest.spyOn(client, 'fileContent').mockRejectedValueOnce(new ProviderError('retryable', 'server_error', 'The server had an error'));
      expect((await collector.submit(provider, ADAPTERS.dashscope, model, params)).content).toEqual(expect.any(String));
      expect(reads).toHaveBeenCalledTimes(2);
      expect(fake.batches).toHaveLength(2);
      // The provider no longer knows the batch (404): given up, the call fails for the gateway to make it in real time.
      fake.reset();
      fake.setBatchLatency(10_000);
      polls.mockRejectedValueOnce(new ProviderError('fatal', 'not_found', 'No batch found with id'));
      const err = await collector.submit(provider, ADAPTERS.dashscope, model, params).catch((e: unknown) => e);
      expect((err as ProviderError).reason).toBe('batch_failed');
      expect((err as ProviderError).message).toContain('not_found');
    } finally {
      await collector.close();
      await client.close();
    }
  });

  describe('uploads written down until deleted at the provider, and swept', () => {
    const jsonl = (content: string) => JSON.stringify({ custom_id: randomUUID(), method: 'POST', url: '/v1/chat/completions', body: { model: 'qwen3-max', messages: [{ role: 'user', content }], max_tokens: 50 } });
    const uploads = async () =>
      (await ds.query(`SELECT file_id, batch_id, tries, due_at > now() AS later FROM provider_uploads ORDER BY uploaded_at`)) as Array<{ file_id: string; batch_id: string | null; tries: number; later: boolean }>;
    /** What a process killed while its batch ran leaves: the upload and the batch at the provider, the row past its time. */
    const leftBehind = async (content: string, opts: { batch: boolean }) => {
      const client = new ProviderClient(t.config.llm);
      const provider = t.models.providers.get('dashscope')!;
      try {
        const name = `inkstone-${randomUUID()}.jsonl`;
        const fileId = await client.uploadBatchFile(provider, ADAPTERS.dashscope, jsonl(content), name);
        const batch = opts.batch ? await client.createBatchFromFile(provider, ADAPTERS.dashscope, fileId) : null;
        await ds.query(`INSERT INTO provider_uploads (provider, name, file_id, batch_id, due_at) VALUES ('dashscope', $1, $2, $3, now() - interval '1 second')`, [name, fileId, batch?.id ?? null]);
        return { name, fileId, batchId: batch?.id ?? null };
      } finally {
        await client.close();
      }
    };
    beforeEach(async () => {
      await ds.query(`DELETE FROM provider_uploads`);
    });

    it('writes each upload down with its batch while it runs, and strikes it off once its files are deleted', async () => {
      fake.setBatchLatency(1_500);
      const answer = ask('记下上传的作文');
      await waitFor(async () => (await uploads()).some((u) => u.batch_id !== null), 5_000, 'the upload and its batch written down');
      const [row] = await uploads();
      expect(row).toMatchObject({ file_id: fake.batches[0].input_file_id, batch_id: fake.batches[0].id, tries: 0, later: true });
      await answer;
      await waitFor(() => fake.files.length === 0, 5_000, 'the batch files to be deleted');
      await waitFor(async () => (await uploads()).length === 0, 5_000, 'the upload struck off');
    });

    it("deletes a finished batch's upload and answers that a killed sender left, but not while a call still waits for them", async () => {
      const left = await leftBehind('被杀进程留下的作文', { batch: true });
      await waitFor(() => fake.batches[0].status === 'completed', 5_000, 'the batch to finish');
      expect(fake.files).toEqual(expect.arrayContaining([left.fileId, fake.batches[0].output_file_id]));
      // A job's retry still waits for it: kept, and looked at again later.
      await ds.query(
        `INSERT INTO call_guards (tenant_id, key, state, token, expires_at, batch_provider, batch_id, batch_line, reservation_id)
         VALUES ($1, $2, 'in_flight', $3, now() + interval '1 hour', 'dashscope', $4, 'line', $3)`,
        [tenant.tenantId, 'a'.repeat(64), randomUUID(), left.batchId],
      );
      expect(await gw.sweepProviderUploads()).toBe(0);
      expect(fake.files).toEqual(expect.arrayContaining([left.fileId, fake.batches[0].output_file_id]));
      expect(await uploads()).toEqual([expect.objectContaining({ file_id: left.fileId, tries: 1, later: true })]);
      // No one waits any more (the guard ran out): the upload and the answers go.
      await ds.query(`UPDATE call_guards SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
      await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
      expect(await gw.sweepProviderUploads()).toBe(1);
      expect(fake.files).toEqual([]);
      expect(await uploads()).toEqual([]);
    });

    it('cancels a batch no call waits for that still runs, deletes its files once it has ended, and deletes an upload no batch was made from', async () => {
      fake.setBatchLatency(60_000);
      const running = await leftBehind('没人等的批次', { batch: true });
      const lone = await leftBehind('没有批次的上传', { batch: false });
      const [{ before }] = await ds.query(`SELECT now()::text AS before`);
      expect(await gw.sweepProviderUploads()).toBe(1); // the lone upload
      expect(fake.files).not.toContain(lone.fileId);
      expect(fake.batches[0].status).toBe('cancelled'); // what it had not run is neither run nor billed
      // Kept, to be looked at again later: due after the sweep began (its due time, LLM_BATCH_POLL_MS
      // after the cancel, is 50 ms here; "due after now" failed on a loaded machine).
      const kept = await ds.query(`SELECT file_id, batch_id, due_at > $1::timestamptz AS later FROM provider_uploads`, [before]);
      expect(kept).toEqual([{ file_id: running.fileId, batch_id: running.batchId, later: true }]);
      await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
      expect(await gw.sweepProviderUploads()).toBe(1);
      expect(fake.files).toEqual([]);
      expect(await uploads()).toEqual([]);
    });

    it('keeps an upload whose delete failed and deletes it at a later sweep; a file already gone (404) counts as deleted', async () => {
      const left = await leftBehind('删除失败的上传', { batch: false });
      const failing = jest.spyOn(ProviderClient.prototype, 'deleteFile').mockRejectedValueOnce(new ProviderError('retryable', 'server_error', 'upstream 500', { status: 500 }));
      try {
        expect(await gw.sweepProviderUploads()).toBe(0);
      } finally {
        failing.mockRestore();
      }
      expect(fake.files).toContain(left.fileId);
      expect(await uploads()).toEqual([expect.objectContaining({ file_id: left.fileId, tries: 1, later: true })]);
      await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
      expect(await gw.sweepProviderUploads()).toBe(1);
      expect(fake.files).toEqual([]);
      // Gone already at the provider (deleted by hand, or by its expiry): struck off all the same.
      const gone = await leftBehind('已被删除的上传', { batch: false });
      const client = new ProviderClient(t.config.llm);
      await client.deleteFile(t.models.providers.get('dashscope')!, ADAPTERS.dashscope, gone.fileId);
      await client.close();
      expect(await gw.sweepProviderUploads()).toBe(1);
      expect(await uploads()).toEqual([]);
    });

    it("leaves a batch it gave up on to the sweep, which deletes the batch's answers once it has ended", async () => {
      fake.setBatchLatency(10_000);
      const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
      const provider = t.models.providers.get('dashscope')!;
      const client = new ProviderClient(t.config.llm);
      const repo = t.app.get(ProviderUploadsRepository);
      const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50, batchMaxWaitMs: 300, batchCancelWaitMs: 0 }, undefined, repo);
      try {
        const err = await collector.submit(provider, ADAPTERS.dashscope, model, { messages: [{ role: 'user', content: '放弃的批次' }], maxTokens: 50, stream: false }).catch((e: unknown) => e);
        expect((err as ProviderError).reason).toBe('batch_failed');
      } finally {
        await collector.close();
        await client.close();
      }
      const [batch] = fake.batches;
      expect(batch.status).toBe('cancelled');
      expect(fake.files).not.toContain(batch.input_file_id); // the upload deleted at once, as before
      // Its answers (the lines it ran before it was cancelled) are the sweep's: due after a poll interval, not a day.
      expect(batch.output_file_id).toEqual(expect.any(String));
      expect(fake.files).toContain(batch.output_file_id);
      expect(await uploads()).toEqual([expect.objectContaining({ file_id: batch.input_file_id, batch_id: batch.id })]);
      expect(await ds.query(`SELECT due_at < now() + interval '1 minute' AS soon FROM provider_uploads`)).toEqual([{ soon: true }]);
      await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
      expect(await gw.sweepProviderUploads()).toBe(1);
      expect(fake.files).toEqual([]);
      expect(await uploads()).toEqual([]);
    });

    it("finds an upload whose answer was lost by the name it was sent with, and deletes it; one never stored is struck off", async () => {
      const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
      const provider = t.models.providers.get('dashscope')!;
      const client = new ProviderClient(t.config.llm);
      const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50 }, undefined, t.app.get(ProviderUploadsRepository));
      // The provider stores the upload, and its answer is lost (a timeout): the calls are not sent in a batch.
      const upload = client.uploadBatchFile.bind(client);
      const lost = jest.spyOn(client, 'uploadBatchFile').mockImplementationOnce(async (...args) => {
        await upload(...args);
        throw new ProviderError('retryable', 'timeout', 'the upload took longer than its total timeout');
      });
      try {
        const err = await collector.submit(provider, ADAPTERS.dashscope, model, { messages: [{ role: 'user', content: '答复丢失的上传' }], maxTokens: 50, stream: false }).catch((e: unknown) => e);
        expect((err as ProviderError).reason).toBe('batch_failed');
      } finally {
        lost.mockRestore();
        await collector.close();
        await client.close();
      }
      expect(fake.batches).toHaveLength(0);
      expect(fake.files).toHaveLength(1); // stored at the provider, its id unknown here
      const [row] = (await ds.query(`SELECT name, file_id, due_at < now() + interval '1 minute' AS soon FROM provider_uploads`)) as Array<{ name: string; file_id: string | null; soon: boolean }>;
      expect(row).toEqual({ name: expect.stringMatching(/^inkstone-[0-9a-f-]{36}\.jsonl$/), file_id: null, soon: true });
      // Written down before it was sent, never stored (the process killed before it sent it): struck off.
      await ds.query(`INSERT INTO provider_uploads (provider, name, due_at) VALUES ('dashscope', 'inkstone-never-sent.jsonl', now())`);
      await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
      expect(await gw.sweepProviderUploads()).toBe(2);
      expect(fake.files).toEqual([]);
      expect(await uploads()).toEqual([]);
    });

    it("looks an upload up by its name a page at a time: not found within the pages it reads, or a list that is not one, is an error and the upload stays written down", async () => {
      const provider = t.models.providers.get('dashscope')!;
      const client = new ProviderClient(t.config.llm);
      const odd = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list' })));
      await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
      try {
        const name = `inkstone-${randomUUID()}.jsonl`;
        const fileId = await client.uploadBatchFile(provider, ADAPTERS.dashscope, jsonl('按名字找'), name);
        for (let i = 0; i < 100; i++) await client.uploadBatchFile(provider, ADAPTERS.dashscope, jsonl(`newer ${i}`)); // a page of newer uploads
        const paged = await client.findFileByName(provider, ADAPTERS.dashscope, name, 0, 1).catch((e: unknown) => e);
        expect((paged as ProviderError).message).toMatch(/not found in 1 pages/);
        expect(await client.findFileByName(provider, ADAPTERS.dashscope, name, 0, 2)).toBe(fileId);
        expect(await client.findFileByName(provider, ADAPTERS.dashscope, 'inkstone-none.jsonl', 0, 2)).toBeNull();
        // Read back past the time asked for: none.
        expect(await client.findFileByName(provider, ADAPTERS.dashscope, name, Date.now() + 60_000, 1)).toBeNull();
        const oddProvider = { ...provider, baseUrl: `http://127.0.0.1:${(odd.address() as AddressInfo).port}` };
        const malformed = await client.findFileByName(oddProvider, ADAPTERS.dashscope, name, 0).catch((e: unknown) => e);
        expect((malformed as ProviderError).reason).toBe('malformed_response');
        // The sweep of an upload whose id it does not know, at a provider whose list is not one: kept, looked at again later.
        await ds.query(`INSERT INTO provider_uploads (provider, name, due_at) VALUES ('dashscope', $1, now() - interval '1 second')`, [name]);
        const sweeping = new BatchCollector(client, t.config.llm, undefined, t.app.get(ProviderUploadsRepository));
        expect(await sweeping.sweepUploads(() => ({ provider: oddProvider, adapter: ADAPTERS.dashscope }))).toBe(0);
        expect(await uploads()).toEqual([expect.objectContaining({ file_id: null, tries: 1, later: true })]);
      } finally {
        odd.closeAllConnections();
        odd.close();
        await client.close();
      }
    });

    it("sends nothing when the upload cannot be written down (a database error): its calls fail batch_failed, and no file reaches the provider", async () => {
      const model = t.models.catalog.models.get('dashscope:qwen3-max')!;
      const provider = t.models.providers.get('dashscope')!;
      const client = new ProviderClient(t.config.llm);
      const repo = t.app.get(ProviderUploadsRepository);
      const collector = new BatchCollector(client, { ...t.config.llm, batchWindowMs: 10, batchPollMs: 50 }, undefined, repo);
      const down = jest.spyOn(repo, 'track').mockRejectedValueOnce(new Error('connection terminated'));
      try {
        const err = await collector.submit(provider, ADAPTERS.dashscope, model, { messages: [{ role: 'user', content: '记不下来的上传' }], maxTokens: 50, stream: false }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProviderError);
        expect((err as ProviderError).reason).toBe('batch_failed');
        expect((err as ProviderError).message).toMatch(/could not be written down: not sent/);
      } finally {
        down.mockRestore();
        await collector.close();
        await client.close();
      }
      expect(fake.files).toEqual([]);
      expect(fake.batches).toEqual([]);
      expect(await uploads()).toEqual([]);
    });

    it('gives each upload past its time to one sweep when instances sweep at once', async () => {
      await leftBehind('两个实例同时清理', { batch: false });
      const repo = t.app.get(ProviderUploadsRepository);
      const [a, b] = await Promise.all([repo.claimDue(20, 60_000), repo.claimDue(20, 60_000)]);
      expect(a.length + b.length).toBe(1);
      expect(await repo.claimDue(20, 60_000)).toEqual([]); // held by the sweep that took it
      // Held longer with each try (a provider that keeps refusing is not asked every minute), six hours at most.
      const heldFor = async () => {
        await ds.query(`UPDATE provider_uploads SET due_at = now() - interval '1 second'`);
        await repo.claimDue(20, 60_000);
        const [{ s }] = (await ds.query(`SELECT round(extract(epoch FROM due_at - now()))::int AS s FROM provider_uploads`)) as Array<{ s: number }>;
        return s;
      };
      expect(await heldFor()).toBeGreaterThanOrEqual(119); // second try: twice the hold
      expect(await heldFor()).toBeGreaterThanOrEqual(239);
      // An operator sees what is left at the providers, and what the sweep keeps failing on.
      const gauge = async () => (await t.app.get(MetricsService).registry.getSingleMetricAsString('inkstone_llm_provider_uploads')).split('\n').filter((l) => !l.startsWith('#'));
      expect(await gauge()).toEqual(['inkstone_llm_provider_uploads{state="written"} 1', 'inkstone_llm_provider_uploads{state="failing"} 1']);
      await ds.query(`UPDATE provider_uploads SET tries = 30`);
      expect(await heldFor()).toBe(21_600);
      await ds.query(`DELETE FROM provider_uploads`);
      expect(await gauge()).toEqual(['inkstone_llm_provider_uploads{state="written"} 0', 'inkstone_llm_provider_uploads{state="failing"} 0']);
    });
  });

  it('uses real time for models without batch prices or when the call cannot wait', async () => {
    const r = await ask('no batch for deepseek', { target: { model: 'deepseek:deepseek-flash' } });
    expect(r.provider).toBe('deepseek');
    const rt = await ask('real time please', { batch: false });
    expect(rt.costNanos).toBe(price(rt.usage, REALTIME));
    expect(fake.requests.filter((x) => x.batchId)).toHaveLength(0);
  });
});
