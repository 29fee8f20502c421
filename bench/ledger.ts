/**
 * The tenant reports over a big ledger: GET /v1/usage (by day, by model), GET /v1/stats and the
 * monthly report through the built service's HTTP API, over a generated ledger of LEDGER_ROWS rows
 * (default 10 million) for one tenant, LEDGER_MONTH_ROWS (default 2.56 million) of them in the
 * current month, plus another tenant's rows beside them. The rows are inserted as the service
 * writes them, so the daily roll-up (ledger_daily) is kept by its trigger as they go in. Beside
 * each answer: the same figures by a scan of the ledger (what the reports did before the roll-up),
 * timed once, in SQL. LEDGER_KEEP_DB=1 keeps the database (bench_ledger) afterwards, to read the
 * statements' plans.
 *
 *   npm run bench:ledger
 */
import { Client } from 'pg';
import { commit, dropDatabase, ensureBuilt, freshDatabase, machine, newTenant, runMain, startService } from './lib/harness';

const ROWS = Number(process.env.LEDGER_ROWS ?? 10_000_000);
const MONTH_ROWS = Number(process.env.LEDGER_MONTH_ROWS ?? 2_560_000);
const CHUNK = 250_000;
const RUNS = 30;

export interface LedgerResult {
  commit: string;
  date: string;
  machine: Record<string, string | number>;
  rows: number;
  monthRows: number;
  rollupRows: number;
  insertSeconds: number;
  endpoints: Array<{ name: string; path: string; p50Ms: number; p95Ms: number; maxMs: number; scanMs: number }>;
  passed: boolean;
}

/**
 * Inserts `n` ledger rows for a tenant from `fromDaysAgo` to `toDaysAgo`, evenly spaced and in time
 * order (as the service appends them), in one statement.
 */
async function insertRows(db: Client, tenantId: string, keys: string[], n: number, fromDaysAgo: number, toDaysAgo: number): Promise<void> {
  await db.query(
    `INSERT INTO llm_calls (tenant_id, id, period, created_at, call_group, attempt, api_key_id, purpose, tier, provider, model, cache_status, outcome,
                            input_tokens, cached_input_tokens, output_tokens, usage_source, cost_nanos, saved_nanos, compression_saved_tokens, latency_ms)
     SELECT $1, gen_random_uuid(), to_char(at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM'), at, gen_random_uuid(), 1,
            ($2::uuid[])[1 + (i % array_length($2::uuid[], 1))],
            (ARRAY['grading','grading','grading','deep_review','chat','escalation','shadow'])[1 + (i % 7)],
            (ARRAY['standard','standard','deep'])[1 + (i % 3)],
            (ARRAY['deepseek','dashscope','zhipu','dashscope'])[1 + (i % 4)],
            (ARRAY['deepseek-flash','qwen-flash','glm-5.3-flash','qwen3-max'])[1 + (i % 4)],
            CASE WHEN i % 5 = 0 THEN 'hit' ELSE 'miss' END, CASE WHEN i % 23 = 0 THEN 'fallback' ELSE 'ok' END,
            900 + (i % 700), (i % 300), 250 + (i % 400), 'provider',
            CASE WHEN i % 5 = 0 THEN 0 ELSE 400000 + (i % 900000) END, CASE WHEN i % 5 = 0 THEN 700000 ELSE 0 END, i % 50, 300 + (i % 2000)
       FROM (SELECT i, now() - make_interval(secs => ($3::float8 - ($3::float8 - $4::float8) * i / $5::int) * 86400) AS at
               FROM generate_series(1, $5::int) AS i ORDER BY i) g`,
    [tenantId, keys, fromDaysAgo, toDaysAgo, n],
  );
}

async function timed(url: string, key: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
  await res.text();
  if (!res.ok) throw new Error(`${url} → ${res.status}`);
  return performance.now() - t0;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const round1 = (x: number) => Math.round(x * 10) / 10;

async function main(): Promise<LedgerResult> {
  ensureBuilt();
  const dbName = 'bench_ledger';
  const dbUrl = await freshDatabase(dbName);
  const service = await startService({ DATABASE_URL: dbUrl, WORKERS_ENABLED: 'false' });
  const db = new Client({ connectionString: dbUrl });
  await db.connect();
  try {
    const big = await newTenant(service.url);
    const small = await newTenant(service.url);
    const keys = Array.from({ length: 20 }, (_, i) => `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`);
    const [{ day_of_month }] = (await db.query(`SELECT extract(day FROM now() AT TIME ZONE 'Asia/Shanghai')::int - 1 + extract(hour FROM now() AT TIME ZONE 'Asia/Shanghai')::int / 24.0 AS day_of_month`)).rows;
    const monthDays = Math.max(0.01, Number(day_of_month));
    const t0 = performance.now();
    let done = 0;
    // Oldest first, as the ledger grows: the 90 days before this month, then this month's rows.
    for (const [rows, from, to] of [
      [ROWS - MONTH_ROWS, monthDays + 90, monthDays + 0.001],
      [MONTH_ROWS, monthDays, 0],
    ]) {
      const chunks = Math.max(1, Math.ceil(rows / CHUNK));
      for (let c = 0; c < chunks; c++) {
        const n = Math.floor((rows * (c + 1)) / chunks) - Math.floor((rows * c) / chunks);
        const span = (from - to) / chunks;
        await insertRows(db, big.tenantId, keys, n, from - c * span, from - (c + 1) * span);
        done += n;
        process.stderr.write(`\rbench:ledger: ${done.toLocaleString('en')} rows`);
      }
    }
    await insertRows(db, small.tenantId, keys, 10_000, 30, 0);
    const insertSeconds = Math.round((performance.now() - t0) / 100) / 10;
    process.stderr.write(`\rbench:ledger: ${done.toLocaleString('en')} rows in ${insertSeconds} s; analyzing\n`);
    await db.query('VACUUM ANALYZE llm_calls');
    await db.query('VACUUM ANALYZE ledger_daily');
    const [{ n: rollupRows }] = (await db.query(`SELECT count(*)::int AS n FROM ledger_daily WHERE tenant_id = $1`, [big.tenantId])).rows;
    const [{ period }] = (await db.query(`SELECT to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') AS period`)).rows;

    // What each report scanned before the roll-up (the same SQL the service ran), timed once.
    const scans: Record<string, string> = {
      usageByDay: `SELECT to_char(created_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'), count(*), count(*) FILTER (WHERE cache_status = 'hit'), sum(input_tokens), sum(output_tokens), sum(cost_nanos), sum(saved_nanos)
                     FROM llm_calls WHERE tenant_id = $1 AND created_at >= date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' GROUP BY 1`,
      usageByModel: `SELECT coalesce(provider || ':' || model, 'none'), count(*), count(*) FILTER (WHERE cache_status = 'hit'), sum(input_tokens), sum(output_tokens), sum(cost_nanos), sum(saved_nanos)
                     FROM llm_calls WHERE tenant_id = $1 AND created_at >= date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' GROUP BY 1`,
      stats: `SELECT count(*), count(*) FILTER (WHERE cache_status = 'hit'), sum(input_tokens + output_tokens), sum(cost_nanos), avg(latency_ms) FILTER (WHERE outcome = 'ok') FROM llm_calls WHERE tenant_id = $1`,
      month: `SELECT purpose, tier, provider, model, batch, count(*), sum(cost_nanos), sum(output_tokens) FILTER (WHERE outcome = 'ok') FROM llm_calls WHERE tenant_id = $1 AND period = '${period}' GROUP BY 1, 2, 3, 4, 5`,
    };
    const endpoints: LedgerResult['endpoints'] = [];
    for (const [name, path, scan] of [
      ['usage by day (this month)', '/v1/usage?groupBy=day', 'usageByDay'],
      ['usage by model (this month)', '/v1/usage?groupBy=model', 'usageByModel'],
      ['stats (all time)', '/v1/stats', 'stats'],
      ['monthly report', `/v1/reports/month?period=${period}`, 'month'],
    ] as const) {
      for (let i = 0; i < 3; i++) await timed(`${service.url}${path}`, big.adminKey);
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) times.push(await timed(`${service.url}${path}`, big.adminKey));
      times.sort((a, b) => a - b);
      const s0 = performance.now();
      await db.query(scans[scan], [big.tenantId].slice(0, scans[scan].includes('$1') ? 1 : 0));
      endpoints.push({ name, path, p50Ms: round1(pct(times, 50)), p95Ms: round1(pct(times, 95)), maxMs: round1(times[times.length - 1]), scanMs: Math.round(performance.now() - s0) });
      process.stderr.write(`bench:ledger: ${name}: p95 ${endpoints.at(-1)!.p95Ms} ms (a scan: ${endpoints.at(-1)!.scanMs} ms)\n`);
    }
    return {
      commit: commit(),
      date: new Date().toISOString().slice(0, 10),
      machine: machine(),
      rows: done,
      monthRows: MONTH_ROWS,
      rollupRows,
      insertSeconds,
      endpoints,
      passed: endpoints.every((e) => e.p95Ms < 500),
    };
  } finally {
    await db.end();
    await service.stop();
    if (process.env.LEDGER_KEEP_DB !== '1') await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('ledger.json', main, (r) => r.passed);
