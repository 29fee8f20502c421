import type { EntityManager } from 'typeorm';
import type { Nanos } from '../common/money';
import { perRowTenantQuery, tenantQuery } from '../db/tenant-scope';

/**
 * The answer cache's table (llm_cache), every statement that writes it: the gateway's ResponseCache
 * (llm/response-cache.ts) batches and remembers, this file reads and writes. It lives with the
 * books because a paid call's answer is written by the statement that settles the call
 * (BooksRepository, with cacheRowsSql): one round trip after the answer, not two, and never a
 * cached answer whose call was not settled.
 */

/** An answer to keep in the answer cache: the same request of the same tenant is answered again for nothing. */
export interface CacheEntry {
  key: string;
  content: string;
  provider: string;
  model: string;
  finishReason: string;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  /** what the answer cost: a hit saves this much */
  costNanos: Nanos;
  /** the answer came from a repair (the model's first answer was invalid) */
  repaired: boolean;
  ttlSeconds: number;
}

/** The arrays the rows go in, in this order (each one element a row). */
const ARRAYS = [
  ['tenant_id', 'uuid'],
  ['k', 'text'],
  ['content', 'text'],
  ['provider', 'text'],
  ['model', 'text'],
  ['finish', 'text'],
  ['input', 'int'],
  ['cached', 'int'],
  ['output', 'int'],
  ['cost', 'bigint'],
  ['ttl', 'double precision'],
  ['repaired', 'boolean'],
] as const;

/** How many parameters cacheRowsSql reads (cacheRowsParams gives them). */
export const CACHE_ROWS_PARAMS = ARRAYS.length;

/**
 * The INSERT that keeps answers in llm_cache, one row for each element of the arrays whose
 * parameters are `refs` (e.g. `['$5', '$6', …]`, in cacheRowsParams's order; the tenants' first).
 * A key stored again replaces its row. `cost` is what each row saves (default: the row's own cost;
 * a settlement gives what it charged); `where` keeps only some rows (`t.` names them).
 */
export function cacheRowsSql(refs: string[], opts: { cost?: string; where?: string } = {}): string {
  if (refs.length !== ARRAYS.length) throw new Error(`the answer cache's rows take ${ARRAYS.length} arrays`);
  return `INSERT INTO llm_cache (tenant_id, cache_key, content, provider, model, finish_reason, input_tokens, cached_input_tokens,
                            output_tokens, cost_nanos, expires_at, repaired)
     SELECT t.tenant_id, t.k, t.content, t.provider, t.model, t.finish, t.input, t.cached, t.output, ${opts.cost ?? 't.cost'},
            now() + make_interval(secs => t.ttl), t.repaired
       FROM unnest(${refs.map((r, i) => `${r}::${ARRAYS[i][1]}[]`).join(', ')}) AS t(${ARRAYS.map(([name]) => name).join(', ')})
      ${opts.where ? `WHERE ${opts.where}` : ''}
     ON CONFLICT (tenant_id, cache_key) DO UPDATE
       SET content = EXCLUDED.content, provider = EXCLUDED.provider, model = EXCLUDED.model,
           finish_reason = EXCLUDED.finish_reason, input_tokens = EXCLUDED.input_tokens,
           cached_input_tokens = EXCLUDED.cached_input_tokens, output_tokens = EXCLUDED.output_tokens,
           cost_nanos = EXCLUDED.cost_nanos, created_at = now(), expires_at = EXCLUDED.expires_at, hits = 0, repaired = EXCLUDED.repaired`;
}

/**
 * The rows as cacheRowsSql's arrays. One statement may write a key once only (PostgreSQL refuses
 * to update a row twice), so of one tenant's key the last row given wins.
 */
export function cacheRowsParams(rows: Array<CacheEntry & { tenantId: string }>): unknown[][] {
  const last = [...new Map(rows.map((r) => [`${r.tenantId}:${r.key}`, r])).values()];
  return [
    last.map((r) => r.tenantId),
    last.map((r) => r.key),
    last.map((r) => r.content),
    last.map((r) => r.provider),
    last.map((r) => r.model),
    last.map((r) => r.finishReason),
    last.map((r) => r.inputTokens),
    last.map((r) => r.cachedInputTokens),
    last.map((r) => r.outputTokens),
    last.map((r) => r.costNanos.toString()),
    last.map((r) => r.ttlSeconds),
    last.map((r) => r.repaired),
  ];
}

/** A row found by findAnswers: the answer, and when it expires. */
export type FoundAnswer = Omit<CacheEntry, 'ttlSeconds'> & { expiresAt: Date };

/** Stores answers of any tenants in one statement (each row its tenant's; the last of a key wins). */
export async function storeAnswers(m: EntityManager, rows: Array<CacheEntry & { tenantId: string }>): Promise<void> {
  const [tenants, ...arrays] = cacheRowsParams(rows);
  await perRowTenantQuery(m, tenants as string[], cacheRowsSql(Array.from({ length: CACHE_ROWS_PARAMS }, (_, i) => `$${i + 1}`)), arrays);
}

/**
 * The live answers to keys of any tenants, in one statement: each key matched with its own tenant
 * (a key of one tenant never finds another's row); each row found counts a hit. In the order asked.
 */
export async function findAnswers(m: EntityManager, items: Array<{ tenantId: string; key: string }>): Promise<Array<FoundAnswer | null>> {
  const rows = await perRowTenantQuery<Record<string, string | number | boolean | Date>>(
    m,
    items.map((i) => i.tenantId),
    `UPDATE llm_cache c SET hits = c.hits + 1
       FROM (SELECT DISTINCT tenant_id, cache_key FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, cache_key)) k
      WHERE c.tenant_id = k.tenant_id AND c.cache_key = k.cache_key AND c.expires_at > now()
      RETURNING c.tenant_id, c.cache_key, c.content, c.provider, c.model, c.finish_reason, c.input_tokens, c.cached_input_tokens, c.output_tokens,
                c.cost_nanos, c.repaired, c.expires_at`,
    [items.map((i) => i.key)],
  );
  const found = new Map(
    rows.map((r) => [
      `${String(r.tenant_id)}:${String(r.cache_key)}`,
      {
        key: String(r.cache_key),
        content: String(r.content),
        provider: String(r.provider),
        model: String(r.model),
        finishReason: String(r.finish_reason),
        inputTokens: Number(r.input_tokens),
        cachedInputTokens: Number(r.cached_input_tokens),
        outputTokens: Number(r.output_tokens),
        costNanos: BigInt(r.cost_nanos as string),
        repaired: r.repaired === true,
        expiresAt: r.expires_at as Date,
      } satisfies FoundAnswer,
    ]),
  );
  return items.map((i) => found.get(`${i.tenantId}:${i.key}`) ?? null);
}

/** Forgets one tenant's answer to a key. */
export async function deleteAnswer(m: EntityManager, tenantId: string, key: string): Promise<void> {
  await tenantQuery(m, tenantId, `DELETE FROM llm_cache WHERE tenant_id = $1 AND cache_key = $2`, [key]);
}

/** Drops expired answers of every tenant (maintenance); returns how many. */
export async function deleteExpiredAnswers(m: EntityManager): Promise<number> {
  const res: unknown = await m.query(`DELETE FROM llm_cache WHERE expires_at < now()`);
  return Array.isArray(res) && typeof res[1] === 'number' ? res[1] : 0;
}
