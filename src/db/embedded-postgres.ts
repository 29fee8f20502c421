import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { DataSource } from 'typeorm';
import { PgliteSessionQueue } from './pglite-session-queue';

export interface EmbeddedPostgresOptions {
  /** Directory for the database files; omit for an in-memory database (tests). */
  dataDir?: string;
  /** A tarball from `dumpDataDir()` to start from (tests clone a migrated template this way). */
  loadFrom?: Blob;
  /** How many client connections the socket server accepts; set it to the pool size. */
  maxConnections: number;
}

export class EmbeddedPostgresLockedError extends Error {}

/** The name pg gives the socket of port 5432 in a socket folder. */
const SOCKET_NAME = '.s.PGSQL.5432';
/** The longest Unix socket path every system takes (sun_path holds 104 bytes on macOS, 108 on Linux, the NUL included). */
const MAX_SOCKET_PATH = 100;

/**
 * PostgreSQL compiled to WebAssembly (PGlite), served on a loopback port by pglite-socket so that
 * `pg` and TypeORM connect to it exactly as to a real server. Used when DATABASE_URL is unset.
 *
 * PGlite runs one backend session: connections take turns holding it (a statement, or a whole
 * transaction, at a time). That is plenty for one instance on one machine; several instances need a
 * real PostgreSQL (DATABASE_URL).
 */
export class EmbeddedPostgres {
  private constructor(
    private readonly db: PGlite,
    private readonly server: PGLiteSocketServer,
    readonly url: string,
    private readonly lockFile?: string,
  ) {}

  static async start(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
    // Loaded lazily: the WebAssembly module is only needed when no DATABASE_URL is given.
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');

    let lockFile: string | undefined;
    let pgDir: string | undefined;
    let socketDir: string | undefined;
    if (opts.dataDir) {
      fs.mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
      lockFile = path.join(opts.dataDir, 'embedded-postgres.pid');
      takeLock(lockFile);
      pgDir = path.join(opts.dataDir, 'pgdata');
      ownerOnly(pgDir);
      socketDir = path.resolve(opts.dataDir, 'socket');
    }
    try {
      const db = await PGlite.create({ dataDir: pgDir, loadDataDir: opts.loadFrom });
      // With a data directory, the server listens on a Unix socket in a folder only its owner enters:
      // PGlite asks no password, and on a loopback port any local user could read every essay. (A
      // socket path longer than the system takes, about 100 bytes, falls back to the port.)
      const socket = socketDir && Buffer.byteLength(path.join(socketDir, SOCKET_NAME)) <= MAX_SOCKET_PATH ? socketDir : undefined;
      if (socket) {
        ownerOnly(socket);
        fs.rmSync(path.join(socket, SOCKET_NAME), { force: true }); // left by a process that is gone (the lock is ours)
      }
      const server = new PGLiteSocketServer({
        db,
        ...(socket ? { path: path.join(socket, SOCKET_NAME) } : { host: '127.0.0.1', port: 0 }),
        maxConnections: opts.maxConnections,
      });
      // One connection at a time holds the session: see PgliteSessionQueue.
      (server as unknown as { queryQueue: PgliteSessionQueue }).queryQueue = new PgliteSessionQueue(db);
      await server.start();
      // (pg reads a folder as `host` as the folder of a Unix socket named .s.PGSQL.<port>)
      const url = socket ? `postgres://postgres@localhost:5432/postgres?host=${encodeURIComponent(socket)}` : `postgres://postgres@${server.getServerConn()}/postgres`;
      return new EmbeddedPostgres(db, server, url, lockFile);
    } catch (err) {
      if (lockFile) fs.rmSync(lockFile, { force: true });
      throw err;
    }
  }

  /** Where the server listens: its Unix socket's path, or host:port. */
  get listensOn(): string {
    return this.server.getServerConn();
  }

  /** A tarball of the data directory, loadable by `start({ loadFrom })`. */
  async dump(): Promise<Blob> {
    return (await this.db.dumpDataDir('none')) as Blob;
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.db.close();
    if (this.lockFile) fs.rmSync(this.lockFile, { force: true });
  }
}

/**
 * The database's folder, made (or kept) for its owner alone, as PostgreSQL keeps its own: PGlite
 * writes its files readable and writable by everyone (mode 0666), so the students' essays in them
 * were open to every local user wherever the data directory let them in (one made by a volume
 * mount or by hand, mode 0755).
 */
function ownerOnly(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((fs.statSync(dir).mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/** One process per data directory: PGlite would corrupt files shared by two processes. */
function takeLock(file: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new EmbeddedPostgresLockedError(
          `the embedded database in ${path.dirname(file)} is in use by process ${pid}; ` +
            'stop it, or set DATABASE_URL to run several instances on one PostgreSQL',
        );
      }
      fs.rmSync(file, { force: true }); // left by a process that is gone
    }
  }
  throw new EmbeddedPostgresLockedError(`could not lock ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * PGlite (the embedded PostgreSQL, here or behind a URL as the tests use it) serves every
 * connection from its one session, where a statement name prepared on one connection would clash
 * on the next: named prepared statements need a server with a session a connection.
 */
export async function sharesOneSession(ds: DataSource): Promise<boolean> {
  const [{ version }]: Array<{ version: string }> = await ds.query('SELECT version()');
  return /PGlite/i.test(version);
}
