import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import type { QueryRunner } from 'typeorm';
import { loadConfig } from '../src/config/app-config';
import { DatabaseConnection } from '../src/db/database';
import { TEST_SECRET_KEY } from './support/spawn-service';
import { createTestDatabase, serverUrl, TestDatabase } from './support/test-database';
import { OPERATOR_TOKEN } from './support/test-app';

/**
 * An instance that freezes inside a transaction (stopped, starved, partitioned from its clients but
 * not from PostgreSQL) keeps the rows it locked: a tenant's budget period, which every other
 * instance's settlements of that tenant (and the other tenants in their group commits) then wait
 * for. PostgreSQL ends such a session after DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS, set on each
 * of the app's connections as it opens them.
 */
describe('the sessions the app opens', () => {
  let db: TestDatabase;
  const onServer = serverUrl() ? it : it.skip;
  const onEmbedded = serverUrl() ? it.skip : it;
  const base = { INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN };
  /** The app's own pool, opened as the app opens it, with the timeout set to `timeoutMs`. */
  const open = (timeoutMs: string) =>
    DatabaseConnection.open(
      loadConfig({ ...base, INKSTONE_SECRET_KEY: TEST_SECRET_KEY, DATABASE_URL: db.url, DATABASE_POOL_SIZE: '2', DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: timeoutMs }),
    );

  beforeAll(async () => {
    db = await createTestDatabase({ maxConnections: 8 });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('ends a session idle in a transaction after a minute by default; 0 turns it off', () => {
    expect(loadConfig(base).databaseIdleInTransactionTimeoutMs).toBe(60_000);
    expect(loadConfig({ ...base, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '0' }).databaseIdleInTransactionTimeoutMs).toBe(0);
    expect(() => loadConfig({ ...base, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '-1' })).toThrow(/DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS/);
  });

  onServer('sets the timeout on each connection it opens, and nothing with 0', async () => {
    for (const [env, shown] of [
      ['1500', '1500ms'],
      ['0', '0'],
    ]) {
      const conn = await open(env);
      try {
        const rows: Array<{ t: string }> = await conn.dataSource.query(`SELECT current_setting('idle_in_transaction_session_timeout') AS t`);
        expect(rows[0].t).toBe(shown);
      } finally {
        await conn.onApplicationShutdown();
      }
    }
  });

  onServer("a frozen instance's transaction is ended and its locks freed: another instance's update of the same budget period goes through, and the frozen one's never lands", async () => {
    const tenant = randomUUID();
    const seed = new Client({ connectionString: db.url });
    let frozen: DatabaseConnection | undefined;
    let other: DatabaseConnection | undefined;
    let held: QueryRunner | undefined;
    try {
      await seed.connect();
      frozen = await open('1000');
      other = await open('0');
      await seed.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) VALUES ($1, 'frozen', 'Asia/Shanghai', 1000)`, [tenant]);
      await seed.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos) VALUES ($1, '2026-12', 1000)`, [tenant]);
      // The frozen instance: inside a transaction, the period locked and changed, then nothing more.
      held = frozen.dataSource.createQueryRunner();
      await held.connect();
      await held.startTransaction();
      await held.query(`UPDATE budget_periods SET spent_nanos = spent_nanos + 7 WHERE tenant_id = $1`, [tenant]);
      // It holds the row: nobody can take it now.
      await expect(seed.query(`SELECT 1 FROM budget_periods WHERE tenant_id = $1 FOR UPDATE NOWAIT`, [tenant])).rejects.toMatchObject({ code: '55P03' });
      // Another instance's settlement of the same period waits for it, and goes through once the
      // server has ended the frozen session (without the timeout it would wait for ever: this test's timeout).
      await other.dataSource.query(`UPDATE budget_periods SET spent_nanos = spent_nanos + 5 WHERE tenant_id = $1`, [tenant]);
      // The frozen instance learns it when it wakes (its connection was dropped, the error caught, not
      // thrown at the process): its transaction is gone, and its change with it.
      await expect(held.query('SELECT 1')).rejects.toThrow(/already released|idle-in-transaction timeout|terminat/i);
      const [row] = await seed.query(`SELECT spent_nanos::text AS spent FROM budget_periods WHERE tenant_id = $1`, [tenant]).then((r) => r.rows);
      expect(row.spent).toBe('5');
      // Its pool opens a new connection for the next statement: the instance works again.
      expect(await frozen.dataSource.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await held?.release().catch(() => undefined);
      await frozen?.onApplicationShutdown();
      await other?.onApplicationShutdown();
      await seed.end();
    }
  });

  onEmbedded("the embedded PostgreSQL ignores it: its connections share one session, which a held transaction must not end", async () => {
    const conn = await open('300');
    try {
      const runner = conn.dataSource.createQueryRunner();
      await runner.connect();
      await runner.startTransaction();
      await runner.query('SELECT 1');
      await new Promise((r) => setTimeout(r, 900));
      await runner.commitTransaction();
      await runner.release();
      expect(await conn.dataSource.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await conn.onApplicationShutdown();
    }
  });
});
