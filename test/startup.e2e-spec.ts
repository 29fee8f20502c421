import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collect, exited, freePort, runService, startService } from './support/spawn-service';

const TOKEN = 'startup-test-operator-token';

describe('starting the service as a process', () => {
  it.each([
    [{}, 'INKSTONE_ADMIN_TOKEN is required but not set'],
    [{ INKSTONE_ADMIN_TOKEN: TOKEN, PORT: 'eighty' }, 'PORT must be an integer (got "eighty")'],
    [{ INKSTONE_ADMIN_TOKEN: TOKEN, DATABASE_URL: 'mysql://localhost/x' }, 'DATABASE_URL must start with postgres:// or postgresql:// (got mysql://)'],
    [
      { INKSTONE_ADMIN_TOKEN: TOKEN, LLM_STANDARD_MODELS: 'dashscope:qwen-flash,dashscope:qwen-turbo' },
      'LLM_STANDARD_MODELS names a retired model: dashscope:qwen-turbo was retired by its provider on 2026-10-10; use dashscope:qwen-flash instead',
    ],
  ])('stops with one line naming the bad variable (%j)', async (env, message) => {
    const child = runService(env as NodeJS.ProcessEnv);
    const output = collect(child);
    expect(await exited(child)).toBe(1);
    expect(output().trim().split('\n')).toEqual([`inkstone: configuration error: ${message}`]);
  });

  it('stops with one line when the database cannot be reached, without the framework\'s own log dump', async () => {
    const port = await freePort(); // nothing listens there
    const child = runService({ INKSTONE_ADMIN_TOKEN: TOKEN, DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/inkstone` });
    const output = collect(child);
    expect(await exited(child)).toBe(1);
    expect(output().trim().split('\n')).toEqual([`inkstone: failed to start: connect ECONNREFUSED 127.0.0.1:${port} (ECONNREFUSED)`]);
  });

  it('starts the embedded PostgreSQL when DATABASE_URL is unset and keeps its data across restarts', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'inkstone-start-'));
    fs.chmodSync(dataDir, 0o755); // as a volume mount or a folder made by hand leaves it
    const env = { INKSTONE_ADMIN_TOKEN: TOKEN, INKSTONE_DATA_DIR: dataDir, LOG_LEVEL: 'info' };
    const pgdata = path.join(dataDir, 'pgdata');
    const started: Array<Awaited<ReturnType<typeof startService>>> = [];
    try {
      const first = await startService(env, await freePort());
      started.push(first);
      expect(first.output()).toContain('DATABASE_URL is not set: started the embedded PostgreSQL');
      // The database's files (which PGlite writes mode 0666) are in a folder only the owner enters,
      // and so is its server's socket (PGlite asks no password: on a loopback port, any local user
      // could read every essay).
      expect((fs.statSync(pgdata).mode & 0o777).toString(8)).toBe('700');
      expect(first.output()).toContain(`"listen":"${path.join(dataDir, 'socket', '.s.PGSQL.5432')}"`);
      expect((fs.statSync(path.join(dataDir, 'socket')).mode & 0o777).toString(8)).toBe('700');
      const created = await fetch(`${first.url}/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Persistent School' }),
      });
      expect(created.status).toBe(201);
      const { adminKey } = (await created.json()) as { adminKey: string };
      expect(first.output()).not.toContain(adminKey); // keys never reach the logs

      // A second process on the same data directory would corrupt it: it refuses to start.
      const intruder = runService({ ...env, PORT: String(await freePort()) });
      const intruderOutput = collect(intruder);
      expect(await exited(intruder)).toBe(1);
      expect(intruderOutput()).toMatch(/is in use by process \d+/);
      await first.stop('SIGTERM');
      // A graceful stop closes the embedded database and releases its lock file.
      expect(fs.existsSync(path.join(dataDir, 'embedded-postgres.pid'))).toBe(false);
      expect(fs.existsSync(path.join(dataDir, 'pgdata'))).toBe(true);

      fs.chmodSync(pgdata, 0o755);
      const second = await startService(env, await freePort());
      started.push(second);
      expect((fs.statSync(pgdata).mode & 0o777).toString(8)).toBe('700');
      const keys = await fetch(`${second.url}/v1/api-keys`, { headers: { authorization: `Bearer ${adminKey}` } });
      expect(keys.status).toBe(200);
      expect(((await keys.json()) as { data: unknown[] }).data).toHaveLength(1);
      await second.stop('SIGTERM');
      expect(fs.existsSync(path.join(dataDir, 'embedded-postgres.pid'))).toBe(false);
    } finally {
      // (a failed expectation leaves no service running: the run would wait for it for ever)
      for (const service of started) await service.stop('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
