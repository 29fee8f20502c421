import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { CacheIndex } from '../src/llm/cache-index';
import { ResponseCache } from '../src/llm/response-cache';
import { Factory, TestTenant } from './support/factories';
import { serverUrl } from './support/test-database';
import { createTestApp, TestApp } from './support/test-app';

/**
 * The answer cache's index: a miss of a key no instance stored asks the database nothing; a key
 * another instance stored is found once this one has read what was stored since its last read,
 * and that read misses no committed row, whatever order the transactions committed in.
 *
 * The in-process tier is off (LLM_CACHE_MEMORY_MB=0) and the index reads only when the test says
 * (a poll every minute), so each step shows what the index alone decides. "Asked the database"
 * is seen in the row's hit count: every lookup that finds a row counts a hit on it.
 */
describe('the answer cache index', () => {
  let t: TestApp;
  let a: TestTenant;
  let b: TestTenant;
  let here: ResponseCache;
  let elsewhere: ResponseCache;

  beforeAll(async () => {
    t = await createTestApp({ LLM_CACHE_MEMORY_MB: '0', LLM_CACHE_MEMORY_TENANT_MB: '0', LLM_CACHE_INDEX_POLL_MS: '60000' });
    const f = new Factory(t.app);
    a = await f.newTenant();
    b = await f.newTenant();
    here = t.app.get(ResponseCache);
    elsewhere = (await t.another()).get(ResponseCache);
    await Promise.all([here.index.rebuild(), elsewhere.index.rebuild()]);
  });
  afterAll(() => t.close());

  const answer = (content: string) => ({ content, provider: 'dashscope', model: 'qwen-flash', finishReason: 'stop', usage: { inputTokens: 10, cachedInputTokens: 0, outputTokens: 5 }, costNanos: 123n });
  const hitsOf = async (tenantId: string, key: string) =>
    ((await t.dataSource.query(`SELECT hits FROM llm_cache WHERE tenant_id = $1 AND cache_key = $2`, [tenantId, key])) as Array<{ hits: number }>)[0]?.hits;

  it("answers a key another instance stored once it has read the table again; before, it asks the database nothing", async () => {
    expect(here.index.trusted).toBe(true);
    await elsewhere.put(a.tenantId, 'stored-elsewhere', answer('from the other instance'), 60);
    // Not read yet: a miss without a lookup (the row is there, and nobody counted a hit on it).
    expect(await here.get(a.tenantId, 'stored-elsewhere')).toBeNull();
    expect(await hitsOf(a.tenantId, 'stored-elsewhere')).toBe(0);
    // The instance that stored it knows it at once.
    expect((await elsewhere.get(a.tenantId, 'stored-elsewhere'))?.content).toBe('from the other instance');
    expect(await hitsOf(a.tenantId, 'stored-elsewhere')).toBe(1);
    await here.index.poll();
    expect((await here.get(a.tenantId, 'stored-elsewhere'))?.content).toBe('from the other instance');
    expect(await hitsOf(a.tenantId, 'stored-elsewhere')).toBe(2);
    // Another tenant's lookup of the same key is still a miss, and a key nobody stored too.
    expect(await here.get(b.tenantId, 'stored-elsewhere')).toBeNull();
    expect(await here.get(a.tenantId, 'stored-by-nobody')).toBeNull();
    // A tenant id that is not one is refused, not answered "not cached" by the index.
    await expect(here.get('not-a-tenant', 'stored-by-nobody')).rejects.toThrow('refusing to run a cache lookup without a tenant id');
  });

  // The embedded PostgreSQL runs one session, where one transaction cannot be open while another
  // commits: what this case is about cannot happen there. CI runs the suite on PostgreSQL.
  (serverUrl() ? it : it.skip)('misses no row of a transaction that commits after a later one did', async () => {
    const slow = new Client({ connectionString: t.db.url });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query(
        `INSERT INTO llm_cache (tenant_id, cache_key, content, provider, model, finish_reason, input_tokens, cached_input_tokens, output_tokens, cost_nanos, expires_at)
         VALUES ($1, 'slow-commit', 'late', 'dashscope', 'qwen-flash', 'stop', 1, 0, 1, 1, now() + interval '1 minute')`,
        [a.tenantId],
      );
      // A later transaction commits first, and this instance reads: the slow one is still running.
      await elsewhere.put(a.tenantId, 'fast-commit', answer('early'), 60);
      await here.index.poll();
      expect((await here.get(a.tenantId, 'fast-commit'))?.content).toBe('early');
      expect(await here.get(a.tenantId, 'slow-commit')).toBeNull();
      await slow.query('COMMIT');
      // The next read finds it, though a transaction after it was read before.
      await here.index.poll();
      expect((await here.get(a.tenantId, 'slow-commit'))?.content).toBe('late');
    } finally {
      await slow.end();
    }
  });

  it('forgets expired keys when rebuilt, and reads a key written again after it expired', async () => {
    await elsewhere.put(a.tenantId, 'comes-back', answer('first'), 60);
    await here.index.poll();
    await t.dataSource.query(`UPDATE llm_cache SET expires_at = now() - interval '1 second' WHERE cache_key = 'comes-back'`);
    await here.index.rebuild();
    expect(here.index.mayHold(a.tenantId, 'comes-back')).toBe(false);
    // Stored again (the expired row is rewritten in place, not inserted): the next read sees it.
    await elsewhere.put(a.tenantId, 'comes-back', answer('second'), 60);
    await here.index.poll();
    expect((await here.get(a.tenantId, 'comes-back'))?.content).toBe('second');
  });

  it('asks the database for every miss when its last read is too old, and when there are more keys than it may hold', async () => {
    let now = Date.now();
    const index = new CacheIndex(t.dataSource, { pollMs: 1_000, maxKeys: 1_000_000, now: () => now });
    expect(index.mayHold(a.tenantId, 'anything')).toBe(true); // not built yet
    await index.rebuild();
    expect(index.mayHold(a.tenantId, 'stored-elsewhere')).toBe(true);
    expect(index.mayHold(a.tenantId, 'never-stored')).toBe(false);
    now += 4_001; // four polls missed (the database did not answer, say): no longer trusted
    expect(index.trusted).toBe(false);
    expect(index.mayHold(a.tenantId, 'never-stored')).toBe(true);
    await index.poll();
    expect(index.mayHold(a.tenantId, 'never-stored')).toBe(false);

    const small = new CacheIndex(t.dataSource, { pollMs: 1_000, maxKeys: 1 });
    await small.rebuild();
    expect(small.trusted).toBe(false);
    expect(small.mayHold(a.tenantId, 'never-stored')).toBe(true);
  });

  it('asks the database for every miss while it cannot read the table, and builds again soon after a build failed', async () => {
    // A data source that has not connected: every statement fails, as when the database is away.
    const ds = new DataSource({ type: 'postgres', url: t.db.url, extra: { max: 1 } });
    let now = Date.now();
    const index = new CacheIndex(ds, { pollMs: 250, maxKeys: 1_000_000, now: () => now });
    try {
      await index.refresh(); // the build is due: it fails
      expect(index.trusted).toBe(false);
      expect(index.mayHold(a.tenantId, 'never-stored')).toBe(true);
      await ds.initialize();
      now += 4_000;
      await index.refresh(); // not yet: the next build is due 5 s after the failed one
      expect(index.trusted).toBe(false);
      now += 1_001;
      await index.refresh();
      expect(index.trusted).toBe(true);
      expect(index.mayHold(a.tenantId, 'stored-elsewhere')).toBe(true);
      expect(index.mayHold(a.tenantId, 'never-stored')).toBe(false);
      // The database goes away after the build: the reads fail, and once the last good one is
      // too old (2 s here), every miss asks the database again.
      await ds.destroy();
      await index.refresh();
      expect(index.mayHold(a.tenantId, 'never-stored')).toBe(false);
      now += 2_001;
      await index.refresh();
      expect(index.trusted).toBe(false);
      expect(index.mayHold(a.tenantId, 'never-stored')).toBe(true);
    } finally {
      if (ds.isInitialized) await ds.destroy();
    }
  });

  it('builds from a table larger than one page', async () => {
    await Promise.all(Array.from({ length: 25 }, (_, i) => elsewhere.put(b.tenantId, `paged-${i}`, answer(`p${i}`), 60)));
    const index = new CacheIndex(t.dataSource, { pollMs: 1_000, maxKeys: 1_000_000, pageSize: 4 });
    await index.rebuild();
    for (let i = 0; i < 25; i++) expect(index.mayHold(b.tenantId, `paged-${i}`)).toBe(true);
    expect(index.mayHold(b.tenantId, 'paged-25')).toBe(false);
  });
});
