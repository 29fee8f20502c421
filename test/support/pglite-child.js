'use strict';
/**
 * An embedded PostgreSQL (PGlite) for one test file, in a process of its own: PGlite's loader
 * needs dynamic import, which jest's module sandbox does not offer, and a separate process keeps
 * the database's work off the test's event loop, as a real server would.
 *
 * Started with child_process.fork(file, [dumpFile, maxConnections]); sends { url } when ready and
 * exits when its parent disconnects or dies.
 */
const fs = require('node:fs');
const { PGlite } = require('@electric-sql/pglite');
const { PGLiteSocketServer } = require('@electric-sql/pglite-socket');

async function main() {
  const [dumpFile, maxConnections] = process.argv.slice(2);
  const db = await PGlite.create({ loadDataDir: new Blob([fs.readFileSync(dumpFile)]) });
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: Number(maxConnections) });
  await server.start();
  const stop = async () => {
    await server.stop().catch(() => undefined);
    await db.close().catch(() => undefined);
    process.exit(0);
  };
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.send({ url: `postgres://postgres@${server.getServerConn()}/postgres` });
}

main().catch((err) => {
  process.stderr.write(`pglite-child: ${err && err.stack}\n`);
  process.exit(1);
});
