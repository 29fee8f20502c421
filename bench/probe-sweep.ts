/**
 * What the sweeper's pass costs when the lease table is large (a diagnostic, not a benchmark of
 * record): a fresh database with the service's migrations, SWEEP_LEASES tenants (default 100,000)
 * each with its month's budget period and one live lease of one of four instances, then
 * BooksRepository.sweep() — the statements every instance runs every BUDGET_SWEEP_INTERVAL_MS —
 * timed SWEEP_RUNS times (default 20) with nothing expired, as between instance deaths, and once
 * more with a hundredth of the leases expired (an instance died). No index covers the leases'
 * expires_at (so that a settlement's lease update stays in place), so each pass reads the table.
 *
 *   npx ts-node --transpile-only bench/probe-sweep.ts
 */
import { performance } from 'node:perf_hooks';
import { BooksRepository } from '../src/billing/books.repository';
import { createDataSource, migrate } from '../src/db/data-source';
import { dropDatabase, freshDatabase } from './lib/harness';

async function main() {
  const leases = Number(process.env.SWEEP_LEASES ?? 100_000);
  const runs = Number(process.env.SWEEP_RUNS ?? 20);
  const name = 'inkstone_bench_sweep';
  const ds = createDataSource(await freshDatabase(name), 2);
  await ds.initialize();
  try {
    await migrate(ds);
    // Tenants, periods and live leases, as many instances' settlements leave them.
    await ds.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) SELECT gen_random_uuid(), 'school ' || i, 'Asia/Shanghai', 5000000000000 FROM generate_series(1, $1) i`, [leases]);
    await ds.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos, reserved_nanos) SELECT id, '2026-12', monthly_cap_nanos, 1000000 FROM tenants`);
    await ds.query(
      `INSERT INTO budget_leases (tenant_id, period, instance_id, amount_nanos, expires_at)
       SELECT id, '2026-12', 'host:' || (row_number() OVER () % 4), 1000000, now() + interval '1 hour' FROM tenants`,
    );
    await ds.query('VACUUM ANALYZE budget_periods');
    await ds.query('VACUUM ANALYZE budget_leases');
    const [{ size }] = await ds.query(`SELECT pg_size_pretty(pg_table_size('budget_leases')) AS size`);
    const books = new BooksRepository(ds);
    const ms: number[] = [];
    for (let i = 0; i < runs + 3; i++) {
      const t0 = performance.now();
      const returned = await books.sweep();
      if (i >= 3) ms.push(performance.now() - t0); // three passes to warm the cache first
      if (returned !== 0) throw new Error(`nothing had expired, yet the sweep returned ${returned}`);
    }
    ms.sort((a, b) => a - b);
    // An instance died: a hundredth of the leases past their expiry.
    await ds.query(`UPDATE budget_leases SET expires_at = now() - interval '1 second' WHERE instance_id = 'host:0' AND random() < 0.04`);
    const t0 = performance.now();
    const returned = await books.sweep();
    const deadMs = performance.now() - t0;
    const [{ balanced }] = await ds.query(
      `SELECT count(*) = 0 AS balanced FROM budget_periods p
        WHERE p.reserved_nanos <> coalesce((SELECT sum(amount_nanos) FROM budget_leases l WHERE l.tenant_id = p.tenant_id AND l.period = p.period), 0)`,
    );
    console.log(
      JSON.stringify({
        leases,
        tableSize: size,
        quietPassMs: { p50: +ms[ms.length >> 1].toFixed(1), max: +ms[ms.length - 1].toFixed(1), runs },
        afterAnInstanceDied: { leasesReturned: returned, ms: +deadMs.toFixed(1), periodsMatchTheirLeases: balanced },
      }),
    );
  } finally {
    await ds.destroy();
    await dropDatabase(name);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
