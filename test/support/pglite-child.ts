/**
 * An embedded PostgreSQL (PGlite) for one test file, in a process of its own: PGlite's loader
 * needs dynamic import, which jest's module sandbox does not offer, and a separate process keeps
 * the database's work off the test's event loop, as a real server would.
 *
 * Started with child_process.fork(file, [dumpFile or "-", maxConnections]); sends { url } when ready and
 * exits when its parent disconnects or dies.
 */
import * as fs from 'node:fs';
import { EmbeddedPostgres } from '../../src/db/embedded-postgres';

async function main(): Promise<void> {
  const [dumpFile, maxConnections] = process.argv.slice(2);
  // "-" starts an empty database instead of a template's dump.
  const loadFrom = dumpFile === '-' ? undefined : new Blob([fs.readFileSync(dumpFile)]);
  const pg = await EmbeddedPostgres.start({ loadFrom, maxConnections: Number(maxConnections) });
  const stop = async () => {
    await pg.stop().catch(() => undefined);
    process.exit(0);
  };
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.send!({ url: pg.url });
}

main().catch((err) => {
  process.stderr.write(`pglite-child: ${(err as Error)?.stack}\n`);
  process.exit(1);
});
