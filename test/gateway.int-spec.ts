import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { BudgetLeases } from '../src/billing/budget-leases';
import { BooksRepository, SettlingCall } from '../src/billing/books.repository';
import { LedgerEntry } from '../src/billing/ledger.service';
import { ClusterBus } from '../src/db/cluster-bus';
import { TenantsRepository } from '../src/tenancy/tenants.repository';
import { LimitsService } from '../src/tenancy/limits.service';
import { serverUrl } from './support/test-database';
import { waitFor } from './support/wait';
import { Clock } from '../src/common/clock';
import { ModelRouter } from '../src/llm/model-router';
import { planWork } from '../src/llm/work-planner';
import { formatCny } from '../src/common/money';
import { GatewayError, GatewayRequest, GatewayService, StreamInterruptedError } from '../src/llm/gateway.service';
import { estimatePromptTokens } from '../src/llm/tokens';
import { ResponseCache } from '../src/llm/response-cache';
import { validJson } from '../src/llm/chat.service';
import { countPromptTokens, countTokens, FakeProvider } from './fake-provider/fake-provider';
import { bearer, Factory, TestTenant } from './support/factories';
import { providerEnv, quick } from './support/providers';
import { OPERATOR_TOKEN, TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';

/** Prices of the built-in catalog in nano-yuan per token (CNY per million × 1000); DeepSeek's off-peak. */
const PRICE = {
  'deepseek-flash': { input: 1000n, cached: 20n, output: 4000n },
  'deepseek-flash-peak': { input: 2000n, cached: 40n, output: 8000n },
  'qwen-flash': { input: 150n, cached: 30n, output: 1500n },
  'glm-5.3-flash': { input: 800n, cached: 230n, output: 2800n },
};

/** Beijing wall-clock times (UTC+8). The gateway's clock is pinned to one so DeepSeek's price is known. */
const beijing = (local: string) => new Date(`${local}+08:00`);
const SATURDAY_MORNING = beijing('2026-11-28T10:00:00');

describe('model gateway (real PostgreSQL, fake providers over HTTP)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let gw: GatewayService;
  let ds: DataSource;
  let tenant: TestTenant;
  let clock: jest.SpyInstance<Date, []>;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake());
    f = new Factory(t.app);
    gw = t.app.get(GatewayService);
    ds = t.dataSource;
    clock = jest.spyOn(t.app.get(Clock), 'now');
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    clock.mockImplementation(() => new Date(SATURDAY_MORNING));
    fake.reset();
    gw.resetHealth();
    tenant = await f.newTenant({ monthlyBudget: '100.00' });
  });

  const ask = (content: string, extra: Partial<GatewayRequest> = {}) =>
    gw.complete({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content }], maxTokens: 200, ...extra });

  async function ledger(tenantId = tenant.tenantId) {
    // (a chat hit's row is written behind its answer)
    await t.app.get(BudgetService).ledgerWritten();
    return ds.query(
      `SELECT provider, model, outcome, error_reason, cache_status, input_tokens, cached_input_tokens, output_tokens, cost_nanos, saved_nanos, attempt, price_window
         FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`,
      [tenantId],
    );
  }

  const booksBalanced = (tenantId = tenant.tenantId) => expectBooksBalanced(ds, tenantId);

  /** Records the statements (and their parameters) that reach the pool and match `pattern`, until stop(). */
  /** A paid chat call's ledger entry, to settle on a lease directly. */
  const paidEntry = (tenantId: string, period: string, costNanos: bigint): SettlingCall => ({
    tenantId, period, callGroup: randomUUID(), attempt: 1, purpose: 'chat', cacheStatus: 'miss', outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10,
    usageSource: 'provider', costNanos, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false,
  });

  /**
   * The first call of `books[method]` runs (its statement commits) and then throws as a connection
   * reset at commit would: the caller never learns it succeeded. Later calls run as usual.
   */
  function answerLostOnce<M extends 'settle' | 'settleLeased'>(books: BooksRepository, method: M) {
    const real = (books[method] as (...a: unknown[]) => Promise<unknown>).bind(books);
    let dropped = 0;
    return jest.spyOn(books, method as 'settle').mockImplementation((async (...args: unknown[]) => {
      const out = await real(...args);
      if (dropped++ === 0) throw new Error('connection reset after commit');
      return out;
    }) as never);
  }

  /** Every settlement statement that fails, on this app and on `second` (another instance). */
  function watchSettlementFailures(second: { get: TestApp['app']['get'] }) {
    const failures: unknown[] = [];
    const watch = (books: BooksRepository) => {
      const real = books.settleLeased.bind(books);
      return jest.spyOn(books, 'settleLeased').mockImplementation((...args) => real(...args).catch((err: unknown) => { failures.push(err); throw err; }));
    };
    // (Both instances share the test's repository only if they are one module graph: watch each.)
    const spies = [watch(t.app.get(BooksRepository)), ...(second.get(BooksRepository) === t.app.get(BooksRepository) ? [] : [watch(second.get(BooksRepository))])];
    return { failures, spies };
  }

  /** Whether a statement's parameters hold `value` (alone or in an array). */
  const mentions = (params: unknown[], value: string) => params.some((p) => p === value || (Array.isArray(p) && p.includes(value)));

  /** Statements matching `pattern` (and `only`, given their parameters) sent while watched. */
  function watchStatements(pattern: RegExp, only: (params: unknown[]) => boolean = () => true) {
    const statements: Array<{ sql: string; params: unknown[]; name?: string; at: number }> = [];
    const pool = (ds.driver as unknown as { master: { query: (...args: unknown[]) => unknown } }).master;
    const query = pool.query.bind(pool);
    const spy = jest.spyOn(pool, 'query').mockImplementation((...args: unknown[]) => {
      // A statement as text and parameters, or as a named prepared statement's { name, text, values }.
      const named = typeof args[0] === 'object' && args[0] !== null ? (args[0] as { name: string; text: string; values: unknown[] }) : undefined;
      const sql = named ? named.text : args[0];
      const params = named ? named.values : (args[1] as unknown[]);
      if (typeof sql === 'string' && pattern.test(sql) && only(params ?? [])) statements.push({ sql, params, name: named?.name, at: Date.now() });
      return query(...args);
    });
    return { statements, stop: () => spy.mockRestore() };
  }

  describe('pricing', () => {
    it('prices a call exactly from the provider-reported usage and the catalog', async () => {
      const r = await ask('请用一句话介绍长城。');
      expect(r.provider).toBe('deepseek');
      const prompt = countPromptTokens([{ content: '请用一句话介绍长城。' }]);
      const output = countTokens(r.content);
      expect(r.usage).toEqual({ inputTokens: prompt, cachedInputTokens: 0, outputTokens: output });
      const expected = BigInt(prompt) * PRICE['deepseek-flash'].input + BigInt(output) * PRICE['deepseek-flash'].output;
      expect(r.costNanos).toBe(expected);
      const rows = await ledger();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'ok', cache_status: 'bypass', cost_nanos: expected.toString(), input_tokens: prompt, output_tokens: output, price_window: null });
      await booksBalanced();
    });

    it('prices each call by the time-of-day window it ran in, on either side of a boundary and across a weekend', async () => {
      const content = '请用一句话介绍黄山。';
      const prompt = BigInt(countPromptTokens([{ content }]));
      const cases: Array<[string, string | null]> = [
        ['2026-11-27T17:59:59', 'peak'], // Friday, last second of the afternoon peak
        ['2026-11-27T18:00:00', null], // Friday evening
        ['2026-11-28T10:00:00', null], // Saturday
        ['2026-11-29T23:59:59', null], // Sunday night
        ['2026-11-30T08:59:59', null], // Monday, a second before the peak
        ['2026-11-30T09:00:00', 'peak'], // Monday, the peak starts
        ['2026-11-30T12:00:00', null], // lunch
        ['2026-10-01T10:00:00', null], // National Day, a Thursday
      ];
      const costs: bigint[] = [];
      for (const [local, window] of cases) {
        clock.mockImplementation(() => beijing(local));
        const r = await ask(content);
        const p = window === 'peak' ? PRICE['deepseek-flash-peak'] : PRICE['deepseek-flash'];
        expect(r.costNanos).toBe(prompt * p.input + BigInt(r.usage.outputTokens) * p.output);
        costs.push(r.costNanos);
      }
      const rows = await ledger();
      expect(rows.map((r: { price_window: string | null }) => r.price_window)).toEqual(cases.map(([, w]) => w));
      expect(costs[0]).toBe(costs[1] * 2n);
      await booksBalanced();
    });

    it('prices a call by the window it is sent in: admitted a second before the peak, sent after a wait for its provider slot, it is a peak call (whole and streamed)', async () => {
      const content = '排队等到高峰';
      const prompt = BigInt(countPromptTokens([{ content }]));
      const peak = PRICE['deepseek-flash-peak'];
      const limits = t.app.get(LimitsService);
      const waiting = () => (limits as unknown as { waiters: { providerCalls: Map<string, unknown[]> } }).waiters.providerCalls.get(tenant.tenantId)?.length ?? 0;
      const setLimits = (l: Record<string, number | null>) => t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send(l).expect(200);
      await setLimits({ providerCalls: 1 });
      try {
        for (const streamed of [false, true]) {
          clock.mockImplementation(() => beijing('2026-11-30T08:59:59')); // Monday, off-peak
          const release = await limits.providerSlot(tenant.tenantId);
          const call = streamed
            ? (async () => {
                let text = '';
                for await (const ev of gw.stream({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content }], maxTokens: 200 })) {
                  if (ev.type === 'delta') text += ev.text;
                }
                return text;
              })()
            : ask(content).then((r) => r.content);
          await waitFor(() => waiting() === 1, 5_000, 'the call waiting for its provider slot');
          clock.mockImplementation(() => beijing('2026-11-30T09:00:05')); // the peak has started
          release();
          const text = await call;
          const rows = await ledger();
          const row = rows[rows.length - 1];
          expect(row.price_window).toBe('peak');
          expect(BigInt(row.cost_nanos)).toBe(prompt * peak.input + BigInt(countTokens(text)) * peak.output);
        }
      } finally {
        await setLimits({ providerCalls: null });
      }
      await booksBalanced();
    });

    it('plans scheduled work on the cheapest model of the first group it can run on, and sends the call there first', async () => {
      const flash = t.models.catalog.models.get('deepseek:deepseek-flash')!;
      const qwen = t.models.catalog.models.get('dashscope:qwen-flash')!;
      // One priority group of two alternatives, as LLM_STANDARD_MODELS='deepseek:deepseek-flash|dashscope:qwen-flash' makes it.
      const models = { ...t.models, tiers: { ...t.models.tiers, standard: [[{ model: flash, weight: 1 }, { model: qwen, weight: 1 }]] } };
      const router = new ModelRouter(models, t.app.get(Clock), 1000);
      clock.mockImplementation(() => beijing('2026-11-30T10:15:00')); // Monday, DeepSeek's peak
      const messages = [{ role: 'user' as const, content: '一篇要在明天早上之前批改的作文。'.repeat(20) }];
      const dueBy = beijing('2026-12-01T08:00:00');
      const timing = { batchTurnaroundMs: 24 * 3_600_000, marginMs: 30 * 60_000 };
      const each = [flash, qwen].map((model) => {
        const b = router.bound(model, messages, 500);
        return planWork({ model, now: beijing('2026-11-30T10:15:00'), dueBy, inputTokens: b.estimate, outputTokens: b.maxTokens, ...timing });
      });
      const cheapest = each.reduce((a, b) => (b.expectedNanos < a.expectedNanos ? b : a));
      // Whichever order the weights draw, the plan is the cheapest one (it was the first drawn: either, half the time).
      const planned = new Set(Array.from({ length: 40 }, () => router.plan({ tier: 'standard' }, messages, 500, dueBy, timing)!.model));
      expect([...planned]).toEqual([cheapest.model]);
      // A model whose breaker is open is planned on only when no other can take it.
      const other = each.find((p) => p.model !== cheapest.model)!;
      expect(router.plan({ tier: 'standard' }, messages, 500, dueBy, timing, (m) => m.key !== cheapest.model)!.model).toBe(other.model);
      expect(router.plan({ tier: 'standard' }, messages, 500, dueBy, timing, () => false)!.model).toBe(cheapest.model);
      // The call goes to the planned model first, whatever the draw.
      for (let i = 0; i < 20; i++) expect(router.candidates({ tier: 'standard' }, [], 'dashscope:qwen-flash')[0].key).toBe('dashscope:qwen-flash');
      const r = await ask('to the planned model', { prefer: 'dashscope:qwen-flash' });
      expect(r.provider).toBe('dashscope'); // the tier's first group is DeepSeek's
    });

    it('reserves at the highest window price, so a call admitted off-peak is covered at peak too', async () => {
      const content = '预算边界';
      const model = t.models.catalog.models.get('deepseek:deepseek-flash')!;
      const estimate = BigInt(estimatePromptTokens([{ role: 'user', content }], model.tokenizer));
      const offPeakWorst = estimate * PRICE['deepseek-flash'].input + 200n * PRICE['deepseek-flash'].output;
      const peakWorst = estimate * PRICE['deepseek-flash-peak'].input + 200n * PRICE['deepseek-flash-peak'].output;
      const between = await f.newTenant({ monthlyBudget: formatCny((offPeakWorst + peakWorst) / 2n) });
      const err = await gw.complete({ tenantId: between.tenantId, purpose: 'chat', target: { model: 'deepseek:deepseek-flash' }, messages: [{ role: 'user', content }], maxTokens: 200 }).catch((e) => e);
      expect(err).toMatchObject({ code: 'BUDGET_EXHAUSTED' });
      expect(fake.requests).toHaveLength(0);
      const enough = await f.newTenant({ monthlyBudget: formatCny(peakWorst) });
      const r = await gw.complete({ tenantId: enough.tenantId, purpose: 'chat', target: { model: 'deepseek:deepseek-flash' }, messages: [{ role: 'user', content }], maxTokens: 200 });
      expect(r.costNanos).toBeLessThanOrEqual(offPeakWorst);
      await booksBalanced(enough.tenantId);
    });

    it('drops NUL from a model answer, which PostgreSQL could not store, and caches the rest', async () => {
      fake.enqueue('deepseek', { kind: 'ok', content: 'before\u0000after' });
      const r = await ask('nul', { cache: { key: 'k-nul', lookup: true, store: true } });
      expect(r.content).toBe('beforeafter');
      const again = await ask('nul', { cache: { key: 'k-nul', lookup: true, store: true } });
      expect(again).toMatchObject({ cache: 'hit', content: 'beforeafter' });
      await booksBalanced();
    });

    it('says when an answer came from its repair, and a cache hit of it says so too', async () => {
      fake.enqueue('deepseek', [{ kind: 'ok', content: 'not json' }, { kind: 'ok', content: '{"ok":true}' }]);
      const request = {
        cache: { key: 'k-repaired', lookup: true, store: true },
        validate: (c: string) => (c.startsWith('{') ? { ok: true as const, value: c } : { ok: false as const, problem: 'not JSON' }),
        repair: () => [{ role: 'user' as const, content: 'answer in JSON' }],
      };
      const first = await ask('repair me', request);
      expect(first).toMatchObject({ content: '{"ok":true}', repaired: true, cache: 'miss' });
      // Its cost is what the call was charged: the invalid answer and the repair, as the ledger has them.
      const rows: Array<{ cost: string }> = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [tenant.tenantId, first.callGroup]);
      expect(rows).toHaveLength(2);
      expect(first.costNanos).toBe(rows.reduce((a, r) => a + BigInt(r.cost), 0n));
      // What a hit on the answer saves is the answer's own cost, not the failed attempt's too.
      const [kept] = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-repaired'`, [tenant.tenantId]);
      expect(BigInt(kept.cost)).toBeLessThan(first.costNanos);
      const hit = await ask('repair me', request);
      expect(hit).toMatchObject({ cache: 'hit', repaired: true, savedNanos: BigInt(kept.cost) });
      fake.enqueue('deepseek', { kind: 'ok', content: '{"clean":true}' });
      expect(await ask('clean', { ...request, cache: { key: 'k-clean', lookup: true, store: true } })).toMatchObject({ repaired: false });
      await booksBalanced();
    });

    it('answers a request for a retired model with its replacement, and never calls the provider', async () => {
      const err = await ask('hi', { target: { model: 'qwen-turbo' } }).catch((e) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(err).toMatchObject({ code: 'MODEL_NOT_FOUND', message: 'dashscope:qwen-turbo was retired by its provider on 2026-10-10; use dashscope:qwen-flash instead' });
      expect(fake.requests).toHaveLength(0);
    });

    it('skips a tier model that retires while the process runs', async () => {
      const flash = t.models.catalog.models.get('deepseek:deepseek-flash')!;
      const saved = flash.retiresOn;
      flash.retiresOn = beijing('2026-11-28T09:00:00'); // retired an hour before the pinned clock
      try {
        expect(gw.candidates({ tier: 'standard' }).map((m) => m.key)).toEqual(['dashscope:qwen-flash', 'zhipu:glm-5.3-flash']);
        const r = await ask('still answered');
        expect(r.provider).toBe('dashscope');
      } finally {
        flash.retiresOn = saved;
      }
    });

    it('prices cached input tokens at their own rate (provider prefix cache)', async () => {
      const system = '你是一位严谨的语文老师。'.repeat(40);
      const first = await ask('第一篇', { messages: [{ role: 'system', content: system }, { role: 'user', content: '第一篇作文' }] });
      expect(first.usage.cachedInputTokens).toBe(0);
      const second = await ask('第二篇', { messages: [{ role: 'system', content: system }, { role: 'user', content: '第二篇完全不同的作文内容' }] });
      const cached = second.usage.cachedInputTokens;
      expect(cached).toBeGreaterThanOrEqual(64);
      expect(cached % 64).toBe(0);
      const p = PRICE['deepseek-flash'];
      expect(second.costNanos).toBe(
        BigInt(second.usage.inputTokens - cached) * p.input + BigInt(cached) * p.cached + BigInt(second.usage.outputTokens) * p.output,
      );
      const rows = await ledger();
      expect(rows[1].cached_input_tokens).toBe(cached);
      await booksBalanced();
    });

    it('prices a streamed call from the usage chunk', async () => {
      const events = [];
      for await (const ev of gw.stream({ tenantId: tenant.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'stream me' }], maxTokens: 100 })) {
        events.push(ev);
      }
      const end = events.at(-1)!;
      if (end.type !== 'end') throw new Error('no end event');
      const text = events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join('');
      expect(text).toBe(end.result.content);
      const prompt = countPromptTokens([{ content: 'stream me' }]);
      expect(end.result.usage).toEqual({ inputTokens: prompt, cachedInputTokens: 0, outputTokens: countTokens(text) });
      expect(end.result.costNanos).toBe(BigInt(prompt) * PRICE['qwen-flash'].input + BigInt(countTokens(text)) * PRICE['qwen-flash'].output);
      await booksBalanced();
    });

    it('settles a stream its reader abandons at its first event: the provider slot freed, the reservation settled, one row', async () => {
      fake.enqueue('dashscope', { kind: 'stream', content: 'one two three four', chunks: 4, chunkDelayMs: 50 });
      const limits = t.app.get(LimitsService);
      const stream = gw.stream({ tenantId: tenant.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'left at the start' }], maxTokens: 100 });
      const first = await stream.next();
      expect(first.value).toMatchObject({ type: 'start', cache: 'miss' });
      await stream.return(undefined); // the reader stops there (its loop broke or threw)
      const rows = await ledger();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'cancelled' });
      expect((await limits.view(tenant.tenantId)).usage.providerCalls).toBe(0);
      const { held, available } = t.app.get(BudgetService).leases!.holding(tenant.tenantId);
      expect(held).toBe(available);
      await booksBalanced();
    });

    it('caches no stream its reader left before the end, even one whose every chunk carries its usage so far (vLLM)', async () => {
      const req = () => ({
        tenantId: tenant.tenantId,
        purpose: 'chat' as const,
        target: { model: 'dashscope:qwen-flash' },
        messages: [{ role: 'user' as const, content: 'left half way' }],
        maxTokens: 100,
        cache: { key: `left-half-way-${tenant.tenantId}`, lookup: true, store: true },
      });
      fake.enqueue('dashscope', { kind: 'stream', content: 'one two three four five six', chunks: 6, chunkDelayMs: 30, usageEveryChunk: true });
      const stream = gw.stream(req());
      const seen: string[] = [];
      for (;;) {
        const next = await stream.next();
        if (next.done) break;
        if (next.value.type === 'delta') seen.push(next.value.text);
        if (seen.length === 3) break; // the client leaves after its third piece
      }
      await stream.return(undefined);
      const [row] = await ledger();
      expect(row).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'cancelled' });
      expect(Number(row.output_tokens)).toBeGreaterThan(0); // billed at the usage the chunks said so far
      // The same request again is asked of the provider: the half answer was not stored as the whole.
      const again: string[] = [];
      for await (const ev of gw.stream(req())) if (ev.type === 'start') again.push(ev.cache);
      expect(again).toEqual(['miss']);
      expect(fake.requests).toHaveLength(2);
      await booksBalanced();
    });
  });

  describe('errors, retries and fallback', () => {
    it('retries a rate limit on the same model, then succeeds (every attempt in the ledger)', async () => {
      fake.enqueue('deepseek', [{ kind: 'preset', name: 'rate_limit', headers: quick }, { kind: 'preset', name: 'server_error' }]);
      const r = await ask('retry me');
      expect(r.provider).toBe('deepseek');
      expect(r.attempts).toBe(3);
      expect((await ledger()).map((x: { outcome: string; error_reason: string }) => `${x.outcome}:${x.error_reason ?? ''}`)).toEqual([
        'retryable:rate_limited',
        'retryable:server_error',
        'ok:',
      ]);
      await booksBalanced();
    });

    it('honours Retry-After before retrying', async () => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'rate_limit', headers: { 'retry-after': '1' } });
      const t0 = Date.now();
      await ask('slow down');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    });

    it('falls back in tier order when a model keeps failing', async () => {
      fake.enqueue('deepseek', Array(3).fill({ kind: 'preset', name: 'overloaded' }));
      fake.enqueue('dashscope', { kind: 'preset', name: 'limit_requests', headers: quick });
      const r = await ask('fall back');
      expect(r.provider).toBe('dashscope');
      expect((await ledger()).map((x: { provider: string; outcome: string }) => `${x.provider}:${x.outcome}`)).toEqual([
        'deepseek:retryable',
        'deepseek:retryable',
        'deepseek:retryable',
        'dashscope:retryable',
        'dashscope:ok',
      ]);
      await booksBalanced();
    });

    it('goes to the next model at once on a context-length error, without retrying', async () => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'context_length' });
      const r = await ask('too long for deepseek');
      expect(r.provider).toBe('dashscope');
      expect((await ledger()).map((x: { outcome: string }) => x.outcome)).toEqual(['fallback', 'ok']);
    });

    it('takes a provider with no balance out until a probe succeeds', async () => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'insufficient_balance' });
      expect((await ask('one')).provider).toBe('dashscope');
      expect((await ask('two')).provider).toBe('dashscope'); // deepseek is out: not even tried
      expect(fake.requests.filter((r) => r.dialect === 'deepseek')).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 350)); // LLM_PROVIDER_PROBE_MS
      expect((await ask('three')).provider).toBe('deepseek'); // the probe succeeds: back in
      expect((await ask('four')).provider).toBe('deepseek');
      await booksBalanced();
    });

    it.each([
      ['zhipu', 'arrears'],
      ['dashscope', 'arrearage'],
      ['openai', 'insufficient_quota'],
    ] as const)('treats %s %s as an empty account', async (dialect, preset) => {
      const model = { zhipu: 'zhipu:glm-5.3-flash', dashscope: 'dashscope:qwen-flash', openai: 'openai:gpt-6-luna' }[dialect];
      fake.enqueue(dialect, { kind: 'preset', name: preset });
      await expect(ask('x', { target: { model } })).rejects.toMatchObject({ code: 'NO_PROVIDER_AVAILABLE' });
      expect(gw.providerBreaker.state(dialect)).toBe('open');
    });

    it("retries DashScope's per-minute insufficient_quota instead of taking the provider out", async () => {
      fake.enqueue('dashscope', { kind: 'preset', name: 'insufficient_quota', headers: quick });
      const r = await ask('quota', { target: { model: 'dashscope:qwen-flash' } });
      expect(r.provider).toBe('dashscope');
      expect(gw.providerBreaker.state('dashscope')).toBe('closed');
    });

    it('tries the next provider on a content rejection and reports it when all refuse', async () => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'content_risk' });
      expect((await ask('sensitive?')).provider).toBe('dashscope');
      fake.enqueue('deepseek', { kind: 'preset', name: 'content_risk' });
      fake.enqueue('dashscope', { kind: 'preset', name: 'data_inspection_failed' });
      fake.enqueue('zhipu', { kind: 'preset', name: 'content_filter' });
      const err = await ask('refused everywhere').catch((e) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(err.code).toBe('CONTENT_REJECTED');
      expect(err.tried).toEqual(['deepseek:deepseek-flash', 'dashscope:qwen-flash', 'zhipu:glm-5.3-flash']);
      await booksBalanced();
    });

    it('retries and fails over on an error sent inside a 200 answer, as on a 500 (not a 400 for a passing fault)', async () => {
      const inBand = { kind: 'error', status: 200, body: { error: { message: 'The server had an error while processing your request', type: 'server_error' } } } as const;
      fake.enqueue('deepseek', [inBand, inBand, inBand]);
      const r = await ask('in-band error');
      expect(r.provider).toBe('dashscope');
      expect((await ledger()).map((x: { outcome: string; error_reason: string }) => `${x.outcome}:${x.error_reason ?? ''}`)).toContain('retryable:server_error');
      await booksBalanced();
    });

    it('stops at once on a request every provider would refuse (fatal)', async () => {
      fake.enqueue('deepseek', { kind: 'error', status: 422, body: { error: { message: 'Invalid Parameters', type: 'invalid_request_error', code: 'invalid_request_error' } } });
      await expect(ask('bad')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      expect(fake.requests).toHaveLength(1);
    });

    it("treats DeepSeek's blank JSON-mode answer as a failure, bills it, and falls back", async () => {
      fake.enqueue('deepseek', { kind: 'blank-json' });
      const r = await ask('json please', { jsonMode: true, messages: [{ role: 'user', content: 'Answer in json: {"a":1}' }] });
      expect(r.provider).toBe('dashscope');
      const rows = await ledger();
      expect(rows[0]).toMatchObject({ provider: 'deepseek', outcome: 'fallback', error_reason: 'blank_output' });
      expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n); // the tokens were produced and billed
      await booksBalanced();
    });

    it("bounds a DashScope JSON-mode call on the prompt it is sent, the word 'json' added: no budget incident, the tenant not paused", async () => {
      // No message says "json": the adapter adds a system message saying so, and the provider counts it.
      const r = await ask('hi', { jsonMode: true, target: { model: 'dashscope:qwen-flash' }, maxTokens: 50 });
      expect(JSON.parse(r.content)).toBeTruthy();
      const [sent] = fake.requests.filter((x) => x.dialect === 'dashscope');
      expect(sent.body.messages[0]).toMatchObject({ role: 'system', content: 'Answer in JSON.' });
      // Admitted on the bound of what was sent (before, of the teacher's message alone).
      const tokenizer = t.models.catalog.models.get('dashscope:qwen-flash')!.tokenizer;
      const [row] = await ds.query(`SELECT input_tokens, estimated_input_tokens FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(row.estimated_input_tokens).toBe(estimatePromptTokens([{ role: 'system', content: 'Answer in JSON.' }, { role: 'user', content: 'hi' }], tokenizer));
      expect(row.estimated_input_tokens).toBeGreaterThan(estimatePromptTokens([{ role: 'user', content: 'hi' }], tokenizer));
      expect(row.input_tokens).toBeLessThanOrEqual(row.estimated_input_tokens);
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM budget_incidents WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(n).toBe(0);
      await booksBalanced();
    });

    it('reads a body that DeepSeek pads with blank lines while it works', async () => {
      fake.enqueue('deepseek', { kind: 'ok', content: 'padded answer', blankLinesBefore: 5, latencyMs: 200 });
      expect((await ask('pad')).content).toBe('padded answer');
    });

    it('times out a provider that never answers and falls back', async () => {
      fake.enqueue('deepseek', Array(3).fill({ kind: 'hang' }));
      const r = await ask('hello?', { maxTokens: 50 });
      expect(r.provider).toBe('dashscope');
      const rows = await ledger();
      expect(rows.filter((x: { error_reason: string }) => x.error_reason === 'timeout').length).toBeGreaterThanOrEqual(1);
      await booksBalanced();
    }, 30_000);

    it('times out a provider whose answer trickles in past the total timeout and falls back', async () => {
      // Headers at once, then a blank line every 500 ms: neither the first-byte (1.5 s) nor the body-idle
      // timeout fires, only the total one (LLM_TOTAL_TIMEOUT_MS, 4 s in tests).
      fake.enqueue('deepseek', Array(3).fill({ kind: 'ok', content: 'too late', latencyMs: 6_000, blankLinesBefore: 12 }));
      const r = await ask('slowly?', { maxTokens: 50 });
      expect(r.provider).toBe('dashscope');
      expect(r.content).not.toBe('too late');
      const rows = await ledger();
      expect(rows.filter((x: { provider: string; error_reason: string }) => x.provider === 'deepseek' && x.error_reason === 'timeout').length).toBeGreaterThanOrEqual(1);
      await booksBalanced();
    }, 40_000);

    it("in JSON mode, an answer cut by a model's own lower output limit (not the caller's max_tokens) goes on to the next model", async () => {
      // qwen-flash writes at most 32,768 tokens: asked for 50,000, it was cut at its own limit; deepseek-flash writes 384,000.
      fake.enqueue('dashscope', { kind: 'ok', content: '{"essay": "a long one, cut', finishReason: 'length' });
      const r = await ask('json, long', { jsonMode: true, validate: validJson, maxTokens: 50_000, prefer: 'dashscope:qwen-flash' });
      expect(r.provider).toBe('deepseek');
      expect(JSON.parse(r.content)).toEqual(expect.any(Object));
      // Cut at the caller's own bound, it is the caller's to raise: a 400 at once, the next model not tried.
      fake.enqueue('dashscope', { kind: 'ok', content: '{"essay": "cut', finishReason: 'length' });
      const before = fake.requests.length;
      const err = await ask('json, short', { jsonMode: true, validate: validJson, maxTokens: 100, prefer: 'dashscope:qwen-flash' }).catch((e) => e);
      expect([err.code, fake.requests.length - before]).toEqual(['INVALID_REQUEST', 1]);
      expect(err.message).toMatch(/max_tokens \(100\)/);
    });

    it('stops at once, without failing over, when the caller goes away during the call', async () => {
      fake.enqueue('deepseek', { kind: 'hang' });
      const caller = new AbortController();
      setTimeout(() => caller.abort(new Error('client closed')), 300);
      const err = await ask('never mind', { signal: caller.signal }).catch((e) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(err.message).toMatch(/cancelled/);
      expect(fake.requests.filter((x) => x.dialect !== 'deepseek')).toHaveLength(0); // no failover
      // One attempt, ended by the caller (not by a timeout first), charged the prompt it had sent
      // (the provider read it), as bounded at admission.
      const rows = await ledger();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ provider: 'deepseek', outcome: 'fatal', error_reason: 'cancelled' });
      expect(BigInt(rows[0].cost_nanos)).toBeGreaterThan(0n);
      await booksBalanced();
      // A job's call the platform stops (its worker stopping, its lease lost) is not the school's to pay: its retry is.
      fake.enqueue('deepseek', { kind: 'hang' });
      const stopping = new AbortController();
      setTimeout(() => stopping.abort(new Error('worker stopping')), 300);
      await ask('never mind, grading', { signal: stopping.signal, purpose: 'grading' }).catch((e) => e);
      const [, stopped] = await ledger();
      expect(stopped).toMatchObject({ provider: 'deepseek', outcome: 'fatal', error_reason: 'cancelled', cost_nanos: '0' });
      await booksBalanced();
    });

    it.each([
      ['during the wait before a retry', (caller: AbortController) => setTimeout(() => caller.abort(new Error('client closed')), 300)],
      ['before the call', (caller: AbortController) => caller.abort(new Error('client closed'))],
    ])('charges nothing for a call never sent: the caller went away %s', async (_when, leave) => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'rate_limit', headers: { 'retry-after': '1' } });
      const caller = new AbortController();
      const before = fake.requests.length;
      leave(caller);
      const err = await ask('never mind', { signal: caller.signal }).catch((e) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(err.message).toMatch(/cancelled/);
      const sent = fake.requests.length - before;
      // Before, the attempt after the wait (or the first, its signal aborted already) was refused by
      // undici before anything left, and billed as a prompt the provider had read.
      const rows = await ledger();
      expect(rows.length).toBeLessThanOrEqual(sent + 1);
      for (const r of rows.slice(sent)) expect(r.cost_nanos).toBe('0');
      await booksBalanced();
      fake.reset();
    });

    it('survives a connection reset', async () => {
      fake.enqueue('deepseek', { kind: 'reset' });
      const r = await ask('reset');
      expect(r.provider).toBe('deepseek');
      expect((await ledger())[0]).toMatchObject({ outcome: 'retryable', error_reason: 'network' });
    });
  });

  describe('circuit breaker', () => {
    it('opens after repeated failures, probes after the cooldown, and closes again', async () => {
      fake.enqueue('deepseek', Array(3).fill({ kind: 'preset', name: 'server_error' }));
      expect((await ask('a')).provider).toBe('dashscope');
      expect(gw.modelBreaker.state('deepseek:deepseek-flash')).toBe('open');
      const before = fake.requests.filter((r) => r.dialect === 'deepseek').length;
      expect((await ask('b')).provider).toBe('dashscope'); // open: deepseek is skipped
      expect(fake.requests.filter((r) => r.dialect === 'deepseek').length).toBe(before);
      await new Promise((r) => setTimeout(r, 320));
      fake.enqueue('deepseek', { kind: 'preset', name: 'server_error' });
      expect((await ask('c')).provider).toBe('dashscope'); // the half-open probe fails: open again
      expect(gw.modelBreaker.state('deepseek:deepseek-flash')).toBe('open');
      await new Promise((r) => setTimeout(r, 320));
      expect((await ask('d')).provider).toBe('deepseek'); // the probe succeeds: closed
      expect(gw.modelBreaker.state('deepseek:deepseek-flash')).toBe('closed');
    });
  });

  describe('streams', () => {
    const stream = async (extra: Partial<GatewayRequest> = {}) => {
      const out: string[] = [];
      let start: string | undefined;
      try {
        for await (const ev of gw.stream({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'tell me' }], maxTokens: 100, ...extra })) {
          if (ev.type === 'start') start = ev.provider;
          if (ev.type === 'delta') out.push(ev.text);
        }
        return { start, text: out.join(''), error: undefined };
      } catch (error) {
        return { start, text: out.join(''), error };
      }
    };

    it('fails over before the first token', async () => {
      fake.enqueue('deepseek', { kind: 'preset', name: 'insufficient_balance' });
      const r = await stream();
      expect(r.error).toBeUndefined();
      expect(r.start).toBe('dashscope');
      expect(r.text.length).toBeGreaterThan(0);
    });

    it('reads through keep-alive comments', async () => {
      fake.enqueue('deepseek', { kind: 'stream', content: 'alive and well', keepAliveComments: 3, chunks: 3 });
      expect(await stream()).toMatchObject({ start: 'deepseek', text: 'alive and well', error: undefined });
    });

    it('ends with an error after the first token, never a silent success, and bills what was produced', async () => {
      fake.enqueue('deepseek', { kind: 'stream', content: 'one two three four five six', chunks: 6, cutAfterChunks: 2 });
      const r = await stream();
      expect(r.start).toBe('deepseek');
      expect(r.text.length).toBeGreaterThan(0);
      expect(r.error).toBeInstanceOf(StreamInterruptedError);
      expect(fake.requests.filter((x) => x.dialect === 'dashscope')).toHaveLength(0); // no failover after the first token
      const [row] = await ledger();
      expect(row).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'stream_cut' });
      expect(BigInt(row.cost_nanos)).toBeGreaterThan(0n);
      await booksBalanced();
    });

    it('bills a broken stream at most max_tokens of output when no usage came: never past the bound it was admitted with', async () => {
      // 40 Chinese characters a chunk, cut after three: far more bytes than max_tokens allows tokens.
      fake.enqueue('deepseek', { kind: 'stream', content: '这是一篇很长的回答'.repeat(20), chunks: 4, cutAfterChunks: 3 });
      const r = await stream({ maxTokens: 20 });
      expect(r.error).toBeInstanceOf(StreamInterruptedError);
      const [row] = await ledger();
      expect(row).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'stream_cut' });
      expect(row.output_tokens).toBe(20);
      // Priced within its bound: no budget incident, the tenant's admission not paused.
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM budget_incidents WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(n).toBe(0);
      await booksBalanced();
    });

    const usageOfRow = async () => {
      await t.app.get(BudgetService).ledgerWritten();
      return ds.query(
        `SELECT outcome, error_reason, usage_source, input_tokens, output_tokens, cost_nanos::text FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`,
        [tenant.tenantId],
      );
    };

    it("does not count streams cut by the total timeout while their tokens still came against the model's breaker: one tenant's long answers do not take the model from every tenant", async () => {
      const breaker = (gw as unknown as { health: { models: { failure(key: string): void } } }).health.models;
      const failures = jest.spyOn(breaker, 'failure');
      try {
        // As many long answers as the breaker's threshold (3 in tests), a token every 500 ms, past the 4 s total timeout.
        fake.enqueue('deepseek', Array(3).fill({ kind: 'stream', content: '一二三四五六七八九十壹贰', chunks: 12, chunkDelayMs: 500 }));
        const broken = await Promise.all([1, 2, 3].map(() => stream()));
        for (const r of broken) {
          expect(r.start).toBe('deepseek');
          expect(r.error).toBeInstanceOf(StreamInterruptedError);
          expect((r.error as StreamInterruptedError).reason).toBe('total_timeout');
        }
        expect(failures.mock.calls.filter(([key]) => key === 'deepseek:deepseek-flash')).toEqual([]);
        // The next tenant's call still goes to the model.
        const other = await f.newTenant({ monthlyBudget: '100.00' });
        const r = await gw.complete({ tenantId: other.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'still there?' }], maxTokens: 50 });
        expect(r.provider).toBe('deepseek');
        await booksBalanced();
      } finally {
        failures.mockRestore();
      }
    }, 30_000);

    it("treats Zhipu's 'sensitive' stop before any content as a content rejection, billed at the usage in its stop chunk", async () => {
      fake.enqueue('zhipu', { kind: 'preset', name: 'stream_sensitive' });
      const r = await stream({ target: { model: 'zhipu:glm-5.3-flash' } });
      expect(r.error).toMatchObject({ code: 'CONTENT_REJECTED' });
      // Zhipu sends its usage in the chunk that stops: the provider bills the prompt, so does the ledger.
      const [row] = await usageOfRow();
      expect(row).toMatchObject({ outcome: 'content_rejected', error_reason: 'content_filter', usage_source: 'provider' });
      expect(row.input_tokens).toBeGreaterThan(0);
      expect(BigInt(row.cost_nanos)).toBeGreaterThan(0n);
      await booksBalanced();
    });

    it('bills a stream the content filter stops mid-way at the usage the provider sends after the stop, not an estimate', async () => {
      fake.enqueue('deepseek', { kind: 'stream', content: 'one two three four five six', chunks: 3, finishReason: 'content_filter' });
      const r = await stream();
      expect(r.start).toBe('deepseek');
      expect(r.text).toBe('one two three four five six');
      expect(r.error).toBeInstanceOf(StreamInterruptedError);
      const [row] = await usageOfRow();
      expect(row).toMatchObject({ outcome: 'stream_interrupted', error_reason: 'content_filter', usage_source: 'provider' });
      expect(BigInt(row.cost_nanos)).toBeGreaterThan(0n);
      await booksBalanced();
    });
  });

  describe('cache', () => {
    const cached = (content: string, key: string, lookup = true) =>
      ask(content, { cache: { key, lookup, store: true } });

    it('never serves a cached answer unchecked: one of a model no longer in the catalog (nothing to check it with) is a miss', async () => {
      const cache = t.app.get(ResponseCache);
      await cache.put(
        tenant.tenantId,
        'k-gone-model',
        { content: 'stale', provider: 'deepseek', model: 'deepseek-retired-9', finishReason: 'stop', usage: { inputTokens: 5, cachedInputTokens: 0, outputTokens: 5 }, costNanos: 100n, repaired: false },
        3600,
      );
      const checked: string[] = [];
      const r = await ask('a question once answered by a model now gone', {
        cache: { key: 'k-gone-model', lookup: true, store: true },
        validate: (content) => {
          checked.push(content);
          return content === 'stale' ? { ok: false, problem: 'stale' } : { ok: true, value: content };
        },
      });
      expect(r.cache).toBe('miss');
      expect(r.content).not.toBe('stale');
      expect(fake.requests).toHaveLength(1);
      await booksBalanced();
    });

    it("checks a shared in-flight answer with each joiner's own validation: one it fails makes its own call", async () => {
      fake.setLatency(300); // (reset before the next test)
      const ok = (content: string) => ({ ok: true as const, value: content });
      const leader = ask('the same key, two essays', { cache: { key: 'k-join-check', lookup: true, store: true }, validate: ok });
      await waitFor(() => fake.requests.length === 1, 5_000, 'the leader at the provider');
      let joinerChecks = 0;
      // The joiner's text differs from the leader's (the key is the same): the leader's answer does not hold for it.
      const joiner = ask('the same key, two essays', {
        cache: { key: 'k-join-check', lookup: true, store: true },
        validate: (content) => (joinerChecks++ === 0 ? { ok: false, problem: 'quotes another text' } : ok(content)),
      });
      const [l, j] = await Promise.all([leader, joiner]);
      expect(l.cache).toBe('miss');
      expect(j.cache).toBe('miss');
      expect(joinerChecks).toBe(2); // the leader's answer, then its own
      expect(fake.requests).toHaveLength(2);
      await booksBalanced();
    });

    it('answers an exact repeat from the cache at cost 0, recording what it saved', async () => {
      const first = await cached('what is 2+2?', 'k-math');
      const second = await cached('what is 2+2?', 'k-math');
      expect(second.cache).toBe('hit');
      expect(second.content).toBe(first.content);
      expect(second.costNanos).toBe(0n);
      expect(second.savedNanos).toBe(first.costNanos);
      expect(fake.requests).toHaveLength(1);
      const rows = await ledger();
      expect(rows.map((r: { cache_status: string; cost_nanos: string; saved_nanos: string }) => [r.cache_status, r.cost_nanos, r.saved_nanos])).toEqual([
        ['miss', first.costNanos.toString(), '0'],
        ['hit', '0', first.costNanos.toString()],
      ]);
      await booksBalanced();
    });

    it("writes a hit's ledger row without locking or writing the tenant's budget period or lease (a hit never waits behind a paid settlement)", async () => {
      const first = await cached('what is 3+3?', 'k-nolock');
      // The row versions as they stand: an UPDATE makes a new one (xmin), a FOR UPDATE lock marks it (xmax).
      const versions = () =>
        ds.query(
          `SELECT 'period' AS what, xmin::text, xmax::text, spent_nanos::text AS amount FROM budget_periods WHERE tenant_id = $1
            UNION ALL SELECT 'lease', xmin::text, xmax::text, amount_nanos::text FROM budget_leases WHERE tenant_id = $1 ORDER BY 1`,
          [tenant.tenantId],
        );
      const before = await versions();
      expect(before.map((r: { what: string }) => r.what)).toEqual(['lease', 'period']);
      const hits = await Promise.all([1, 2, 3].map(() => cached('what is 3+3?', 'k-nolock')));
      expect(hits.map((h) => h.cache)).toEqual(['hit', 'hit', 'hit']);
      await t.app.get(BudgetService).ledgerWritten();
      expect(await versions()).toEqual(before);
      const rows = await ledger();
      expect(rows.map((r: { cache_status: string; cost_nanos: string }) => [r.cache_status, r.cost_nanos])).toEqual([
        ['miss', first.costNanos.toString()],
        ['hit', '0'],
        ['hit', '0'],
        ['hit', '0'],
      ]);
      // A paid call still settles on both.
      await cached('what is 4+4?', 'k-nolock-2');
      const after = await versions();
      expect(after.map((r: { xmin: string }) => r.xmin)).not.toEqual(before.map((r: { xmin: string }) => r.xmin));
      await booksBalanced();
    });

    it('skips the lookup when asked, and stores only valid answers', async () => {
      await cached('q', 'k-skip');
      const fresh = await cached('q', 'k-skip', false);
      expect(fresh.cache).toBe('miss');
      expect(fake.requests).toHaveLength(2);
      // An answer that fails validation is never stored.
      const validate = (c: string) => (c.startsWith('{') ? { ok: true as const, value: c } : { ok: false as const, problem: 'not JSON' });
      await expect(ask('v', { cache: { key: 'k-invalid', lookup: true, store: true }, validate, target: { model: 'deepseek:deepseek-flash' } })).rejects.toMatchObject({
        code: 'NO_PROVIDER_AVAILABLE',
      });
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-invalid'`, [tenant.tenantId]);
      expect(n).toBe(0);
    });

    it('makes one provider call for identical requests in flight together (single flight)', async () => {
      fake.setLatency(300);
      const results = await Promise.all(Array.from({ length: 10 }, () => cached('same question', 'k-flight')));
      expect(fake.requests).toHaveLength(1);
      expect(new Set(results.map((r) => r.content)).size).toBe(1);
      expect(results.filter((r) => r.cache === 'miss')).toHaveLength(1);
      expect(results.filter((r) => r.cache === 'hit')).toHaveLength(9);
      const { spent } = await booksBalanced();
      expect(spent).toBe(results.find((r) => r.cache === 'miss')!.costNanos);
    });

    it("answers a caller that joined a call in flight whose own caller then left: it makes the call itself, not the leader's 'cancelled'", async () => {
      fake.setLatency(400);
      const left = new AbortController();
      const leader = ask('asked twice, left once', { cache: { key: 'k-left', lookup: true, store: true }, signal: left.signal });
      leader.catch(() => undefined);
      await waitFor(() => fake.requests.length === 1, 5_000, 'the leader at the provider');
      const follower = cached('asked twice, left once', 'k-left');
      left.abort();
      await expect(leader).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      const r = await follower;
      expect(r.content.length).toBeGreaterThan(0);
      expect(r.cache).toBe('miss'); // its own call
      await booksBalanced();
    });

    it("…and when the leader's caller left while it waited for the tenant's provider slot (a chat call's wait signal)", async () => {
      const setLimits = (limits: Record<string, number | null>) => t.http.put(`/v1/tenants/${tenant.tenantId}/limits`).set(bearer(OPERATOR_TOKEN)).send(limits).expect(200);
      await setLimits({ providerCalls: 1 });
      try {
        fake.setLatency(500);
        const busy = cached('holding the one slot', 'k-slot-busy');
        await waitFor(() => fake.requests.length === 1, 5_000, 'the slot taken');
        const left = new AbortController();
        const leader = ask('waits for the slot', { cache: { key: 'k-slot', lookup: true, store: true }, waitSignal: () => left.signal });
        leader.catch(() => undefined);
        const waiting = () => (t.app.get(LimitsService) as unknown as { waiters: { providerCalls: Map<string, unknown[]> } }).waiters.providerCalls.get(tenant.tenantId)?.length ?? 0;
        await waitFor(() => waiting() === 1, 5_000, 'the leader waiting for the slot');
        const follower = cached('waits for the slot', 'k-slot');
        left.abort();
        await expect(leader).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
        const r = await follower;
        expect(r.cache).toBe('miss');
        await busy;
        await booksBalanced();
      } finally {
        await setLimits({ providerCalls: null });
      }
    });

    it('keeps an answer in the cache with the statement that settles its call: one round trip, the row saving what was charged', async () => {
      const books = t.app.get(BooksRepository);
      const cache = t.app.get(ResponseCache);
      const settles = jest.spyOn(books, 'settleLeased');
      const puts = jest.spyOn(cache, 'put');
      let first;
      try {
        first = await cached('cache me with my settlement', 'k-together');
        expect(puts).not.toHaveBeenCalled();
        const carried = settles.mock.calls.flatMap((c) => c[2].flatMap((g) => g.calls)).filter((c) => c.cache);
        expect(carried).toEqual([expect.objectContaining({ cache: expect.objectContaining({ key: 'k-together', content: first.content, costNanos: first.costNanos }) })]);
      } finally {
        settles.mockRestore();
        puts.mockRestore();
      }
      const [row] = await ds.query(`SELECT content, cost_nanos::text AS cost, repaired, expires_at > now() + interval '1 minute' AS lives FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-together'`, [tenant.tenantId]);
      expect(row).toEqual({ content: first.content, cost: first.costNanos.toString(), repaired: false, lives: true });
      // Another instance (its memory empty) finds it in the database.
      const other = await t.another(providerEnv(fake));
      const hit = await other.get(GatewayService).complete({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'cache me with my settlement' }], maxTokens: 200, cache: { key: 'k-together', lookup: true, store: true } });
      expect(hit).toMatchObject({ cache: 'hit', content: first.content, savedNanos: first.costNanos });
      await other.close();
      expect(fake.requests).toHaveLength(1);
      await booksBalanced();
    });

    it('writes no cache row while the settlement fails, and the call fails with it; the row comes with the settlement written later', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const unsettledRows = () => ds.query(`SELECT count(*)::int AS n FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-unsettled'`, [tenant.tenantId]).then((r) => r[0].n);
      const failing = jest.spyOn(books, 'settleLeased').mockRejectedValue(new Error('connection reset'));
      try {
        await expect(cached('settle me never', 'k-unsettled')).rejects.toThrow('connection reset');
        expect(await unsettledRows()).toBe(0);
        // Nothing answered from memory either: the same request goes to the provider again.
        await expect(cached('settle me never', 'k-unsettled')).rejects.toThrow('connection reset');
        expect(fake.requests).toHaveLength(2);
        expect(budget.waitingSettlements()).toBe(2);
      } finally {
        failing.mockRestore();
      }
      // The database is back: both paid calls settle (their next background try, made now), one cache row.
      expect(await budget.settleWaiting()).toEqual([]);
      expect(await unsettledRows()).toBe(1);
      await booksBalanced();
    });

    it('keeps the answer of a call settled the classic way (leases off) with what was charged', async () => {
      const other = await t.another(providerEnv(fake, { BUDGET_LEASES: 'false' }));
      const r = await other.get(GatewayService).complete({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'classic' }], maxTokens: 200, cache: { key: 'k-classic', lookup: true, store: true } });
      const [row] = await ds.query(`SELECT content, cost_nanos::text AS cost FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-classic'`, [tenant.tenantId]);
      expect(row).toEqual({ content: r.content, cost: r.costNanos.toString() });
      await other.close();
      // This instance learns what another stored at its cache index's next read (every LLM_CACHE_INDEX_POLL_MS).
      await t.app.get(ResponseCache).index.poll();
      expect((await cached('classic', 'k-classic')).cache).toBe('hit');
      await booksBalanced();
    });

    it('stores two answers to one key settled in one statement as one row (the last), without failing the statement', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const period = await budget.currentPeriod(tenant.tenantId);
      const instance = `test:${randomUUID()}`;
      expect(await books.takeLease(tenant.tenantId, period, instance, 10n, 100n, 60_000)).toBe(100n);
      const call = (content: string, cost: bigint): SettlingCall => ({
        tenantId: tenant.tenantId, period, callGroup: randomUUID(), attempt: 1, purpose: 'chat', cacheStatus: 'miss', outcome: 'ok', inputTokens: 1, cachedInputTokens: 0,
        outputTokens: 1, usageSource: 'provider', costNanos: cost, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false,
        cache: { key: 'k-twice', content, provider: 'deepseek', model: 'deepseek-chat', finishReason: 'stop', inputTokens: 1, cachedInputTokens: 0, outputTokens: 1, costNanos: cost, repaired: false, ttlSeconds: 60 },
      });
      const after = await books.settleLeased(instance, 60_000, [{ tenantId: tenant.tenantId, period, calls: [call('first', 10n), call('second', 20n)] }]);
      expect(after).toEqual([{ spent: 30n, cap: 100_000_000_000n }]);
      expect(await ds.query(`SELECT content, cost_nanos::text AS cost FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'k-twice'`, [tenant.tenantId])).toEqual([{ content: 'second', cost: '20' }]);
      await books.returnLease(tenant.tenantId, period, instance, 70n);
      await booksBalanced();
    });

    it("never answers tenant B from tenant A's cache", async () => {
      const a = tenant;
      const b = await f.newTenant({ monthlyBudget: '10.00' });
      await cached('shared prompt', 'k-shared');
      const fromB = await gw.complete({
        tenantId: b.tenantId,
        purpose: 'chat',
        target: { tier: 'standard' },
        messages: [{ role: 'user', content: 'shared prompt' }],
        maxTokens: 200,
        cache: { key: 'k-shared', lookup: true, store: true },
      });
      expect(fromB.cache).toBe('miss');
      expect(fake.requests).toHaveLength(2);
      await booksBalanced(a.tenantId);
      await booksBalanced(b.tenantId);
    });
  });

  describe('budget admission', () => {
    it("opens each month's period row when the month comes (each tenant's latest is remembered, by its id)", async () => {
      const school = await f.newTenant({ monthlyBudget: '10.00' });
      const budget = t.app.get(BudgetService);
      const periods = async () =>
        (await ds.query(`SELECT period FROM budget_periods WHERE tenant_id = $1 ORDER BY period`, [school.tenantId])).map((r: { period: string }) => r.period);
      // Noon UTC on the 15th: the same month in any time zone.
      const dec = await budget.currentPeriod(school.tenantId, new Date('2031-12-15T12:00:00Z'));
      const jan = await budget.currentPeriod(school.tenantId, new Date('2032-01-15T12:00:00Z'));
      expect([dec, jan]).toEqual(['2031-12', '2032-01']);
      expect(await periods()).toEqual(expect.arrayContaining(['2031-12', '2032-01']));
      // Back to the month before (a call that started before midnight): its row is there, and the next month's too.
      expect(await budget.currentPeriod(school.tenantId, new Date('2031-12-15T12:00:00Z'))).toBe('2031-12');
      expect(await budget.currentPeriod(school.tenantId, new Date('2032-01-15T12:00:00Z'))).toBe('2032-01');
      expect((await periods()).filter((p: string) => p === '2031-12' || p === '2032-01')).toEqual(['2031-12', '2032-01']);
    });

    it('refuses a call whose worst case does not fit, with BUDGET_EXHAUSTED and no provider call', async () => {
      const poor = await f.newTenant({ monthlyBudget: '0.000100' });
      const err = await gw
        .complete({ tenantId: poor.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'hi' }], maxTokens: 1000 })
        .catch((e) => e);
      expect(err).toMatchObject({ code: 'BUDGET_EXHAUSTED' });
      expect(fake.requests).toHaveLength(0);
      const rows = await ledger(poor.tenantId);
      expect(rows.every((r: { outcome: string; cost_nanos: string }) => r.outcome === 'budget_exhausted' && r.cost_nanos === '0')).toBe(true);
      await booksBalanced(poor.tenantId);
    });

    it('keeps settled spend within the cap for 200 concurrent calls through two app instances', async () => {
      const messages = [{ role: 'user' as const, content: '请评价这句话：春风又绿江南岸。' }];
      const maxTokens = 100;
      // Worst case per call on qwen-flash: estimate × 150 + 100 × 1500 nano-yuan; the cap fits about 20.
      const probe = t.models.catalog.models.get('dashscope:qwen-flash')!;
      const worst = BigInt(estimatePromptTokens(messages, probe.tokenizer)) * probe.pricing.input + BigInt(maxTokens) * probe.pricing.output;
      const capNanos = worst * 20n + worst / 2n;
      const cap = formatCny(capNanos);
      const poor = await f.newTenant({ monthlyBudget: cap });
      const second = await t.another(providerEnv(fake));
      const gw2 = second.get(GatewayService);
      fake.setLatency(50);
      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) =>
          (i % 2 ? gw2 : gw).complete({ tenantId: poor.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages, maxTokens }),
        ),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r) => r.status === 'rejected' && (r.reason as GatewayError).code === 'BUDGET_EXHAUSTED').length;
      expect(ok + refused).toBe(200);
      expect(ok).toBeGreaterThanOrEqual(20); // actual costs are below the worst case, so at least the 20 that fit
      const { spent, cap: capRow } = await booksBalanced(poor.tenantId);
      expect(capRow).toBe(capNanos);
      expect(spent).toBeLessThanOrEqual(capNanos);
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND outcome = 'ok'`, [poor.tenantId]);
      expect(n).toBe(ok);
    }, 60_000);

    it('admits on a budget lease and writes settlements together: a few lease statements, fewer settlement statements than calls, each answer after its ledger row', async () => {
      const rich = await f.newTenant({ monthlyBudget: '1000.00' });
      const books = t.app.get(BooksRepository);
      const takes = jest.spyOn(books, 'takeLease');
      const settles = jest.spyOn(books, 'settleLeased');
      const reserves = jest.spyOn(books, 'reserve');
      fake.setLatency(20);
      try {
        const rowsAtAnswer = await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            gw
              .complete({ tenantId: rich.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: `lease ${i}` }], maxTokens: 50 })
              .then(async (r) => (await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [rich.tenantId, r.callGroup]))[0].n),
          ),
        );
        // Every answer left after its ledger row was written.
        expect(rowsAtAnswer).toEqual(Array(60).fill(1));
        const leaseCalls = takes.mock.calls.filter((c) => c[0] === rich.tenantId).length;
        // Statements that settled some of this tenant's calls, and how many calls each.
        const settleCalls = settles.mock.calls.map((c) => c[2].filter((g) => g.tenantId === rich.tenantId)).filter((gs) => gs.length > 0);
        expect(leaseCalls).toBeGreaterThanOrEqual(1);
        expect(leaseCalls).toBeLessThan(10);
        expect(settleCalls.reduce((n, gs) => n + gs.reduce((m, g) => m + g.calls.length, 0), 0)).toBe(60);
        expect(settleCalls.length).toBeLessThan(60);
        expect(reserves.mock.calls.filter((c) => c[0] === rich.tenantId)).toHaveLength(0);
        const { leased } = await booksBalanced(rich.tenantId);
        expect(leased).toBeGreaterThan(0n);
        // Given back on shutdown: another instance's slice is returned when it closes.
        const other = await t.another(providerEnv(fake));
        await other.get(GatewayService).complete({ tenantId: rich.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'other' }], maxTokens: 50 });
        const instance = other.get(BudgetService).leases!.instanceId;
        const [before] = await ds.query(`SELECT amount_nanos FROM budget_leases WHERE instance_id = $1`, [instance]);
        expect(BigInt(before.amount_nanos)).toBeGreaterThan(0n);
        await other.close();
        const [after] = await ds.query(`SELECT coalesce(sum(amount_nanos), 0)::text AS held FROM budget_leases WHERE instance_id = $1`, [instance]);
        expect(after.held).toBe('0');
        await booksBalanced(rich.tenantId);
      } finally {
        takes.mockRestore();
        settles.mockRestore();
        reserves.mockRestore();
      }
    });

    it('stops admitting on a lease when the tenant is paused, and gives it back', async () => {
      const paused = await f.newTenant({ monthlyBudget: '1000.00' });
      const ask = (content: string) => gw.complete({ tenantId: paused.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content }], maxTokens: 50 });
      await ask('before the pause');
      const budget = t.app.get(BudgetService);
      expect(budget.leases!.holding(paused.tenantId).available).toBeGreaterThan(0n);
      await ds.query(`UPDATE tenants SET admission_paused = true WHERE id = $1`, [paused.tenantId]);
      t.app.get(ClusterBus).publish('budget', { tenantId: paused.tenantId });
      await waitFor(async () => {
        const err = await ask(`after the pause ${randomUUID()}`).catch((e) => e);
        return err instanceof GatewayError && err.code === 'BUDGET_EXHAUSTED';
      }, 5_000, 'admission to stop');
      expect(budget.leases!.holding(paused.tenantId).available).toBe(0n);
      const { leased } = await booksBalanced(paused.tenantId);
      expect(leased).toBe(0n);
    });

    it('returns the budget lease of an instance that died to the budget when it expires, and a stalled instance settles without it', async () => {
      const other = await t.another(providerEnv(fake));
      const budget = other.get(BudgetService);
      const held = await budget.reserve(tenant.tenantId, 1_000_000n);
      const overBilled = await budget.reserve(tenant.tenantId, 1_000_000n);
      expect(held).toMatchObject({ leased: true });
      expect(overBilled).toMatchObject({ leased: true });
      const [lease] = await ds.query(`SELECT amount_nanos FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [tenant.tenantId, budget.leases!.instanceId]);
      expect(BigInt(lease.amount_nanos)).toBeGreaterThanOrEqual(2_000_000n);
      // A third call settles on the lease: its statement writes what the two others still hold in flight.
      const third = await budget.reserve(tenant.tenantId, 1_000_000n);
      const thirdEntry = { tenantId: tenant.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'miss' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 100_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 5, streamed: false };
      expect(await budget.settle(third, 100_000n, thirdEntry)).toBe(100_000n);
      const lostBefore = (await ds.query(`SELECT count(*)::int AS n FROM budget_incidents WHERE tenant_id = $1 AND kind = 'lost_in_flight'`, [tenant.tenantId]))[0].n;
      // The instance "dies": it stops renewing. Age its lease past its expiry: the sweeper gives it back.
      await ds.query(`UPDATE budget_leases SET expires_at = now() - interval '1 second' WHERE instance_id = $1`, [budget.leases!.instanceId]);
      expect(await budget.sweep()).toBe(1);
      // …and books the two calls' worst cases as lost in flight, charging the tenant nothing for them.
      const lost = await ds.query(`SELECT excess_nanos::text AS excess, charged_nanos::text AS charged FROM budget_incidents WHERE tenant_id = $1 AND kind = 'lost_in_flight' ORDER BY created_at DESC`, [tenant.tenantId]);
      expect(lost).toHaveLength(lostBefore + 1);
      expect(lost[0]).toEqual({ excess: '2000000', charged: '0' });
      const [after] = await ds.query(`SELECT count(*)::int AS n FROM budget_leases WHERE instance_id = $1`, [budget.leases!.instanceId]);
      expect(after.n).toBe(0);
      await booksBalanced();
      expect(await budget.sweep()).toBe(0);
      // It was only stalled: the call it admitted settles anyway, within the cap, in the ledger.
      const entry = { tenantId: tenant.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'miss' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 400_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 5, streamed: false };
      expect(await budget.settle(held, 400_000n, entry)).toBe(400_000n);
      await booksBalanced();
      // And one whose provider billed past its bound: settled the classic way with no lease to move, an incident booked.
      const incident = { estimatedInputTokens: 10, reportedInputTokens: 5_000, maxOutputTokens: 10, reportedOutputTokens: 10 };
      expect(await budget.settle(overBilled, 1_500_000n, { ...entry, callGroup: randomUUID(), costNanos: 1_500_000n }, { incident })).toBe(1_500_000n);
      const [booked] = await ds.query(`SELECT kind, charged_nanos::text AS charged FROM budget_incidents WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1`, [tenant.tenantId]);
      expect(booked).toEqual({ kind: 'tokens_over_bound', charged: '1500000' });
      // Charged once each: the ledger holds the three calls' charges, and the incident booked for the
      // two while they looked lost charged nothing (the books balance: the spend is the ledger).
      const [charges] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND call_group = ANY($2::uuid[])`, [tenant.tenantId, [entry.callGroup, thirdEntry.callGroup]]);
      expect(charges.n).toBe(2);
      await booksBalanced();
      await ds.query(`UPDATE tenants SET admission_paused = false WHERE id = $1`, [tenant.tenantId]);
    });

    it('never lets a leased call take the spend past a cap lowered while it ran: charged within the cap, the rest an incident', async () => {
      const lowered = await f.newTenant({ monthlyBudget: '100.00' });
      const budget = t.app.get(BudgetService);
      const held = await budget.reserve(lowered.tenantId, 10_000_000_000n); // 10 CNY, admitted on a lease
      expect(held).toMatchObject({ leased: true });
      // The admin cuts the cap to 1 CNY while the call runs.
      await budget.update(lowered.tenantId, { monthlyCap: '1.00' });
      const entry = { ...paidEntry(lowered.tenantId, held!.period, 5_000_000_000n) };
      const charged = await budget.settle(held, 5_000_000_000n, entry);
      expect(charged).toBe(1_000_000_000n);
      const [p] = await ds.query(`SELECT spent_nanos::text AS spent, cap_nanos::text AS cap FROM budget_periods WHERE tenant_id = $1`, [lowered.tenantId]);
      expect(p).toEqual({ spent: '1000000000', cap: '1000000000' });
      const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [lowered.tenantId, entry.callGroup]);
      expect(rows).toEqual([{ cost: '1000000000' }]);
      const [booked] = await ds.query(`SELECT kind, cost_nanos::text AS cost, charged_nanos::text AS charged, excess_nanos::text AS excess FROM budget_incidents WHERE tenant_id = $1`, [lowered.tenantId]);
      expect(booked).toEqual({ kind: 'over_reservation', cost: '5000000000', charged: '1000000000', excess: '4000000000' });
      // Nothing is left reserved for the settled call, and the lease admits no more.
      const { leased } = await booksBalanced(lowered.tenantId);
      expect(budget.leases!.holding(lowered.tenantId)).toEqual({ available: leased, held: leased });
      expect(await budget.reserve(lowered.tenantId, 1_000_000n)).toBeNull();
    });

    it.each([['failed before it committed', (books: BooksRepository) => jest.spyOn(books, 'settle').mockRejectedValueOnce(new Error('connection reset'))]])(
      "moves a leased call's promise off a lease whose cap was lowered once when its settlement is retried (the first %s): no other call's promise, no reservation left over",
      async (_how, breakSettle) => {
      const lowered = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      // Two calls admitted on one lease; the admin cuts the cap to 1 CNY while they run.
      const [first, second] = [await budget.reserve(lowered.tenantId, 10_000_000_000n), await budget.reserve(lowered.tenantId, 10_000_000_000n)];
      expect([first, second]).toMatchObject([{ leased: true }, { leased: true }]);
      await budget.update(lowered.tenantId, { monthlyCap: '1.00' });
      const moves = jest.spyOn(books, 'leaseToReservation');
      // The first call's promise leaves the lease; its classic settlement then fails once (the database blinked).
      const broken = breakSettle(books);
      const entry = { ...paidEntry(lowered.tenantId, first!.period, 5_000_000_000n), id: randomUUID() };
      try {
        // (Charged what the 1 CNY cap has left, the rest an incident: the second call's promise is no spend.)
        expect(await budget.settlePaid(first!, 5_000_000_000n, entry)).toBe(1_000_000_000n);
        expect(broken).toHaveBeenCalledTimes(2);
        // Both tries named the same reservation; the second found the first's work and moved nothing.
        expect(moves).toHaveBeenCalledTimes(2);
        expect(new Set(moves.mock.calls.map((c) => c[3])).size).toBe(1);
        expect(await Promise.all(moves.mock.results.map((r) => r.value))).toEqual(['moved', 'found']);
      } finally {
        broken.mockRestore();
        moves.mockRestore();
      }
      expect(await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND id = $2`, [lowered.tenantId, entry.id])).toEqual([{ n: 1 }]);
      // No reservation left behind for the sweeper to book as a call lost in flight; the second
      // call's promise is still on the lease.
      expect(await ds.query(`SELECT id FROM budget_reservations WHERE tenant_id = $1`, [lowered.tenantId])).toEqual([]);
      const [lease] = await ds.query(`SELECT amount_nanos::text AS held FROM budget_leases WHERE tenant_id = $1`, [lowered.tenantId]);
      expect(lease).toEqual({ held: '10000000000' });
      expect(await budget.settle(second!, 0n, { ...paidEntry(lowered.tenantId, second!.period, 0n), id: randomUUID() })).toBe(0n);
      // (What it did not use goes back to the revoked lease, and from there to the budget.)
      await budget.leases!.release(lowered.tenantId, second!.period);
      await booksBalanced(lowered.tenantId);
      expect(await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND outcome = 'lost_in_flight'`, [lowered.tenantId])).toEqual([{ n: 0 }]);
    },
    );

    it("moves nothing off a lease for a call whose ledger row an earlier try wrote (its reservation settled and gone)", async () => {
      const done = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const held = await budget.reserve(done.tenantId, 1_000_000n);
      const lease = { period: held!.period, instance: budget.leases!.instanceId };
      const amount = async () => (await ds.query(`SELECT amount_nanos::text AS a FROM budget_leases WHERE tenant_id = $1`, [done.tenantId]))[0].a as string;
      const id = randomUUID();
      const entryId = randomUUID();
      // The first try moved the worst case and settled it the classic way (the reservation is gone, the row written)…
      expect(await books.leaseToReservation(done.tenantId, lease.period, lease.instance, id, 1_000_000n, 60_000, entryId)).toBe('moved');
      expect(await budget.settle({ ...held!, id, leased: false }, 300_000n, { ...paidEntry(done.tenantId, lease.period, 300_000n), id: entryId })).toBe(300_000n);
      const before = await amount();
      // …its answer lost, the retry finds the row and moves nothing again (a new reservation would be left to the sweeper).
      expect(await books.leaseToReservation(done.tenantId, lease.period, lease.instance, id, 1_000_000n, 60_000, entryId)).toBe('found');
      expect(await amount()).toBe(before);
      expect(await ds.query(`SELECT id FROM budget_reservations WHERE tenant_id = $1`, [done.tenantId])).toEqual([]);
      await booksBalanced(done.tenantId);
    });

    it("takes the leases of several tenants in one statement, each from its own tenant's free budget; a paused tenant, one without room and a period asked twice are not over-given", async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const [a, b, paused, poor] = await Promise.all([
        f.newTenant({ monthlyBudget: '100.00' }),
        f.newTenant({ monthlyBudget: '50.00' }),
        f.newTenant({ monthlyBudget: '100.00' }),
        f.newTenant({ monthlyBudget: '0.001000' }),
      ]);
      const periods = await Promise.all([a, b, paused, poor].map((x) => budget.currentPeriod(x.tenantId)));
      await ds.query(`UPDATE tenants SET admission_paused = true WHERE id = $1`, [paused.tenantId]);
      const watch = watchStatements(/INSERT INTO budget_leases/);
      const statements = watch.statements;
      const instance = `test:${randomUUID()}`;
      const M = 1_000_000_000n; // 1 CNY
      let taken: bigint[];
      try {
        taken = await Promise.all([
          books.takeLease(a.tenantId, periods[0], instance, 2n * M, 10n * M, 60_000),
          books.takeLease(b.tenantId, periods[1], instance, 2n * M, 40n * M, 60_000),
          books.takeLease(paused.tenantId, periods[2], instance, 2n * M, 10n * M, 60_000),
          books.takeLease(poor.tenantId, periods[3], instance, 2n * M, 10n * M, 60_000),
          // B's period again in the same moment: after the first take, from what is left.
          books.takeLease(b.tenantId, periods[1], instance, 2n * M, 40n * M, 60_000),
        ]);
      } finally {
        watch.stop();
      }
      // A: at most `want`; B: a quarter of 50 (12.5), then a quarter of the 37.5 left; the paused and the poor nothing.
      expect(taken).toEqual([10n * M, 12_500_000_000n, 0n, 0n, 9_375_000_000n]);
      // One statement for the four periods, a second for the period asked twice.
      expect(statements).toHaveLength(2);
      for (const [x, expected] of [
        [a, 10n * M],
        [b, 21_875_000_000n],
        [paused, 0n],
        [poor, 0n],
      ] as const) {
        const [p] = await ds.query(`SELECT reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [x.tenantId]);
        const [l] = await ds.query(`SELECT coalesce(sum(amount_nanos), 0)::text AS held FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [x.tenantId, instance]);
        expect([BigInt(p.reserved), BigInt(l.held)]).toEqual([expected, expected]);
      }
      // The first reads of a moment share a statement too: a tenant id that is nobody's is refused
      // (NOT_FOUND) without failing the others read with it, and no period is opened for it.
      const tenants = t.app.get(TenantsRepository);
      const nobody = randomUUID();
      const [mine, missing, limits] = await Promise.allSettled([tenants.budget(a.tenantId), tenants.budget(nobody), tenants.limits(b.tenantId)]);
      expect(mine).toMatchObject({ status: 'fulfilled', value: { cap: 100n * M } });
      expect(missing).toMatchObject({ status: 'rejected', reason: { code: 'NOT_FOUND' } });
      expect(limits).toMatchObject({ status: 'fulfilled', value: {} });
      await Promise.all([books.openPeriod(nobody, periods[0]), books.openPeriod(a.tenantId, periods[0])]);
      expect(await ds.query(`SELECT count(*)::int AS n FROM budget_periods WHERE tenant_id = $1`, [nobody])).toEqual([{ n: 0 }]);
      for (const x of [a, b]) await books.returnLease(x.tenantId, periods[x === a ? 0 : 1], instance, x === a ? 10n * M : 21_875_000_000n);
      await ds.query(`UPDATE tenants SET admission_paused = false WHERE id = $1`, [paused.tenantId]);
      for (const x of [a, b, paused, poor]) await booksBalanced(x.tenantId);
    });

    it("settles calls of several tenants in one statement, each row in its own tenant's books, and a swept lease's calls apart", async () => {
      const books = t.app.get(BooksRepository);
      const leases = t.app.get(BudgetService).leases!;
      const [a, b, c] = await Promise.all([f.newTenant({ monthlyBudget: '100.00' }), f.newTenant({ monthlyBudget: '100.00' }), f.newTenant({ monthlyBudget: '100.00' })]);
      const ask = (tenantId: string, i: number) =>
        gw.complete({
          tenantId,
          purpose: 'chat',
          target: { model: 'dashscope:qwen-flash' },
          messages: [{ role: 'user', content: `several ${tenantId} ${i}` }],
          maxTokens: 50,
          cache: { key: `several-${i}`, lookup: false, store: true },
        });
      // Warm each tenant's lease, then take C's away as the sweeper would from a stalled instance.
      await Promise.all([ask(a.tenantId, 0), ask(b.tenantId, 0), ask(c.tenantId, 0)]);
      await ds.query(`UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - l.amount_nanos FROM budget_leases l
                       WHERE l.tenant_id = $1 AND l.instance_id = $2 AND p.tenant_id = l.tenant_id AND p.period = l.period`, [c.tenantId, leases.instanceId]);
      await ds.query(`DELETE FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [c.tenantId, leases.instanceId]);
      const settles = jest.spyOn(books, 'settleLeased');
      fake.setLatency(20);
      try {
        const results = await Promise.all([a, b, c].flatMap((x) => Array.from({ length: 10 }, (_, i) => ask(x.tenantId, i + 1))));
        expect(results).toHaveLength(30);
        // Some statement carried more than one tenant's calls.
        expect(settles.mock.calls.some((call) => new Set(call[2].map((g) => g.tenantId)).size > 1)).toBe(true);
      } finally {
        settles.mockRestore();
        fake.setLatency(0);
      }
      for (const x of [a, b, c]) {
        const { spent } = await booksBalanced(x.tenantId);
        const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND outcome = 'ok'`, [x.tenantId]);
        expect(n).toBe(11);
        expect(spent).toBeGreaterThan(0n);
        // Each answer kept in its own tenant's cache, C's by the settlements made without its lease.
        const cachedRows = await ds.query(`SELECT cache_key, content FROM llm_cache WHERE tenant_id = $1 ORDER BY cache_key`, [x.tenantId]);
        expect(cachedRows).toHaveLength(11);
        expect(cachedRows.every((r: { content: string }) => r.content.length > 0)).toBe(true);
      }
    });

    it("settles, renews and gives back an instance's leases by their keys, reading none of its other leases (10,000 tenants stay as fast as one)", async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const [a, filler] = await Promise.all([f.newTenant({ monthlyBudget: '100.00' }), f.newTenant({ monthlyBudget: '100.00' })]);
      const period = await budget.currentPeriod(a.tenantId);
      const instance = `test:${randomUUID()}`;
      const M = 1_000_000_000n;
      expect(await books.takeLease(a.tenantId, period, instance, M, 10n * M, 60_000)).toBe(10n * M);
      // The instance also holds 3,000 other leases (another tenant's, empty), added since the table's
      // statistics were taken (as when a new instance warms up faster than autovacuum analyses).
      await ds.query(`ANALYZE budget_leases`);
      await ds.query(
        `INSERT INTO budget_leases (tenant_id, period, instance_id, amount_nanos, expires_at)
         SELECT $1, 'filler-' || i, $2, 0, now() + interval '1 minute' FROM generate_series(1, 3000) i`,
        [filler.tenantId, instance],
      );
      // This instance's statements only (the app's own instance may renew or give back its leases meanwhile).
      const watch = watchStatements(/budget_leases/, (params) => mentions(params, instance));
      const statements = watch.statements;
      const entry = paidEntry(a.tenantId, period, 5n);
      try {
        expect(await books.settleLeased(instance, 60_000, [{ tenantId: a.tenantId, period, calls: [entry] }])).toEqual([{ spent: 5n, cap: 100n * M }]);
        await books.renewLeases(instance, 120_000, [{ tenantId: a.tenantId, period }]);
        await books.returnLease(a.tenantId, period, instance, M);
      } finally {
        watch.stop();
      }
      expect(statements).toHaveLength(3);
      // The settlement runs as a named prepared statement on a PostgreSQL server (planned once a
      // connection), as plain text on PGlite (tenancy.int-spec.ts has why); renewal and return as text.
      expect(statements.map((s) => s.name)).toEqual([serverUrl() ? 'inkstone_settle_leased' : undefined, undefined, undefined]);
      // Each statement again under EXPLAIN ANALYZE (rolled back): how many lease rows it read.
      const leaseRowsRead = async ({ sql, params }: { sql: string; params: unknown[] }) => {
        const qr = ds.createQueryRunner();
        await qr.startTransaction();
        try {
          await qr.query(`DELETE FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [a.tenantId, entry.callGroup]); // (the settlement writes it again)
          const [row] = await qr.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
          const plan = row['QUERY PLAN'];
          let read = 0;
          const walk = (n: Record<string, unknown>) => {
            if (n['Relation Name'] === 'budget_leases' && String(n['Node Type']).includes('Scan')) {
              read += (Number(n['Actual Rows']) + Number(n['Rows Removed by Filter'] ?? 0) + Number(n['Rows Removed by Index Recheck'] ?? 0)) * Number(n['Actual Loops']);
            }
            for (const c of (n.Plans as Array<Record<string, unknown>>) ?? []) walk(c);
          };
          walk((typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan);
          return read;
        } finally {
          await qr.rollbackTransaction();
          await qr.release();
        }
      };
      for (const s of statements) expect({ sql: s.sql.slice(0, 60), read: await leaseRowsRead(s) }).toEqual({ sql: s.sql.slice(0, 60), read: 1 });
      // What they did: 5 nano-yuan spent from the lease, the lease renewed, 1 CNY of it given back.
      const [l] = await ds.query(`SELECT amount_nanos::text AS held, expires_at > now() + interval '90 seconds' AS renewed FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [a.tenantId, instance]);
      expect(l).toEqual({ held: String(9n * M - 5n), renewed: true });
      await books.returnLease(a.tenantId, period, instance, 9n * M - 5n);
      await ds.query(`DELETE FROM budget_leases WHERE instance_id = $1`, [instance]);
      await booksBalanced(a.tenantId);
    });

    it("gives back every tenant's lease in one statement when an instance closes, and renews them in one while it lives", async () => {
      const books = t.app.get(BooksRepository);
      const tenants = await Promise.all([1, 2, 3].map(() => f.newTenant({ monthlyBudget: '100.00' })));
      const leases = new BudgetLeases(books, { ttlMs: 3_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind: 1_024, maxBehindPerTenant: 128 }, () => Promise.reject(new Error('no lease is swept here')));
      const budget = t.app.get(BudgetService);
      const periods = await Promise.all(tenants.map((x) => budget.currentPeriod(x.tenantId)));
      for (const [i, x] of tenants.entries()) expect(await leases.admit(x.tenantId, periods[i], 1_000_000n)).toMatchObject({ tenantId: x.tenantId });
      for (const x of tenants) expect(leases.holding(x.tenantId).available).toBeGreaterThan(0n);
      // This instance's statements only (the app's own instance may renew or give back its leases meanwhile).
      const watch = watchStatements(/budget_leases/, (params) => mentions(params, leases.instanceId));
      const statements = watch.statements;
      try {
        // Renewal: one statement for the three leases (due a third of the TTL after their take, 1 s; the timer ticks every sixth).
        leases.start();
        await waitFor(async () => statements.length > 0, 30_000, 'a renewal');
        await leases.close();
      } finally {
        watch.stop();
      }
      const kinds = statements.map(({ sql }) => (/^\s*UPDATE budget_leases l SET expires_at/.test(sql) ? 'renew' : /WITH x AS/.test(sql) ? 'return' : sql.slice(0, 40)));
      // (a slow machine may renew twice before the close)
      expect(kinds.slice(-1)).toEqual(['return']);
      expect(new Set(kinds.slice(0, -1))).toEqual(new Set(['renew']));
      // Each lease keeps the worst case of its call still in flight, nothing more; a call that
      // settles after the close gives back at once what it did not use (the first tenant's).
      const [first] = tenants;
      const settled = await leases.settle({ tenantId: first.tenantId, period: periods[0], amount: 1_000_000n }, 400_000n, paidEntry(first.tenantId, periods[0], 400_000n));
      expect(settled.charged).toBe(400_000n);
      expect(leases.holding(first.tenantId)).toEqual({ available: 0n, held: 0n });
      expect((await booksBalanced(first.tenantId)).leased).toBe(0n);
      for (const [i, x] of tenants.entries()) {
        if (x === first) continue;
        expect(leases.holding(x.tenantId)).toEqual({ available: 0n, held: 1_000_000n });
        expect((await booksBalanced(x.tenantId)).leased).toBe(1_000_000n);
        expect(await books.returnLease(x.tenantId, periods[i], leases.instanceId, 1_000_000n)).toBe(true);
        expect((await booksBalanced(x.tenantId)).leased).toBe(0n);
        // What a lease does not hold is not given back (nor taken from the period's reserved budget).
        expect(await books.returnLease(x.tenantId, periods[i], leases.instanceId, 1n)).toBe(false);
        expect((await booksBalanced(x.tenantId)).leased).toBe(0n);
      }
    });

    it("renews only the leases no statement renewed in the last third of the TTL: a working tenant's lease lives on its settlements", async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const [busy, quiet] = await Promise.all([1, 2].map(() => f.newTenant({ monthlyBudget: '100.00' })));
      const [busyPeriod, quietPeriod] = await Promise.all([busy, quiet].map((x) => budget.currentPeriod(x.tenantId)));
      const ttlMs = 30_000;
      const leases = new BudgetLeases(books, { ttlMs, rateWindowMs: 2_000, flushRows: 64, idleMs: 3_600_000, maxBehind: 1_024, maxBehindPerTenant: 128 }, () => Promise.reject(new Error('no lease is swept here')));
      // The leases' clock, set by the test (housekeeping's pass is run by hand, not by its timer).
      let now = Date.now();
      const clock = jest.spyOn(Date, 'now').mockImplementation(() => now);
      const watch = watchStatements(/^\s*UPDATE budget_leases l SET expires_at/, (params) => mentions(params, leases.instanceId));
      const renewed = (tenantId: string) => watch.statements.filter((s) => mentions(s.params, tenantId)).length;
      const call = async (tenantId: string, period: string) => {
        const ticket = await leases.admit(tenantId, period, 1_000n);
        expect(ticket).not.toBeNull();
        await leases.settle(ticket!, 100n, paidEntry(tenantId, period, 100n));
      };
      const housekeeping = () => (leases as unknown as { renewDue(): Promise<void> }).renewDue();
      try {
        await call(quiet.tenantId, quietPeriod);
        now += 3_000;
        await call(busy.tenantId, busyPeriod);
        // At 12 s: 9 s after the busy tenant's settlement (under a third of the TTL), 12 s after the quiet one's.
        now += 9_000;
        await housekeeping();
        expect({ busy: renewed(busy.tenantId), quiet: renewed(quiet.tenantId) }).toEqual({ busy: 0, quiet: 1 });
        // The busy tenant calls again at 13 s: its lease is renewed by that settlement. At 21 s neither is due (8 and 9 s).
        now += 1_000;
        await call(busy.tenantId, busyPeriod);
        now += 8_000;
        await housekeeping();
        expect({ busy: renewed(busy.tenantId), quiet: renewed(quiet.tenantId) }).toEqual({ busy: 0, quiet: 1 });
        // At 23 s both are (10 and 11 s): a lease that nothing renewed for a third of the TTL is renewed.
        now += 2_000;
        await housekeeping();
        expect({ busy: renewed(busy.tenantId), quiet: renewed(quiet.tenantId) }).toEqual({ busy: 1, quiet: 2 });
        // Each lease's row lives a TTL past its last statement (expiry is the database's now(): a TTL from the last one).
        const rows = await ds.query(`SELECT tenant_id, expires_at > now() + interval '25 seconds' AS alive FROM budget_leases WHERE instance_id = $1 ORDER BY tenant_id`, [leases.instanceId]);
        expect(rows.map((r: { alive: boolean }) => r.alive)).toEqual([true, true]);
      } finally {
        watch.stop();
        clock.mockRestore();
        await leases.close();
      }
      expect((await booksBalanced(busy.tenantId)).leased).toBe(0n);
      expect((await booksBalanced(quiet.tenantId)).leased).toBe(0n);
    });

    it('gives idle leases back a few a statement with a pause between (renewals go on); one used again meanwhile stays', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const tenants = await Promise.all([1, 2, 3, 4, 5].map(() => f.newTenant({ monthlyBudget: '100.00' })));
      const periods = await Promise.all(tenants.map((x) => budget.currentPeriod(x.tenantId)));
      const opts = { ttlMs: 3_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 1_000, maxBehind: 1_024, maxBehindPerTenant: 128, returnChunk: 2, returnPauseMs: 400 };
      const leases = new BudgetLeases(books, opts, () => Promise.reject(new Error('no lease is swept here')));
      // Each tenant makes a call that costs nothing, then goes quiet past idleMs.
      for (const [i, x] of tenants.entries()) await leases.settle((await leases.admit(x.tenantId, periods[i], 1_000_000n))!, 0n, paidEntry(x.tenantId, periods[i], 0n));
      await new Promise((r) => setTimeout(r, 1_100));
      const watch = watchStatements(/budget_leases/);
      // This instance's returns only: the app's own instance gives back earlier tests' idle leases meanwhile.
      const ours = new Set(tenants.map((x) => x.tenantId));
      const returns = () => watch.statements.filter((x) => /^\s*WITH x AS/.test(x.sql) && (x.params[0] as string[]).some((id) => ours.has(id)));
      try {
        leases.start();
        await waitFor(() => returns().length >= 1, 30_000, 'a first return');
        // The last tenant calls again while the first chunks go back: its lease is not idle when its chunk comes.
        expect(await leases.admit(tenants[4].tenantId, periods[4], 1_000n)).not.toBeNull();
        await waitFor(() => tenants.slice(0, 4).every((x) => leases.holding(x.tenantId).held === 0n), 30_000, 'four idle leases given back');
        expect(returns().map((x) => (x.params[0] as unknown[]).length)).toEqual([2, 2]);
        expect(returns()[1].at - returns()[0].at).toBeGreaterThanOrEqual(400);
        expect(leases.holding(tenants[4].tenantId).available).toBeGreaterThan(0n);
      } finally {
        watch.stop();
        await leases.close();
      }
      for (const x of tenants) expect((await booksBalanced(x.tenantId)).leased).toBe(x === tenants[4] ? 1_000n : 0n);
    });

    it('renews leases 500 a statement with the pause it is given between statements', async () => {
      const books = t.app.get(BooksRepository);
      const instance = `test:${randomUUID()}`;
      const watch = watchStatements(/^\s*UPDATE budget_leases l SET expires_at/);
      try {
        // (rows no instance holds: each statement renews none, which is all this test needs)
        await books.renewLeases(instance, 3_000, Array.from({ length: 1_001 }, () => ({ tenantId: randomUUID(), period: '2026-12' })), 150);
      } finally {
        watch.stop();
      }
      // This instance's statements only (the app's own leases may be renewed by its timer meanwhile).
      const renewals = watch.statements.filter((x) => x.params[2] === instance);
      expect(renewals.map((x) => (x.params[0] as unknown[]).length)).toEqual([500, 500, 1]);
      expect(renewals[1].at - renewals[0].at).toBeGreaterThanOrEqual(150);
      expect(renewals[2].at - renewals[1].at).toBeGreaterThanOrEqual(150);
    });

    // (a row lock held by another connection: PGlite's connections share one session)
    (serverUrl() ? it : it.skip)('sends one renewal pass at a time: a tick during a slow pass renews nothing again', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const tenants = await Promise.all([1, 2].map(() => f.newTenant({ monthlyBudget: '100.00' })));
      const periods = await Promise.all(tenants.map((x) => budget.currentPeriod(x.tenantId)));
      // Ticks every second; a lease is due half a second after its last renewal.
      const leases = new BudgetLeases(books, { ttlMs: 3_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind: 1_024, maxBehindPerTenant: 128 }, () => Promise.reject(new Error('no lease is swept here')));
      for (const [i, x] of tenants.entries()) expect(await leases.admit(x.tenantId, periods[i], 1_000n)).not.toBeNull();
      // Another connection holds the first lease's row: the renewal statement waits for it (a slow database).
      const holder = ds.createQueryRunner();
      await holder.connect();
      await holder.startTransaction();
      await holder.query(`SELECT 1 FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2 FOR UPDATE`, [tenants[0].tenantId, leases.instanceId]);
      const watch = watchStatements(/^\s*UPDATE budget_leases l SET expires_at/);
      const mine = () => watch.statements.filter((x) => x.params[2] === leases.instanceId);
      try {
        leases.start();
        await waitFor(() => mine().length >= 1, 30_000, 'a renewal');
        // A tick or more while it waits (and before the leases would expire): none sends the renewal again.
        await new Promise((r) => setTimeout(r, 1_500));
        expect(mine()).toHaveLength(1);
        await holder.rollbackTransaction();
        // Once it is through, the next passes renew as before.
        await waitFor(() => mine().length >= 2, 30_000, 'the next renewal');
      } finally {
        if (holder.isTransactionActive) await holder.rollbackTransaction();
        await holder.release();
        watch.stop();
        await leases.close();
      }
      // (on a loaded machine a lease may have expired and been swept meanwhile: the books balance either way)
      for (const x of tenants) await booksBalanced(x.tenantId);
    });

    it('renews a lease with each settlement that writes it, never shortening it', async () => {
      const books = t.app.get(BooksRepository);
      const x = await f.newTenant({ monthlyBudget: '100.00' });
      const period = await t.app.get(BudgetService).currentPeriod(x.tenantId);
      const instance = `test:${randomUUID()}`;
      const M = 1_000_000_000n;
      const expiresIn = async () => Number((await ds.query(`SELECT extract(epoch FROM expires_at - now())::float8 AS s FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [x.tenantId, instance]))[0].s);
      expect(await books.takeLease(x.tenantId, period, instance, M, M, 2_000)).toBe(M);
      expect(await expiresIn()).toBeLessThan(3);
      const entry = (cost: bigint) => paidEntry(x.tenantId, period, cost);
      expect(await books.settleLeased(instance, 120_000, [{ tenantId: x.tenantId, period, calls: [entry(5n)] }])).toEqual([{ spent: 5n, cap: 100n * M }]);
      expect(await expiresIn()).toBeGreaterThan(100);
      // A settlement with a shorter time to live leaves the later expiry.
      await books.settleLeased(instance, 1_000, [{ tenantId: x.tenantId, period, calls: [entry(5n)] }]);
      expect(await expiresIn()).toBeGreaterThan(100);
      await books.returnLease(x.tenantId, period, instance, M - 10n);
      await ds.query(`DELETE FROM budget_leases WHERE instance_id = $1`, [instance]);
      await booksBalanced(x.tenantId);
    });

    it("renews on its timer only the leases no settlement renewed lately: a busy tenant's lease is left to its settlements, an idle one's is renewed", async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const [busy, idle] = await Promise.all([1, 2].map(() => f.newTenant({ monthlyBudget: '100.00' })));
      const [busyPeriod, idlePeriod] = await Promise.all([busy, idle].map((x) => budget.currentPeriod(x.tenantId)));
      // A time to live of 6 s: the timer runs every 2 s and renews what no statement renewed in the last 1 s.
      const leases = new BudgetLeases(books, { ttlMs: 6_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind: 1_024, maxBehindPerTenant: 128 }, () => Promise.reject(new Error('no lease is swept here')));
      const idleTicket = await leases.admit(idle.tenantId, idlePeriod, 1_000_000n);
      expect(idleTicket).toMatchObject({ tenantId: idle.tenantId });
      const watch = watchStatements(/UPDATE budget_leases l SET expires_at/);
      let settled = 0;
      try {
        leases.start();
        // The busy tenant's calls, one after another, for two and a half renewal periods.
        const until = Date.now() + 5_000;
        while (Date.now() < until) {
          const ticket = await leases.admit(busy.tenantId, busyPeriod, 1_000_000n);
          expect(ticket).not.toBeNull();
          await leases.settle(ticket!, 1_000n, paidEntry(busy.tenantId, busyPeriod, 1_000n));
          settled++;
        }
        // The busy lease lives on: its last settlement set it a full time to live ahead.
        const [row] = await ds.query(`SELECT extract(epoch FROM expires_at - now())::float8 AS s FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [busy.tenantId, leases.instanceId]);
        expect(row.s).toBeGreaterThan(4);
      } finally {
        watch.stop();
        await leases.close();
      }
      expect(settled).toBeGreaterThan(10);
      // (this instance's renewals: the app's own instance renews its leases too)
      const renewed = watch.statements.filter((s) => s.params[2] === leases.instanceId).map((s) => s.params[0] as string[]);
      expect(renewed.length).toBeGreaterThanOrEqual(1);
      for (const tenants of renewed) expect(tenants).toEqual([idle.tenantId]);
      // The idle tenant's call is still in flight: its worst case stays leased until it is returned here.
      expect(await books.returnLease(idle.tenantId, idlePeriod, leases.instanceId, 1_000_000n)).toBe(true);
      for (const x of [busy, idle]) expect((await booksBalanced(x.tenantId)).leased).toBe(0n);
    });

    it('gives nothing back twice when an instance closes after its lease was swept: the sweeper already freed it', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const x = await f.newTenant({ monthlyBudget: '100.00' });
      const period = await budget.currentPeriod(x.tenantId);
      const leases = new BudgetLeases(books, { ttlMs: 60_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind: 1_024, maxBehindPerTenant: 128 }, () => Promise.reject(new Error('not settled here')));
      const ticket = await leases.admit(x.tenantId, period, 1_000_000n);
      expect(ticket).not.toBeNull();
      const held = leases.holding(x.tenantId);
      expect(held.available).toBeGreaterThan(0n);
      expect((await booksBalanced(x.tenantId)).leased).toBe(held.held);
      // The instance stalls past its lease's expiry: the sweeper returns the whole lease to the budget.
      await ds.query(`UPDATE budget_leases SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND instance_id = $2`, [x.tenantId, leases.instanceId]);
      expect(await books.sweep()).toBeGreaterThanOrEqual(1);
      const [before] = await ds.query(`SELECT reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1 AND period = $2`, [x.tenantId, period]);
      expect(before.reserved).toBe('0');
      // Closing gives back what it thinks it holds: the lease is gone, so nothing moves (reserved stays 0, never negative).
      await leases.close();
      expect(leases.holding(x.tenantId).available).toBe(0n);
      const [after] = await ds.query(`SELECT reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1 AND period = $2`, [x.tenantId, period]);
      expect(after.reserved).toBe('0');
      expect((await booksBalanced(x.tenantId)).leased).toBe(0n);
    });

    it("books what a dead instance's lease last said it promised to calls in flight as a lost_in_flight incident the platform absorbs: written by its settlements, renewals and returns, the tenant charged nothing for it", async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const x = await f.newTenant({ monthlyBudget: '100.00' });
      const period = await budget.currentPeriod(x.tenantId);
      const opts = { ttlMs: 60_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind: 1_024, maxBehindPerTenant: 128 };
      const lostOf = async () =>
        (await ds.query(
          `SELECT excess_nanos::text AS excess, charged_nanos::text AS charged, reserved_nanos::text AS reserved, provider, pauses_admission AS pauses
             FROM budget_incidents WHERE tenant_id = $1 AND kind = 'lost_in_flight' ORDER BY created_at`,
          [x.tenantId],
        )) as Array<Record<string, unknown>>;
      const inFlightRow = async (instance: string) => (await ds.query(`SELECT in_flight_nanos::text AS n FROM budget_leases WHERE tenant_id = $1 AND instance_id = $2`, [x.tenantId, instance]))[0]?.n;
      const dies = async (instance: string) => {
        await ds.query(`UPDATE budget_leases SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND instance_id = $2`, [x.tenantId, instance]);
        await books.sweep();
      };

      // 1. A settlement writes what is still in flight after it: two calls admitted, a third settled.
      const first = new BudgetLeases(books, opts, () => Promise.reject(new Error('not settled here')));
      const [a, b, c] = [await first.admit(x.tenantId, period, 3_000_000n), await first.admit(x.tenantId, period, 2_000_000n), await first.admit(x.tenantId, period, 1_000_000n)];
      expect([a, b, c].every((k) => k !== null)).toBe(true);
      await first.settle(c!, 400_000n, paidEntry(x.tenantId, period, 400_000n));
      expect(await inFlightRow(first.instanceId)).toBe('5000000');
      // It dies with a and b in flight: its lease goes back, and the 5,000,000 they were admitted for is booked.
      await dies(first.instanceId);
      expect(await lostOf()).toEqual([{ excess: '5000000', charged: '0', reserved: '5000000', provider: null, pauses: false }]);
      let books1 = await booksBalanced(x.tenantId);
      expect(books1).toMatchObject({ spent: 400_000n, leased: 0n }); // charged once, for the call it settled; nothing for the lost ones

      // 2. A renewal writes it for a lease no settlement touches (a quiet tenant's long call), and a
      // return keeps it (closing gives back what is unpromised; the call is still in flight).
      // (A time to live of 3 s: a renewal every second, of what no statement renewed in the last half
      // second; the lease outlives the checks after close() on a loaded machine, before the app's sweeper.)
      const second = new BudgetLeases(books, { ...opts, ttlMs: 3_000 }, () => Promise.reject(new Error('not settled here')));
      expect(await second.admit(x.tenantId, period, 700_000n)).not.toBeNull();
      second.start();
      await waitFor(async () => (await inFlightRow(second.instanceId)) === '700000', 10_000, 'the renewal to write the call in flight');
      await second.close();
      expect(await inFlightRow(second.instanceId)).toBe('700000');
      await dies(second.instanceId);
      expect((await lostOf()).map((r) => r.excess)).toEqual(['5000000', '700000']);

      // 3. An instance that dies with nothing in flight books nothing.
      const third = new BudgetLeases(books, opts, () => Promise.reject(new Error('not settled here')));
      const d = await third.admit(x.tenantId, period, 1_000_000n);
      await third.settle(d!, 300_000n, paidEntry(x.tenantId, period, 300_000n));
      expect(await inFlightRow(third.instanceId)).toBe('0');
      await dies(third.instanceId);
      expect(await lostOf()).toHaveLength(2);
      books1 = await booksBalanced(x.tenantId);
      expect(books1).toMatchObject({ spent: 700_000n, leased: 0n });
    });

    it('writes every ledger column of a group commit as given: awkward text, nulls, booleans and large amounts survive the JSON; a lone surrogate becomes U+FFFD; a group on no lease writes nothing', async () => {
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const [a, b, c] = await Promise.all([f.newTenant({ monthlyBudget: '100.00' }), f.newTenant({ monthlyBudget: '100.00' }), f.newTenant({ monthlyBudget: '100.00' })]);
      const periods = await Promise.all([a, b, c].map((x) => budget.currentPeriod(x.tenantId)));
      const instance = `test:${randomUUID()}`;
      const M = 1_000_000_000n;
      for (const [i, x] of [a, b].entries()) expect(await books.takeLease(x.tenantId, periods[i], instance, M, 10n * M, 60_000)).toBe(10n * M);
      const base = { callGroup: randomUUID(), attempt: 1, purpose: 'chat', cacheStatus: 'miss', outcome: 'ok', inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, usageSource: 'none', costNanos: 0n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 0, streamed: false } as const;
      const awkward = 'he said "no", {x} \\ NULL\u00e9 ,';
      const calls: Array<LedgerEntry & { period: string }> = [
        { ...base, tenantId: a.tenantId, period: periods[0], requestId: 'NULL', errorReason: awkward, provider: 'deepseek', model: 'deepseek-chat', tier: 'standard', inputTokens: 120, cachedInputTokens: 64, outputTokens: 7, estimatedInputTokens: 130, usageSource: 'provider', costNanos: 2_000_000_001n, savedNanos: 9_000_000_000_000_000_000n, latencyMs: 17, streamed: true, batch: true, priceWindow: 'off-peak', scheduleSavedNanos: -5n, outcome: 'invalid_output' },
        { ...base, tenantId: a.tenantId, period: periods[0], errorReason: '', apiKeyId: randomUUID(), essayId: randomUUID() },
        // A provider's message cut at 200 characters through an emoji leaves half of it (a lone surrogate).
        { ...base, tenantId: b.tenantId, period: periods[1], costNanos: 3n, errorReason: `${'句'.repeat(3)}\ud83d`, requestId: 'r\udc00' },
        // c holds no lease of this instance: its group settles nothing and writes no row.
        { ...base, tenantId: c.tenantId, period: periods[2], costNanos: 4n },
      ];
      const after = await books.settleLeased(instance, 60_000, [
        { tenantId: a.tenantId, period: periods[0], calls: calls.slice(0, 2) },
        { tenantId: b.tenantId, period: periods[1], calls: calls.slice(2, 3) },
        { tenantId: c.tenantId, period: periods[2], calls: calls.slice(3) },
      ]);
      expect(after).toEqual([{ spent: 2_000_000_001n, cap: 100n * M }, { spent: 3n, cap: 100n * M }, null]);
      const rows = await ds.query(
        `SELECT tenant_id, period, request_id, call_group, attempt, api_key_id, essay_id, purpose, tier, provider, model, cache_status, outcome, error_reason,
                input_tokens, cached_input_tokens, output_tokens, estimated_input_tokens, usage_source, cost_nanos::text, saved_nanos::text,
                compression_saved_tokens, latency_ms, streamed, batch, price_window, schedule_saved_nanos::text
           FROM llm_calls WHERE call_group = $1 AND tenant_id = ANY($2::uuid[]) ORDER BY llm_calls.cost_nanos DESC`,
        [base.callGroup, [a.tenantId, b.tenantId, c.tenantId]],
      );
      expect(rows).toEqual([
        expect.objectContaining({ tenant_id: a.tenantId, request_id: 'NULL', error_reason: awkward, tier: 'standard', input_tokens: 120, cached_input_tokens: 64, output_tokens: 7, estimated_input_tokens: 130, usage_source: 'provider', cost_nanos: '2000000001', saved_nanos: '9000000000000000000', latency_ms: 17, streamed: true, batch: true, price_window: 'off-peak', schedule_saved_nanos: '-5', outcome: 'invalid_output' }),
        expect.objectContaining({ tenant_id: b.tenantId, period: periods[1], cost_nanos: '3', error_reason: '句句句\ufffd', request_id: 'r\ufffd', batch: false, schedule_saved_nanos: null }),
        expect.objectContaining({ tenant_id: a.tenantId, error_reason: '', api_key_id: calls[1].apiKeyId, essay_id: calls[1].essayId, tier: null, provider: null, estimated_input_tokens: null, cost_nanos: '0' }),
      ]);
      for (const [i, x] of [a, b].entries()) await books.returnLease(x.tenantId, periods[i], instance, 10n * M - (i === 0 ? 2_000_000_001n : 3n));
      for (const x of [a, b, c]) await booksBalanced(x.tenantId);
    });

    it('settles the same tenants from two instances at once without a failed statement (the periods are locked in one order)', async () => {
      const tenants = await Promise.all(Array.from({ length: 5 }, () => f.newTenant({ monthlyBudget: '100.00' })));
      const second = await t.another(providerEnv(fake));
      const gw2 = second.get(GatewayService);
      const { failures, spies } = watchSettlementFailures(second);
      fake.setLatency(5);
      try {
        const results = await Promise.all(
          Array.from({ length: 120 }, (_, i) =>
            (i % 2 ? gw2 : gw).complete({ tenantId: tenants[(i * 7) % 5].tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: `overlap ${i}` }], maxTokens: 30 }),
          ),
        );
        expect(results).toHaveLength(120);
        expect(failures).toEqual([]);
      } finally {
        for (const s of spies) s.mockRestore();
        fake.setLatency(0);
      }
      await second.close();
      for (const x of tenants) await booksBalanced(x.tenantId);
    });

    it("settles the same tenants' cache hits from two instances at once without a failed statement (hits lock no period; the roll-up is written in key order)", async () => {
      const tenants = await Promise.all(Array.from({ length: 6 }, () => f.newTenant({ monthlyBudget: '100.00' })));
      const second = await t.another(providerEnv(fake));
      const gws = [gw, second.get(GatewayService)];
      const { failures, spies } = watchSettlementFailures(second);
      const hit = (g: GatewayService, tenantId: string) =>
        g.complete({ tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'the same question' }], maxTokens: 30, cache: { key: 'k-shared-hits', lookup: true, store: true } });
      try {
        // Each instance's first call of each tenant stores (or finds) the answer; then only hits, each
        // tenant's from both instances, the tenants in a different order on each.
        for (const g of gws) for (const x of tenants) await hit(g, x.tenantId);
        const results = await Promise.all(
          Array.from({ length: 600 }, (_, i) => {
            const order = i % 2 ? i % 6 : 5 - (i % 6);
            return hit(gws[i % 2], tenants[order].tenantId);
          }),
        );
        expect(results.every((r) => r.cache === 'hit')).toBe(true);
        // (the hits' rows are written behind their answers: every statement ends before the check)
        await Promise.all([t.app.get(BudgetService), second.get(BudgetService)].map((b) => b.ledgerWritten()));
        expect(failures).toEqual([]);
      } finally {
        for (const s of spies) s.mockRestore();
      }
      await second.close();
      for (const x of tenants) await booksBalanced(x.tenantId);
      const rows = await ds.query(`SELECT tenant_id, sum(calls)::int AS calls FROM ledger_daily WHERE tenant_id = ANY($1) AND cache_status = 'hit' GROUP BY tenant_id`, [tenants.map((x) => x.tenantId)]);
      expect(rows.reduce((a: number, r: { calls: number }) => a + r.calls, 0)).toBeGreaterThanOrEqual(600);
      // What keeps two such statements from deadlocking on the roll-up's rows: it writes them in key order.
      const [{ def }] = await ds.query(`SELECT pg_get_functiondef('ledger_daily_add'::regproc) AS def`);
      expect(def).toMatch(/GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11\s+ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11\s+ON CONFLICT/);
    });

    it('retries a group commit that failed: one ledger row, nothing credited twice, the books balanced', async () => {
      const shaky = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const leases = t.app.get(BudgetService).leases!;
      const failOnce = jest.spyOn(books, 'settleLeased').mockRejectedValueOnce(new Error('connection reset'));
      try {
        const r = await gw.complete({ tenantId: shaky.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'retry my settlement' }], maxTokens: 50 });
        expect(failOnce).toHaveBeenCalledTimes(2);
        const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [shaky.tenantId, r.callGroup]);
        expect(rows).toEqual([{ cost: String(r.costNanos) }]);
        const { leased } = await booksBalanced(shaky.tenantId);
        // What this instance may still admit is exactly what its lease row holds (nothing in flight now).
        expect(leases.holding(shaky.tenantId)).toEqual({ available: leased, held: leased });
      } finally {
        failOnce.mockRestore();
      }
    });

    it('settles in the background a call whose settlement failed all its tries: one ledger row, nothing left in flight', async () => {
      const down = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const failing = jest.spyOn(books, 'settleLeased').mockRejectedValue(new Error('connection reset'));
      try {
        await expect(
          gw.complete({ tenantId: down.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'the database is away' }], maxTokens: 50 }),
        ).rejects.toThrow('connection reset');
        expect(failing).toHaveBeenCalledTimes(3);
        expect(budget.waitingSettlements()).toBe(1);
        // While it stays away, the background tries fail and the settlement keeps waiting.
        expect(await budget.settleWaiting()).toHaveLength(1);
        // The tenant's room is short by the call's worst case meanwhile.
        expect(budget.leases!.holding(down.tenantId)!.held).toBeGreaterThan(budget.leases!.holding(down.tenantId)!.available);
      } finally {
        failing.mockRestore();
      }
      // Back: the next background try (1 s after the one before, then 2 s, 4 s…) writes it.
      await waitFor(() => budget.waitingSettlements() === 0, 10_000, 'the background settlement');
      const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1`, [down.tenantId]);
      expect(rows).toHaveLength(1);
      expect(BigInt(rows[0].cost)).toBeGreaterThan(0n);
      const [{ spent }] = await ds.query(`SELECT spent_nanos::text AS spent FROM budget_periods WHERE tenant_id = $1`, [down.tenantId]);
      expect(spent).toBe(rows[0].cost);
      const { leased } = await booksBalanced(down.tenantId);
      expect(budget.leases!.holding(down.tenantId)).toEqual({ available: leased, held: leased });
    });

    it('writes a settlement still waiting in the background when its instance stops, before the leases go back', async () => {
      const other = await t.another(providerEnv(fake));
      const stopping = await f.newTenant({ monthlyBudget: '100.00' });
      const books = other.get(BooksRepository);
      const failing = jest.spyOn(books, 'settleLeased').mockRejectedValue(new Error('connection reset'));
      try {
        await expect(
          other.get(GatewayService).complete({ tenantId: stopping.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'settle me at shutdown' }], maxTokens: 50 }),
        ).rejects.toThrow('connection reset');
        expect(other.get(BudgetService).waitingSettlements()).toBe(1);
      } finally {
        failing.mockRestore();
      }
      await other.close();
      const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1`, [stopping.tenantId]);
      expect(rows).toHaveLength(1);
      // Its lease went back whole: nothing held, nothing in flight.
      const [lease] = await ds.query(`SELECT coalesce(sum(amount_nanos), 0)::text AS held, coalesce(sum(in_flight_nanos), 0)::text AS in_flight FROM budget_leases WHERE tenant_id = $1`, [stopping.tenantId]);
      expect(lease).toEqual({ held: '0', in_flight: '0' });
      await booksBalanced(stopping.tenantId);
    });

    it('settles a leased incident once when its settlement failed after its worst case left the lease (the retry moves nothing again)', async () => {
      const over = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const held = await budget.reserve(over.tenantId, 1_000_000n);
      expect(held).toMatchObject({ leased: true });
      const moves = jest.spyOn(books, 'leaseToReservation');
      // The move commits, the settlement after it fails once (the database blinked between them).
      const failOnce = jest.spyOn(books, 'settle').mockRejectedValueOnce(new Error('connection reset'));
      const entry = { tenantId: over.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'miss' as const, outcome: 'ok', inputTokens: 5_000, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 1_500_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 5, streamed: false, id: randomUUID() };
      const incident = { estimatedInputTokens: 10, reportedInputTokens: 5_000, maxOutputTokens: 10, reportedOutputTokens: 10 };
      try {
        expect(await budget.settlePaid(held!, 1_500_000n, entry, { incident })).toBe(1_500_000n);
        expect(failOnce).toHaveBeenCalledTimes(2);
        expect(moves).toHaveBeenCalledTimes(1);
      } finally {
        failOnce.mockRestore();
        moves.mockRestore();
      }
      expect(budget.waitingSettlements()).toBe(0);
      const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1`, [over.tenantId]);
      expect(rows).toEqual([{ cost: '1500000' }]);
      const [{ kind }] = await ds.query(`SELECT kind FROM budget_incidents WHERE tenant_id = $1`, [over.tenantId]);
      expect(kind).toBe('tokens_over_bound');
      // What the instance holds is what the books say it leases, all of it unpromised. (The incident
      // paused admission, which revokes the lease: this instance's next tick may be giving it back
      // right now, its slice out of `available` and not yet out of `held`. Read again until it is not:
      // on the embedded PostgreSQL that window was caught once.)
      await waitFor(
        async () => {
          const { leased } = await booksBalanced(over.tenantId);
          const holding = budget.leases!.holding(over.tenantId);
          return holding.available === leased && holding.held === leased;
        },
        10_000,
        'the lease held as the books say, unpromised',
      );
      await ds.query(`UPDATE tenants SET admission_paused = false WHERE id = $1`, [over.tenantId]);
    });

    it('moves a leased worst case once when the move committed but its answer was lost', async () => {
      const lost = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const budget = t.app.get(BudgetService);
      const held = await budget.reserve(lost.tenantId, 1_000_000n);
      const [before] = await ds.query(`SELECT amount_nanos::text AS amount FROM budget_leases WHERE tenant_id = $1`, [lost.tenantId]);
      const lease = { period: held!.period, instance: budget.leases!.instanceId };
      const id = randomUUID();
      expect(await books.leaseToReservation(lost.tenantId, lease.period, lease.instance, id, 1_000_000n, 60_000)).toBe('moved');
      // Sent again (its first answer lost): it finds its reservation and takes nothing more from the lease.
      expect(await books.leaseToReservation(lost.tenantId, lease.period, lease.instance, id, 1_000_000n, 60_000)).toBe('found');
      const [after] = await ds.query(`SELECT amount_nanos::text AS amount FROM budget_leases WHERE tenant_id = $1`, [lost.tenantId]);
      expect(BigInt(after.amount)).toBe(BigInt(before.amount) - 1_000_000n);
      const reservations = await ds.query(`SELECT amount_nanos::text AS amount FROM budget_reservations WHERE tenant_id = $1`, [lost.tenantId]);
      expect(reservations).toEqual([{ amount: '1000000' }]);
      const entry = { tenantId: lost.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'miss' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 300_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 5, streamed: false };
      expect(await budget.settle({ ...held!, id, leased: false }, 300_000n, entry)).toBe(300_000n);
      await booksBalanced(lost.tenantId);
    });

    it('charges a leased call once when its group commit committed but the answer was lost: the retry finds its row', async () => {
      const lost = await f.newTenant({ monthlyBudget: '100.00' });
      const books = t.app.get(BooksRepository);
      const leases = t.app.get(BudgetService).leases!;
      const lossy = answerLostOnce(books, 'settleLeased');
      try {
        const r = await gw.complete({ tenantId: lost.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'lose my answer' }], maxTokens: 50 });
        expect(lossy).toHaveBeenCalledTimes(2);
        expect(r.costNanos).toBeGreaterThan(0n);
        const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [lost.tenantId, r.callGroup]);
        expect(rows).toEqual([{ cost: String(r.costNanos) }]);
        const [{ spent }] = await ds.query(`SELECT spent_nanos::text AS spent FROM budget_periods WHERE tenant_id = $1`, [lost.tenantId]);
        expect(spent).toBe(String(r.costNanos));
        const { leased } = await booksBalanced(lost.tenantId);
        expect(leases.holding(lost.tenantId)).toEqual({ available: leased, held: leased });
      } finally {
        lossy.mockRestore();
      }
    });

    it('charges a call once when its settlement committed but the answer was lost (leases off): the retry answers what was charged', async () => {
      const other = await t.another(providerEnv(fake, { BUDGET_LEASES: 'false' }));
      const lost = await f.newTenant({ monthlyBudget: '100.00' });
      const books = other.get(BooksRepository);
      const lossy = answerLostOnce(books, 'settle');
      try {
        const r = await other.get(GatewayService).complete({ tenantId: lost.tenantId, purpose: 'chat', target: { model: 'dashscope:qwen-flash' }, messages: [{ role: 'user', content: 'lose my answer too' }], maxTokens: 50 });
        expect(lossy).toHaveBeenCalledTimes(2);
        expect(r.costNanos).toBeGreaterThan(0n);
        const rows = await ds.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND call_group = $2`, [lost.tenantId, r.callGroup]);
        expect(rows).toEqual([{ cost: String(r.costNanos) }]);
        const [{ spent, reserved }] = await ds.query(`SELECT spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [lost.tenantId]);
        expect({ spent, reserved }).toEqual({ spent: String(r.costNanos), reserved: '0' });
        await booksBalanced(lost.tenantId);
      } finally {
        lossy.mockRestore();
        await other.close();
      }
    });

    it('returns the reservation of a call that died to the budget when it expires (leases off)', async () => {
      const other = await t.another(providerEnv(fake, { BUDGET_LEASES: 'false' }));
      const budget = other.get(BudgetService);
      const held = await budget.reserve(tenant.tenantId, 1_000_000n);
      expect(held).not.toBeNull();
      expect(held!.leased).toBeUndefined();
      // The process holding it "dies": nobody settles. Age the reservation past its expiry.
      await ds.query(`UPDATE budget_reservations SET expires_at = now() - interval '1 second' WHERE id = $1`, [held!.id]);
      // (The sweep is across tenants: a reservation an earlier test left may expire with it, 72 s
      // after it was made, before the app's own sweep every 30 s takes it.)
      expect(await budget.sweep()).toBeGreaterThanOrEqual(1);
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM budget_reservations WHERE id = $1`, [held!.id]);
      expect(n).toBe(0);
      await booksBalanced();
      expect(await budget.sweep()).toBe(0);
    });
  });
});
