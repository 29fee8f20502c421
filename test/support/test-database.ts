import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { createDataSource, migrate } from '../../src/db/data-source';
import { EmbeddedPostgres } from '../../src/db/embedded-postgres';

/**
 * Each test file gets a database of its own, cloned from a template that global setup migrated
 * once. With TEST_DATABASE_URL (or DATABASE_URL) set, that is a real PostgreSQL and the clone is
 * `CREATE DATABASE … TEMPLATE …`; without, it is an embedded PostgreSQL (PGlite) loaded from a
 * dump of the migrated template.
 */
export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

const STATE_FILE = path.join(os.tmpdir(), `inkstone-test-${process.env.INKSTONE_TEST_RUN ?? process.pid}.json`);

interface State {
  mode: 'postgres' | 'embedded';
  adminUrl?: string;
  template?: string;
  dumpFile?: string;
}

export function serverUrl(): string | undefined {
  return process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || undefined;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function assertTestDatabase(url: string): void {
  const name = new URL(url).pathname.replace(/^\//, '');
  if (!/test/i.test(name)) {
    throw new Error(`refusing to run tests against database "${name}": its name must contain "test"`);
  }
}

/** Runs once before all tests (jest globalSetup). */
export async function prepareTemplate(runId: string): Promise<void> {
  const url = serverUrl();
  let state: State;
  if (url) {
    assertTestDatabase(url);
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      await dropStale(admin);
      const template = `inkstone_test_r${runId}_tpl`;
      await admin.query(`DROP DATABASE IF EXISTS ${template}`);
      await admin.query(`CREATE DATABASE ${template}`);
      const ds = createDataSource(withDatabase(url, template), 2);
      await ds.initialize();
      await migrate(ds);
      await ds.destroy();
      state = { mode: 'postgres', adminUrl: url, template };
    } finally {
      await admin.end();
    }
  } else {
    const pg = await EmbeddedPostgres.start({ maxConnections: 3 });
    const ds = createDataSource(pg.url, 2);
    await ds.initialize();
    await migrate(ds);
    await ds.destroy();
    const dumpFile = path.join(os.tmpdir(), `inkstone-test-${runId}-template.tar`);
    fs.writeFileSync(dumpFile, Buffer.from(await (await pg.dump()).arrayBuffer()));
    await pg.stop();
    state = { mode: 'embedded', dumpFile };
  }
  fs.writeFileSync(STATE_FILE, JSON.stringify(state));
}

/** Runs once after all tests (jest globalTeardown). */
export async function removeTemplate(): Promise<void> {
  if (!fs.existsSync(STATE_FILE)) return;
  const state = readState();
  if (state.mode === 'postgres' && state.adminUrl && state.template) {
    const admin = new Client({ connectionString: state.adminUrl });
    await admin.connect();
    try {
      const prefix = state.template.replace(/_tpl$/, '');
      const rows = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${prefix}%`]);
      for (const r of rows.rows) await admin.query(`DROP DATABASE IF EXISTS ${r.datname} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  } else if (state.dumpFile) {
    fs.rmSync(state.dumpFile, { force: true });
  }
  fs.rmSync(STATE_FILE, { force: true });
}

function readState(): State {
  return JSON.parse(fs.readFileSync(STATE_FILE, 'utf8')) as State;
}

/** Databases left by runs whose jest process is gone. */
async function dropStale(admin: Client): Promise<void> {
  const rows = await admin.query(`SELECT datname FROM pg_database WHERE datname ~ '^inkstone_test_r[0-9]+_'`);
  for (const r of rows.rows as Array<{ datname: string }>) {
    const pid = Number(/^inkstone_test_r(\d+)_/.exec(r.datname)?.[1]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (!alive) await admin.query(`DROP DATABASE IF EXISTS ${r.datname} WITH (FORCE)`);
  }
}

let counter = 0;

/** A fresh, migrated database for one test file. */
export async function createTestDatabase(opts: { maxConnections?: number } = {}): Promise<TestDatabase> {
  const state = readState();
  if (state.mode === 'postgres') {
    const name = `${state.template!.replace(/_tpl$/, '')}_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = new Client({ connectionString: state.adminUrl });
    await admin.connect();
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await admin.query(`CREATE DATABASE ${name} TEMPLATE ${state.template}`);
          break;
        } catch (err) {
          // Two files cloning the template at the same moment: one waits and tries again.
          if (attempt < 20 && /being accessed by other users/.test((err as Error).message)) {
            await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
            continue;
          }
          throw err;
        }
      }
    } finally {
      await admin.end();
    }
    return {
      url: withDatabase(state.adminUrl!, name),
      drop: async () => {
        const c = new Client({ connectionString: state.adminUrl });
        await c.connect();
        try {
          await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  }
  return startEmbeddedChild(state.dumpFile!, opts.maxConnections ?? 32);
}

/** An embedded PostgreSQL in a child process: from a dump file, or empty with "-". */
export function startEmbeddedChild(dumpFile: string, maxConnections: number): Promise<TestDatabase> {
  const child = fork(path.join(__dirname, 'pglite-child.ts'), [dumpFile, String(maxConnections)], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, TS_NODE_PROJECT: path.resolve(__dirname, '../../tsconfig.json') },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`embedded test database exited with code ${code}`)));
    child.once('message', (msg: { url: string }) => {
      child.removeAllListeners('exit');
      resolve({
        url: msg.url,
        drop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.disconnect();
          }),
      });
    });
  });
}

/**
 * A migrated database of its own for a test file, with one plain `pg` client on it (for specs that
 * read the catalog or write rows as SQL): opened before the file's tests, closed and dropped after.
 */
export function clientForSuite(): { readonly client: import('pg').Client } {
  const suite = {} as { client: import('pg').Client; db: TestDatabase };
  beforeAll(async () => {
    const { Client } = await import('pg');
    suite.db = await createTestDatabase({ maxConnections: 4 });
    suite.client = new Client({ connectionString: suite.db.url });
    await suite.client.connect();
  });
  afterAll(async () => {
    await suite.client?.end();
    await suite.db?.drop();
  });
  return suite;
}
