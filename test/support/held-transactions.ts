import type { DataSource, QueryRunner } from 'typeorm';

/**
 * Transactions held open, each on a session of its own, for tests of what two or three transactions
 * at once do (on a PostgreSQL server: the embedded one runs one transaction at a time). Each is
 * begun before the body runs; after it, whatever is still open is rolled back and every session
 * released, whatever the body did.
 */
export async function withHeldTransactions<T>(ds: DataSource, count: number, body: (sessions: QueryRunner[]) => Promise<T>): Promise<T> {
  const sessions: QueryRunner[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const session = ds.createQueryRunner();
      sessions.push(session);
      await session.connect();
      await session.startTransaction();
    }
    return await body(sessions);
  } finally {
    for (const session of sessions) {
      if (session.isTransactionActive) await session.rollbackTransaction();
      await session.release();
    }
  }
}

/** How many of this database's sessions are waiting for a lock now. */
export async function sessionsWaitingForLocks(ds: DataSource): Promise<number> {
  const [row] = await ds.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
  return row.n as number;
}
