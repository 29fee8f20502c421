import { DataSource } from 'typeorm';
import type { TenantStatement } from './tenant-scope';

/** The parts of node-postgres's Client this uses (pg 8.23: pipeline mode). */
interface PgClient {
  pipeline: boolean;
  connection: { stream: { cork(): void; uncork(): void } };
  query(sql: string, params?: unknown[]): Promise<{ command: string }>;
}

/**
 * Runs statements, each written by the repository that owns its table, in one transaction and in
 * one round trip: BEGIN, the statements and COMMIT are pipelined (node-postgres's pipeline mode)
 * and leave in one write, and the answers come back together. An explicit transaction otherwise
 * costs a round trip and a write per statement on a held connection; on a busy event loop that
 * halved the essays accepted per second (BENCHMARKS.md).
 *
 * All or nothing: when a statement fails, PostgreSQL refuses the ones after it (the transaction is
 * aborted) and turns the COMMIT into a rollback; the first error is thrown. A connection whose
 * COMMIT did not answer is not given back to the pool.
 */
export async function runAtomically(ds: DataSource, statements: TenantStatement[]): Promise<void> {
  const runner = ds.createQueryRunner();
  const client = (await runner.connect()) as PgClient;
  let broken: Error | undefined;
  const pipelined = client.pipeline;
  try {
    client.pipeline = true;
    const socket = client.connection.stream;
    let sent: Array<Promise<{ command: string }>>;
    socket.cork();
    try {
      sent = [client.query('BEGIN'), ...statements.map((s) => client.query(s.sql, s.params)), client.query('COMMIT')];
    } finally {
      socket.uncork();
    }
    const settled = await Promise.allSettled(sent);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const commit = settled[settled.length - 1];
    if (failed) {
      if (commit.status === 'rejected') broken = failed.reason as Error;
      throw failed.reason;
    }
    const ended = (commit as PromiseFulfilledResult<{ command: string }>).value.command;
    if (ended !== 'COMMIT') throw new Error(`the transaction ended with ${ended}, not COMMIT`);
  } finally {
    client.pipeline = pipelined;
    // TypeORM's PostgresQueryRunner: an error given here keeps the connection out of the pool.
    await (runner as unknown as { releasePostgresConnection(err?: Error): Promise<void> }).releasePostgresConnection(broken);
  }
}
