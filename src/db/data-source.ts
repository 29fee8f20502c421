import 'reflect-metadata';
import { DataSource, DataSourceOptions, MigrationExecutor, QueryRunner } from 'typeorm';
import { MIGRATIONS } from '../../migrations';

/** What the app sets on each of its connections beyond the pool's size. */
export interface SessionOptions {
  /**
   * PostgreSQL ends a session that sits this long inside a transaction without a statement (a
   * frozen instance that holds a tenant's rows locked); 0 or unset: never. The embedded
   * PostgreSQL (PGlite) ignores it: its connections share one session, in this process.
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * PostgreSQL cancels a statement that runs, or waits for a lock, longer than this (SQLSTATE
   * 57014; the API answers 503 DATABASE_BUSY); 0 or unset: never. Migrations and vacuums lift it
   * for their own session (`withoutStatementTimeout`). The embedded PostgreSQL ignores it.
   */
  statementTimeoutMs?: number;
}

/**
 * The one set of data source options, shared by the app, the tests and the TypeORM CLI.
 * `synchronize` is off everywhere: the schema changes only through reviewed migrations.
 */
export function dataSourceOptions(url: string, poolSize: number, entities: DataSourceOptions['entities'] = [], session: SessionOptions = {}): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    // The app's entities come from the modules that own them (AppModule passes them); migrations need none.
    entities,
    migrations: MIGRATIONS,
    migrationsTableName: 'typeorm_migrations',
    migrationsTransactionMode: 'each',
    synchronize: false,
    logging: false,
    extra: {
      max: poolSize,
      // A connection that cannot be had within this time is an error, not a hang.
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      application_name: 'inkstone',
      // Sent at connect as the session's setting (node-postgres); absent, the server's default.
      ...(session.idleInTransactionTimeoutMs ? { idle_in_transaction_session_timeout: session.idleInTransactionTimeoutMs } : {}),
      ...(session.statementTimeoutMs ? { statement_timeout: session.statementTimeoutMs } : {}),
    },
  };
}

export function createDataSource(url: string, poolSize: number, entities: DataSourceOptions['entities'] = [], session: SessionOptions = {}): DataSource {
  return new DataSource(dataSourceOptions(url, poolSize, entities, session));
}

/**
 * Runs `work` on one connection with no statement timeout (what a migration or a vacuum of a large
 * table needs, and a wait for another instance's migrations), then gives the connection back to the
 * pool with the session's own setting again.
 */
export async function withoutStatementTimeout<T>(runner: QueryRunner, work: () => Promise<T>): Promise<T> {
  await runner.query('SET statement_timeout = 0');
  try {
    return await work();
  } finally {
    await runner.query('RESET statement_timeout').catch(() => undefined);
  }
}

/**
 * Runs pending migrations under an advisory lock so that instances starting together take turns,
 * on one connection with no statement timeout: a migration may rebuild a large table, and an
 * instance may wait for another's migrations for as long as they take.
 */
export async function migrate(ds: DataSource): Promise<string[]> {
  const runner = ds.createQueryRunner();
  await runner.connect();
  try {
    return await withoutStatementTimeout(runner, async () => {
      await runner.query('SELECT pg_advisory_lock(7263849501)');
      try {
        const executor = new MigrationExecutor(ds, runner);
        executor.transaction = 'each';
        const done = await executor.executePendingMigrations();
        return done.map((m) => m.name);
      } finally {
        await runner.query('SELECT pg_advisory_unlock(7263849501)').catch(() => undefined);
      }
    });
  } finally {
    await runner.release();
  }
}

/** Used by the TypeORM CLI (`npm run migration:run`); it needs DATABASE_URL. */
export default createDataSource(process.env.DATABASE_URL ?? 'postgres://localhost/inkstone', 2);
