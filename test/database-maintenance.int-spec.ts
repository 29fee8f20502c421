import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../src/config/app-config';
import { createDataSource } from '../src/db/data-source';
import { DatabaseMaintenance, VACUUM_LOCK, vacuumsOnItsOwn } from '../src/db/maintenance';
import { createTestDatabase, serverUrl, TestDatabase } from './support/test-database';

/**
 * A database that does not vacuum on its own (this machine's server runs with autovacuum off; the
 * embedded PostgreSQL never does) is vacuumed and analyzed by the instance: on both, here.
 */
describe('database maintenance when nothing else vacuums (real PostgreSQL)', () => {
  let db: TestDatabase;
  let ds: DataSource;
  const config = { databaseVacuumIntervalMs: 600_000 } as AppConfig;

  beforeAll(async () => {
    db = await createTestDatabase({ maxConnections: 3 });
    ds = createDataSource(db.url, 2);
    await ds.initialize();
  });
  afterAll(async () => {
    await ds.destroy();
    await db.drop();
  });

  it('leaves it to the database when autovacuum runs there, and not on the embedded one', () => {
    expect(vacuumsOnItsOwn('on', false)).toBe(true);
    expect(vacuumsOnItsOwn('off', false)).toBe(false);
    expect(vacuumsOnItsOwn('on', true)).toBe(false);
  });

  it('starts vacuuming every interval on this database, and stops at shutdown; never with an interval of 0', async () => {
    const every = jest.spyOn(global, 'setInterval');
    const cleared = jest.spyOn(global, 'clearInterval');
    try {
      const off = new DatabaseMaintenance({ databaseVacuumIntervalMs: 0 } as AppConfig, ds);
      await off.onApplicationBootstrap();
      expect(every).not.toHaveBeenCalled();
      const on = new DatabaseMaintenance(config, ds);
      await on.onApplicationBootstrap();
      expect(every).toHaveBeenCalledTimes(1);
      expect(every.mock.calls[0][1]).toBe(600_000);
      on.onApplicationShutdown();
      expect(cleared).toHaveBeenCalledWith(every.mock.results[0].value);
    } finally {
      every.mockRestore();
      cleared.mockRestore();
    }
  });

  it('vacuums and analyzes the whole database: the planner gets statistics where it had none', async () => {
    const tenant = randomUUID();
    await ds.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) VALUES ($1, 'maintenance', 'Asia/Shanghai', 1000)`, [tenant]);
    await ds.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos) VALUES ($1, '2026-12', 1000)`, [tenant]);
    for (let i = 0; i < 20; i++) await ds.query(`UPDATE budget_periods SET spent_nanos = spent_nanos + 1 WHERE tenant_id = $1`, [tenant]);
    const reltuples = async (table: string) => Number((await ds.query(`SELECT reltuples FROM pg_class WHERE relname = $1`, [table]))[0].reltuples);
    expect(await reltuples('budget_periods')).toBe(-1); // never analyzed
    const m = new DatabaseMaintenance(config, ds);
    // Two at once: one vacuum.
    const [a, b] = [m.runOnce(), m.runOnce()];
    expect(a).toBe(b);
    expect(await a).toBe(true);
    expect(await reltuples('budget_periods')).toBe(1);
    expect(await reltuples('tenants')).toBe(1);
    // The books are as they were.
    expect((await ds.query(`SELECT spent_nanos::text AS s FROM budget_periods WHERE tenant_id = $1`, [tenant]))[0].s).toBe('20');
  });

  it('a vacuum that fails is logged and reported, not thrown, and the next one runs', async () => {
    const m = new DatabaseMaintenance(config, ds);
    const query = jest.spyOn(ds, 'createQueryRunner').mockImplementationOnce(() => {
      const r = ds.createQueryRunner();
      const real = r.query.bind(r);
      r.query = ((sql: string, params?: unknown[]) => (sql.startsWith('VACUUM') ? Promise.reject(new Error('canceling statement due to statement timeout')) : real(sql, params))) as typeof r.query;
      return r;
    });
    try {
      expect(await m.runOnce()).toBe(false);
    } finally {
      query.mockRestore();
    }
    expect(await m.runOnce()).toBe(true);
  });

  // Two instances: one vacuums, the other finds the lock taken and leaves it. (On a server only: the
  // embedded PostgreSQL serves every connection from one session, where the lock is the same holder's.)
  (serverUrl() ? it : it.skip)('leaves the vacuum to the instance that holds the lock', async () => {
    const other = ds.createQueryRunner();
    await other.connect();
    try {
      const [{ locked }] = await other.query('SELECT pg_try_advisory_lock($1) AS locked', [VACUUM_LOCK]);
      expect(locked).toBe(true);
      expect(await new DatabaseMaintenance(config, ds).runOnce()).toBe(false);
      await other.query('SELECT pg_advisory_unlock($1)', [VACUUM_LOCK]);
      expect(await new DatabaseMaintenance(config, ds).runOnce()).toBe(true);
    } finally {
      await other.release();
    }
  });
});
