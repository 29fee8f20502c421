import 'reflect-metadata';
import { DataSource, DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';

/** What the app sets on each of its connections beyond the pool's size. */
export interface SessionOptions {
  /**
   * PostgreSQL ends a session that sits this long inside a transaction without a statement (a
   * frozen instance that holds a tenant's rows locked); 0 or unset: never. The embedded
   * PostgreSQL (PGlite) ignores it: its connections share one session, in this process.
   */
  idleInTransactionTimeoutMs?: number;
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
    },
  };
}

export function createDataSource(url: string, poolSize: number, entities: DataSourceOptions['entities'] = [], session: SessionOptions = {}): DataSource {
  return new DataSource(dataSourceOptions(url, poolSize, entities, session));
}

/** Runs pending migrations under an advisory lock so that instances starting together take turns. */
export async function migrate(ds: DataSource): Promise<string[]> {
  const runner = ds.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock(7263849501)');
    const done = await ds.runMigrations({ transaction: 'each' });
    return done.map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock(7263849501)').catch(() => undefined);
    await runner.release();
  }
}

/** Used by the TypeORM CLI (`npm run migration:run`); it needs DATABASE_URL. */
export default createDataSource(process.env.DATABASE_URL ?? 'postgres://localhost/inkstone', 2);
