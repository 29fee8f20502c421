import { randomUUID } from 'node:crypto';
import { Client, Pool } from 'pg';
import { renderError } from '../src/common/error-rendering';
import type { QueryRunner } from 'typeorm';
import { loadConfig } from '../src/config/app-config';
import { DatabaseConnection } from '../src/db/database';
import { TEST_SECRET_KEY } from './support/spawn-service';
import { createTestDatabase, serverUrl, TestDatabase } from './support/test-database';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';

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
  /** The app's own pool, opened as the app opens it, with the idle-in-transaction timeout set to `timeoutMs`. */
  const open = (timeoutMs: string, more: Record<string, string> = {}) =>
    DatabaseConnection.open(
      loadConfig({ ...base, INKSTONE_SECRET_KEY: TEST_SECRET_KEY, DATABASE_URL: db.url, DATABASE_POOL_SIZE: '2', DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: timeoutMs, ...more }),
    );
  const setting = async (conn: DatabaseConnection, name: string) =>
    ((await conn.dataSource.query(`SELECT current_setting($1) AS v`, [name])) as Array<{ v: string }>)[0].v;

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

  it('cancels a statement after two minutes by default; 0 turns it off', () => {
    expect(loadConfig(base).databaseStatementTimeoutMs).toBe(120_000);
    expect(loadConfig({ ...base, DATABASE_STATEMENT_TIMEOUT_MS: '0' }).databaseStatementTimeoutMs).toBe(0);
    expect(() => loadConfig({ ...base, DATABASE_STATEMENT_TIMEOUT_MS: '-1' })).toThrow(/DATABASE_STATEMENT_TIMEOUT_MS/);
    expect(() => loadConfig({ ...base, DATABASE_STATEMENT_TIMEOUT_MS: '2m' })).toThrow(/DATABASE_STATEMENT_TIMEOUT_MS/);
  });

  onServer('sets the statement timeout on each connection it opens, and nothing with 0', async () => {
    for (const [env, shown] of [
      ['1500', '1500ms'],
      ['0', '0'],
    ]) {
      const conn = await open('0', { DATABASE_STATEMENT_TIMEOUT_MS: env });
      try {
        expect(await setting(conn, 'statement_timeout')).toBe(shown);
      } finally {
        await conn.onApplicationShutdown();
      }
    }
  });

  onServer("migrations are not bound by it: an instance waits for another's migrations as long as they take, and its connection then has the timeout again", async () => {
    const other = new Client({ connectionString: db.url });
    await other.connect();
    let conn: DatabaseConnection | undefined;
    try {
      // Another instance is migrating: it holds the migrations' lock for twice the timeout.
      await other.query('SELECT pg_advisory_lock(7263849501)');
      const released = new Promise((r) => setTimeout(r, 1_200)).then(() => other.query('SELECT pg_advisory_unlock(7263849501)'));
      const started = Date.now();
      conn = await open('0', { DATABASE_STATEMENT_TIMEOUT_MS: '600', DATABASE_POOL_SIZE: '1' });
      await released;
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      // One connection in the pool: the one the migrations ran on, with the session's timeout back.
      expect(await setting(conn, 'statement_timeout')).toBe('600ms');
      await expect(conn.dataSource.query('SELECT pg_sleep(1.5)')).rejects.toMatchObject({ code: '57014' });
      expect(await conn.dataSource.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await conn?.onApplicationShutdown();
      await other.end();
    }
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

  it('a pool with no connection free in time is DATABASE_BUSY too, not an internal error', async () => {
    const pool = new Pool({ connectionString: db.url, max: 1, connectionTimeoutMillis: 200 });
    const held = await pool.connect();
    try {
      const err = await pool.connect().then(
        (c) => (c.release(), null),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      const rendered = renderError(err, 'req-1');
      expect(rendered).toMatchObject({ status: 503, code: 'DATABASE_BUSY', headers: { 'retry-after': '5' } });
      // Anything else unknown stays a 500 that says nothing of its cause.
      expect(renderError(new Error('relation "x" does not exist'), 'req-2')).toMatchObject({ status: 500, code: 'INTERNAL' });
    } finally {
      held.release();
      await pool.end();
    }
  });

  describe('a request whose statement waits past the timeout', () => {
    let t: TestApp | undefined;
    afterAll(async () => {
      await t?.close();
    });

    onServer('is answered 503 DATABASE_BUSY with Retry-After, stores nothing, and the pool serves the next request', async () => {
      t = await createTestApp({ DATABASE_STATEMENT_TIMEOUT_MS: '800', DATABASE_POOL_SIZE: '2' });
      const made = await t.http.post('/v1/tenants').set('Authorization', `Bearer ${OPERATOR_TOKEN}`).send({ name: 'Busy school' }).expect(201);
      const admin = `Bearer ${made.body.adminKey}`;
      const tenantId: string = made.body.tenant.id;
      // Something else holds the tenant's row (a long transaction of an operator's, a stalled
      // instance): making a key counts the keys with that row locked, and waits for it.
      const holder = new Client({ connectionString: t.db.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE', [tenantId]);
        const refused = await t.http.post('/v1/api-keys').set('Authorization', admin).send({ name: 'waited', role: 'teacher' });
        expect(refused.status).toBe(503);
        expect(refused.body.error).toMatchObject({ code: 'DATABASE_BUSY', requestId: expect.any(String) });
        expect(refused.body.error.message).toMatch(/did not answer in time; nothing was stored/);
        expect(refused.headers['retry-after']).toBe('5');
        // Both of the pool's connections still serve (the cancelled one was rolled back and given back).
        const [a, b] = await Promise.all([t.http.get('/v1/api-keys').set('Authorization', admin), t.http.get('/v1/rubrics').set('Authorization', admin)]);
        expect([a.status, b.status]).toEqual([200, 200]);
        expect(a.body.data ?? a.body).not.toEqual(expect.arrayContaining([expect.objectContaining({ name: 'waited' })]));
      } finally {
        await holder.query('ROLLBACK');
        await holder.end();
      }
      await t.http.post('/v1/api-keys').set('Authorization', admin).send({ name: 'waited', role: 'teacher' }).expect(201);
      const keys = await t.http.get('/v1/api-keys').set('Authorization', admin).expect(200);
      const names = (keys.body.data ?? keys.body).map((k: { name: string }) => k.name);
      expect(names.filter((n: string) => n === 'waited')).toHaveLength(1);
    });
  });
});
