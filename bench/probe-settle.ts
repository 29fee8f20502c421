/**
 * What the gateway's settlement statement costs PostgreSQL a call when its calls are of one tenant
 * and when each is another tenant's (a diagnostic, not a benchmark of record): BooksRepository's
 * settleLeased on a fresh migrated database with TENANTS tenants (default 10,000), each with its
 * budget period and a lease of this "instance", ROUNDS statements (default 200) of BATCH calls
 * (default 10) each, alternated three times: all of one tenant (one period, lease and roll-up row
 * a statement) against BATCH tenants (BATCH of each). Prints the wall time and the backend's CPU
 * (from /proc) a call. No service, no HTTP: only the statement, prepared as the app prepares it on
 * a server, on one connection.
 * EXPLAIN=1 also prints the plan of one spread statement, run and rolled back.
 *
 *   BATCH=50 ROUNDS=80 npx ts-node --transpile-only bench/probe-settle.ts
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { BooksRepository, SettlingCall } from '../src/billing/books.repository';
import { createDataSource, migrate } from '../src/db/data-source';
import { usePreparedStatements } from '../src/db/tenant-scope';
import { dropDatabase, freshDatabase } from './lib/harness';

const PERIOD = '2026-12';
const INSTANCE = 'probe-settle';

function call(tenantId: string): SettlingCall {
  return {
    tenantId,
    period: PERIOD,
    requestId: randomUUID(),
    callGroup: randomUUID(),
    attempt: 1,
    purpose: 'chat',
    tier: 'standard',
    provider: 'deepseek',
    model: 'deepseek-chat',
    cacheStatus: 'miss',
    outcome: 'ok',
    inputTokens: 40,
    cachedInputTokens: 0,
    outputTokens: 20,
    usageSource: 'provider',
    costNanos: 1234n,
    savedNanos: 0n,
    compressionSavedTokens: 0,
    latencyMs: 3,
    streamed: false,
    // The answer kept in the cache by the same statement, as a chat completion's miss does.
    cache: { key: randomUUID(), content: 'an answer of about the length the fake provider gives', provider: 'deepseek', model: 'deepseek-chat', finishReason: 'stop', inputTokens: 40, cachedInputTokens: 0, outputTokens: 20, costNanos: 1234n, repaired: false, ttlSeconds: 3600 },
  };
}

async function main() {
  const tenantsN = Number(process.env.TENANTS ?? 10_000);
  const batch = Number(process.env.BATCH ?? 10);
  const rounds = Number(process.env.ROUNDS ?? 200);
  const name = 'inkstone_bench_settle';
  const url = await freshDatabase(name);
  const migrating = createDataSource(url, 2);
  await migrating.initialize();
  await migrate(migrating);
  await migrating.destroy();
  // One connection, so every statement runs on the backend whose CPU is read.
  const ds = createDataSource(url, 1);
  await ds.initialize();
  usePreparedStatements(ds); // as the app does on a server (DATABASE_PREPARED_STATEMENTS): planned once
  try {
    const tenants = Array.from({ length: tenantsN }, () => randomUUID());
    const big = '10000000000000';
    await ds.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) SELECT t, 'probe', 'Asia/Shanghai', $2 FROM unnest($1::uuid[]) t`, [tenants, big]);
    await ds.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos, reserved_nanos) SELECT t, $2, $3, $3::bigint / 10 FROM unnest($1::uuid[]) t`, [tenants, PERIOD, big]);
    await ds.query(
      `INSERT INTO budget_leases (tenant_id, period, instance_id, amount_nanos, expires_at) SELECT t, $2, $3, $4::bigint / 10, now() + interval '1 hour' FROM unnest($1::uuid[]) t`,
      [tenants, PERIOD, INSTANCE, big],
    );
    await ds.query('VACUUM ANALYZE');
    const books = new BooksRepository(ds);
    const [{ pid }] = await ds.query('SELECT pg_backend_pid() AS pid');
    const backendCpuMs = () => {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) * (1000 / 100); // utime + stime, in clock ticks of 10 ms
    };
    let next = 0;
    const groupsOf = (spread: boolean) =>
      spread
        ? Array.from({ length: batch }, () => {
            const t = tenants[next++ % tenants.length];
            return { tenantId: t, period: PERIOD, calls: [call(t)] };
          })
        : [{ tenantId: tenants[0], period: PERIOD, calls: Array.from({ length: batch }, () => call(tenants[0])) }];
    const run = async (spread: boolean) => {
      const cpu0 = backendCpuMs();
      const t0 = performance.now();
      for (let r = 0; r < rounds; r++) {
        const out = await books.settleLeased(INSTANCE, 30_000, groupsOf(spread));
        if (out.some((o) => o === null)) throw new Error('a group did not settle on its lease');
      }
      const calls = rounds * batch;
      return { tenantsAStatement: spread ? batch : 1, callsAStatement: batch, wallMsPerCall: Number(((performance.now() - t0) / calls).toFixed(3)), backendCpuMsPerCall: Number(((backendCpuMs() - cpu0) / calls).toFixed(3)) };
    };
    await run(true); // warm-up of both shapes, not counted
    await run(false);
    for (let i = 0; i < 3; i++) for (const spread of [false, true]) console.log(JSON.stringify(await run(spread)));
    if (process.env.EXPLAIN === '1') {
      // One spread statement's plan: the statement as settleLeased sends it, run inside a transaction and rolled back.
      const pool = (ds.driver as unknown as { master: { query: (...a: unknown[]) => Promise<unknown> } }).master;
      const real = pool.query.bind(pool);
      let captured: { sql: string; params: unknown[] } | undefined;
      pool.query = (sql: unknown, params: unknown) => {
        if (typeof sql === 'string' && /WITH g AS/.test(sql)) captured = { sql, params: params as unknown[] };
        return Promise.resolve({ rows: [] });
      };
      await books.settleLeased(INSTANCE, 30_000, groupsOf(true));
      pool.query = real;
      const runner = ds.createQueryRunner();
      await runner.startTransaction();
      const plan: Array<Record<string, string>> = await runner.query(`EXPLAIN (ANALYZE, TIMING) ${captured!.sql}`, captured!.params);
      await runner.rollbackTransaction();
      await runner.release();
      console.log(plan.map((r) => r['QUERY PLAN'].replace(/'\{[0-9a-f,-]{200,}\}'/g, "'{…}'")).join('\n'));
    }
  } finally {
    await ds.destroy();
    await dropDatabase(name);
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
