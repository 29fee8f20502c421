import type { EntityManager } from 'typeorm';
import type { Nanos } from '../common/money';
import { perRowTenantQuery, rowsOf, tenantQuery } from '../db/tenant-scope';

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
  /** the essay whose grading asked for it (erasing the essay deletes the answer); none for a chat call */
  essayId?: string | null;
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
  ['essay', 'uuid'],
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
                            output_tokens, cost_nanos, expires_at, repaired, essay_id)
     SELECT t.tenant_id, t.k, t.content, t.provider, t.model, t.finish, t.input, t.cached, t.output, ${opts.cost ?? 't.cost'},
            now() + make_interval(secs => t.ttl), t.repaired, t.essay
       FROM unnest(${refs.map((r, i) => `${r}::${ARRAYS[i][1]}[]`).join(', ')}) AS t(${ARRAYS.map(([name]) => name).join(', ')})
      ${opts.where ? `WHERE ${opts.where}` : ''}
     ON CONFLICT (tenant_id, cache_key) DO UPDATE
       SET content = EXCLUDED.content, provider = EXCLUDED.provider, model = EXCLUDED.model,
           finish_reason = EXCLUDED.finish_reason, input_tokens = EXCLUDED.input_tokens,
           cached_input_tokens = EXCLUDED.cached_input_tokens, output_tokens = EXCLUDED.output_tokens,
           cost_nanos = EXCLUDED.cost_nanos, created_at = now(), expires_at = EXCLUDED.expires_at, hits = 0, repaired = EXCLUDED.repaired,
           essay_id = EXCLUDED.essay_id,
           stored_xid = pg_current_xact_id()`;
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
    last.map((r) => r.essayId ?? null),
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

/**
 * Deletes the answers the essay's gradings stored (erasure), returning their keys so that every
 * instance can drop them from its in-process tier.
 */
export async function deleteEssayAnswers(m: EntityManager, tenantId: string, essayId: string): Promise<string[]> {
  const rows = await tenantQuery<{ cache_key: string }>(m, tenantId, `DELETE FROM llm_cache WHERE tenant_id = $1 AND essay_id = $2 RETURNING cache_key`, [essayId]);
  return rows.map((r) => r.cache_key);
}

/**
 * Deletes answers stored for essays erased in the last `hours` (a grading that outlived its lease
 * can settle after the erasure); across tenants by design (EssayRetention's cleanup). Returns them.
 */
export async function deleteAnswersOfErased(m: EntityManager, hours: number): Promise<AnswerKey[]> {
  const res: unknown = await m.query(
    `DELETE FROM llm_cache c USING essays e
      WHERE e.erased_at > now() - make_interval(hours => $1) AND c.tenant_id = e.tenant_id AND c.essay_id = e.id
      RETURNING c.tenant_id, c.cache_key`,
    [hours],
  );
  const rows = rowsOf<{ tenant_id: string; cache_key: string }>(res);
  return rows.map((r) => ({ tenantId: r.tenant_id, key: r.cache_key }));
}

/** Drops expired answers of every tenant (maintenance); returns how many. */
export async function deleteExpiredAnswers(m: EntityManager): Promise<number> {
  const res: unknown = await m.query(`DELETE FROM llm_cache WHERE expires_at < now()`);
  return Array.isArray(res) && typeof res[1] === 'number' ? res[1] : 0;
}

/** A key of the answer cache, with its tenant (the cache index's unit). */
export interface AnswerKey {
  tenantId: string;
  key: string;
}

/**
 * A moment in the order of transactions (a snapshot's `xmax` and in-progress `xip`): the rows not
 * yet visible then are the ones written by a transaction at or after `xmax`, or in `xip`.
 */
export interface KeyHorizon {
  xmax: string;
  xip: string[];
}

/** The statement's snapshot `s` as a KeyHorizon's columns. */
const HORIZON_COLUMNS = `pg_snapshot_xmax(s)::text AS xmax, ARRAY(SELECT x::text FROM pg_snapshot_xip(s) x) AS xip`;

/** Now, as a KeyHorizon: the rows committed from here on are what answerKeysSince(now) reads. */
export async function answerKeyHorizon(m: EntityManager): Promise<KeyHorizon> {
  const [row] = (await m.query(`SELECT ${HORIZON_COLUMNS} FROM pg_current_snapshot() s`)) as Array<KeyHorizon>;
  return row;
}

/**
 * One page of the live keys of every tenant, after `after` in key order (maintenance: the cache
 * index's build). Walks the primary key.
 */
export async function liveAnswerKeys(m: EntityManager, after: AnswerKey | null, limit: number): Promise<AnswerKey[]> {
  const rows = (await m.query(
    `SELECT tenant_id, cache_key FROM llm_cache
      WHERE expires_at > now() ${after ? 'AND (tenant_id, cache_key) > ($2::uuid, $3::text)' : ''}
      ORDER BY tenant_id, cache_key LIMIT $1`,
    after ? [limit, after.tenantId, after.key] : [limit],
  )) as Array<{ tenant_id: string; cache_key: string }>;
  return rows.map((r) => ({ tenantId: r.tenant_id, key: r.cache_key }));
}

/** How many live answers there are, of every tenant (maintenance: sizing the cache index). */
export async function countLiveAnswers(m: EntityManager): Promise<number> {
  const [row] = (await m.query(`SELECT count(*)::text AS n FROM llm_cache WHERE expires_at > now()`)) as Array<{ n: string }>;
  return Number(row.n);
}

/**
 * answerKeysSince's statement. It must read `llm_cache` through `llm_cache_stored_xid_idx` alone,
 * even when the table has no statistics (never analyzed: the embedded database, or a server with
 * autovacuum off). Before, PostgreSQL then matched `expires_at > now()` through the expiry index
 * as well — read in full, every live key, four times a second (30–50 ms each with 40,000
 * answers, seen with log_min_duration_statement). So the expiry is checked above a fence (OFFSET
 * 0) that keeps it from the scan, and the range of `stored_xid` is bounded on both sides (below
 * this snapshot's xmax: a row written from there on is not visible to it, and the next read starts
 * there), which PostgreSQL estimates as narrow. test/books-plans.int-spec.ts reads the plan.
 */
export const ANSWER_KEYS_SINCE_SQL = `SELECT ${HORIZON_COLUMNS}, c.tenant_id, c.cache_key
       FROM pg_current_snapshot() s
       LEFT JOIN LATERAL (SELECT tenant_id, cache_key
                            FROM (SELECT tenant_id, cache_key, expires_at FROM llm_cache
                                   WHERE (stored_xid >= $1::xid8 AND stored_xid < pg_snapshot_xmax(pg_current_snapshot())) OR stored_xid = ANY($2::xid8[])
                                  OFFSET 0) written
                           WHERE expires_at > now()) c ON true`;

/**
 * The live keys of every tenant that were not yet committed at `since` (written by a transaction
 * at or after its xmax, or in progress then), and the horizon of this read, in one snapshot: read
 * again from that horizon, every row committed after this read is found, and only the rows of
 * transactions that were running then are read twice. A transaction that stays open for hours
 * costs one id in the list, not a re-read of what was written after it.
 */
export async function answerKeysSince(m: EntityManager, since: KeyHorizon): Promise<{ keys: AnswerKey[]; horizon: KeyHorizon }> {
  const rows = (await m.query(ANSWER_KEYS_SINCE_SQL, [since.xmax, since.xip])) as Array<KeyHorizon & { tenant_id: string | null; cache_key: string | null }>;
  return {
    horizon: { xmax: rows[0].xmax, xip: rows[0].xip },
    keys: rows.filter((r) => r.tenant_id !== null).map((r) => ({ tenantId: r.tenant_id!, key: r.cache_key! })),
  };
}
