import { ResponseCache } from '../src/llm/response-cache';
import { Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';

/**
 * The answer cache batches the lookups and stores of one moment into one statement across
 * tenants (each key paired with its tenant): batching must never let one tenant read, or
 * overwrite, another's answer under the same key.
 */
describe('the answer cache, batched across tenants', () => {
  let t: TestApp;
  let a: TestTenant;
  let b: TestTenant;

  beforeAll(async () => {
    // LLM_CACHE_MEMORY_MB=0: every lookup goes to the database (no in-process tier in front).
    t = await createTestApp({ LLM_CACHE_MEMORY_MB: '0', LLM_CACHE_MEMORY_TENANT_MB: '0' });
    const f = new Factory(t.app);
    a = await f.newTenant();
    b = await f.newTenant();
  });
  afterAll(() => t.close());

  const answer = (content: string) => ({ content, provider: 'dashscope', model: 'qwen-flash', finishReason: 'stop', usage: { inputTokens: 10, cachedInputTokens: 0, outputTokens: 5 }, costNanos: 123n });

  it("keeps each tenant's answer under the same key when their stores and lookups are batched together", async () => {
    const cache = t.app.get(ResponseCache);
    // Both stores at the same moment: one statement, two rows.
    await Promise.all([cache.put(a.tenantId, 'same-key', answer('A says'), 60), cache.put(b.tenantId, 'same-key', answer('B says'), 60)]);
    const rows = await t.dataSource.query(`SELECT tenant_id, content FROM llm_cache WHERE cache_key = 'same-key' ORDER BY content`);
    expect(rows).toEqual([
      { tenant_id: a.tenantId, content: 'A says' },
      { tenant_id: b.tenantId, content: 'B says' },
    ]);
    // Both lookups at the same moment, plus a key only A has and one nobody has.
    await cache.put(a.tenantId, 'only-a', answer('A only'), 60);
    const [ra, rb, onlyA, bOnlyA, none] = await Promise.all([
      cache.get(a.tenantId, 'same-key'),
      cache.get(b.tenantId, 'same-key'),
      cache.get(a.tenantId, 'only-a'),
      cache.get(b.tenantId, 'only-a'),
      cache.get(a.tenantId, 'nobody'),
    ]);
    expect([ra?.content, rb?.content, onlyA?.content, bOnlyA, none]).toEqual(['A says', 'B says', 'A only', null, null]);
    expect(ra?.costNanos).toBe(123n);
    // Each hit counted on its own tenant's row.
    const hits = await t.dataSource.query(`SELECT tenant_id, cache_key, hits FROM llm_cache ORDER BY tenant_id, cache_key`);
    expect(hits).toEqual(
      expect.arrayContaining([
        { tenant_id: a.tenantId, cache_key: 'same-key', hits: 1 },
        { tenant_id: b.tenantId, cache_key: 'same-key', hits: 1 },
        { tenant_id: a.tenantId, cache_key: 'only-a', hits: 1 },
      ]),
    );
  });

  it('writes the last of two stores of one key at the same moment, and refuses a tenant id that is not one', async () => {
    const cache = t.app.get(ResponseCache);
    await Promise.all([cache.put(a.tenantId, 'twice', answer('first'), 60), cache.put(a.tenantId, 'twice', answer('second'), 60)]);
    expect((await cache.get(a.tenantId, 'twice'))?.content).toBe('second');
    // A bad tenant id is refused before it joins a batch: the others' stores of that moment go through.
    const [bad, good] = await Promise.allSettled([cache.put('not-a-tenant', 'k', answer('x'), 60), cache.put(b.tenantId, 'k', answer('fine'), 60)]);
    expect(bad.status).toBe('rejected');
    expect(good.status).toBe('fulfilled');
  });

  it('forgets a deleted answer and, as maintenance, the expired ones of every tenant (and only those)', async () => {
    const cache = t.app.get(ResponseCache);
    await Promise.all([cache.put(a.tenantId, 'old-a', answer('old'), 60), cache.put(b.tenantId, 'old-b', answer('old'), 60), cache.put(a.tenantId, 'live-a', answer('live'), 60)]);
    await t.dataSource.query(`UPDATE llm_cache SET expires_at = now() - interval '1 second' WHERE cache_key IN ('old-a', 'old-b')`);
    expect(await cache.get(a.tenantId, 'old-a')).toBeNull(); // expired: not answered even before the purge
    expect(await cache.purgeExpired()).toBe(2);
    expect(await cache.purgeExpired()).toBe(0);
    expect((await cache.get(a.tenantId, 'live-a'))?.content).toBe('live');
    await cache.delete(a.tenantId, 'live-a');
    expect(await cache.get(a.tenantId, 'live-a')).toBeNull();
    expect(await t.dataSource.query(`SELECT cache_key FROM llm_cache WHERE cache_key IN ('old-a', 'old-b', 'live-a')`)).toEqual([]);
  });
});

describe('the in-process tier of the answer cache', () => {
  let t: TestApp;
  let a: TestTenant;

  beforeAll(async () => {
    t = await createTestApp({ LLM_CACHE_MEMORY_MB: '8', LLM_CACHE_MEMORY_TENANT_MB: '1' });
    a = await new Factory(t.app).newTenant();
  });
  afterAll(() => t.close());

  const answer = (content: string) => ({ content, provider: 'dashscope', model: 'qwen-flash', finishReason: 'stop', usage: { inputTokens: 10, cachedInputTokens: 0, outputTokens: 5 }, costNanos: 123n });
  const expire = (key: string) => t.dataSource.query(`UPDATE llm_cache SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND cache_key = $2`, [a.tenantId, key]);

  it('holds an answer from its first read, not from its store (one never asked for again takes no heap)', async () => {
    const cache = t.app.get(ResponseCache);
    await cache.put(a.tenantId, 'never-read', answer('stored only'), 60);
    await cache.put(a.tenantId, 'read-once', answer('read again'), 60);
    // The first read finds the row in the database, and the tier takes it.
    expect((await cache.get(a.tenantId, 'read-once'))?.content).toBe('read again');
    // With both rows expired in the database: the one read is answered from memory, the one only
    // stored is not held anywhere.
    await expire('never-read');
    await expire('read-once');
    expect((await cache.get(a.tenantId, 'read-once'))?.content).toBe('read again');
    expect(await cache.get(a.tenantId, 'never-read')).toBeNull();
    // The memory answer was not a database hit: the row counts the one read that reached it.
    const [{ hits }] = await t.dataSource.query(`SELECT hits FROM llm_cache WHERE tenant_id = $1 AND cache_key = 'read-once'`, [a.tenantId]);
    expect(hits).toBe(1);
  });

  it('answers with the new answer after a key it holds is stored again, not the one it held', async () => {
    const cache = t.app.get(ResponseCache);
    await cache.put(a.tenantId, 'replaced', answer('old answer'), 60);
    expect((await cache.get(a.tenantId, 'replaced'))?.content).toBe('old answer'); // now held in memory
    await cache.put(a.tenantId, 'replaced', answer('new answer'), 60);
    expect((await cache.get(a.tenantId, 'replaced'))?.content).toBe('new answer');
    // ...which the tier then holds: with the row expired, still the new one.
    await expire('replaced');
    expect((await cache.get(a.tenantId, 'replaced'))?.content).toBe('new answer');
  });
});
