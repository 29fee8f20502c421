import type { Nanos } from '../common/money';

/**
 * An answer to keep in the answer cache (llm_cache), so that the same request of the same tenant
 * is answered again for nothing. Written by the statement that settles the call that paid for it
 * (BooksRepository: one round trip, not two, and never a cached answer whose call was not
 * settled), and by ResponseCache for answers that were not paid for by a settlement (a replay).
 */
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
