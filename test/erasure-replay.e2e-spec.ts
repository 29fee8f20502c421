import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { createApp } from '../src/app.factory';
import { loadConfig } from '../src/config/app-config';
import { erasuresInLog, reapplyErasures } from '../src/grading/erasure-replay';
import { EssayErasure } from '../src/grading/essay-erasure.service';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp, testEnv } from './support/test-app';
import { serverUrl } from './support/test-database';

const run = promisify(execFile);

/**
 * A restore drill (server only: pg_dump and pg_restore): essays erased after a backup was taken
 * come back when the database is restored from it; the service's log says which they were, and
 * `npm run erasures:reapply` erases them again.
 */
describe('erasures reapplied after a restore from a backup (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;
  const lines: string[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inkstone-restore-'));

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(line);
        done();
      },
    });
    t = await createTestApp({ LOG_LEVEL: 'info', WORKER_POLL_MS: '50' }, { logDestination: sink });
    f = new Factory(t.app);
    tenant = await f.newTenant({ monthlyBudget: '100.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });
  afterAll(async () => {
    await t.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  (serverUrl() ? it : it.skip)('erases again what the log says was erased since the backup, once; essays made after it are not there to erase', async () => {
    const essays = [];
    for (let i = 0; i < 3; i++) essays.push(await f.gradedEssay(teacher, { text: generateEssay(7100 + i, 'zh').text, studentRef: `张${i}` }));
    const [e1, e2, e3] = essays;
    // The backup, then two erasures, then an essay made and erased after it.
    const dump = path.join(dir, 'backup.dump');
    await run('pg_dump', ['-Fc', '-f', dump, t.db.url]);
    const backupTime = new Date();
    await t.http.delete(`/v1/essays/${e1.id}`).set(bearer(teacher)).expect(200);
    await t.http.delete(`/v1/essays/${e2.id}`).set(bearer(tenant.adminKey)).expect(200);
    const e4 = await f.gradedEssay(teacher, { text: generateEssay(7199, 'zh').text });
    await t.http.delete(`/v1/essays/${e4.id}`).set(bearer(teacher)).expect(200);

    // The restore, into a database of its own, and the service started on it.
    const restoredName = `${new URL(t.db.url).pathname.slice(1)}_restored`;
    const admin = new Client({ connectionString: t.db.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${restoredName}`);
    await admin.end();
    const restoredUrl = Object.assign(new URL(t.db.url), { pathname: `/${restoredName}` }).toString();
    await run('pg_restore', ['--no-owner', '-d', restoredUrl, dump]);
    let restored: NestFastifyApplication | undefined;
    try {
      restored = await createApp(loadConfig(testEnv(restoredUrl, { WORKERS_ENABLED: 'false' })));
      const ds = restored.get(DataSource);
      const row = async (id: string) => (await ds.query(`SELECT text, erased_at, grade FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]))[0];
      // The erased essays are back with the backup.
      expect((await row(e1.id)).text).toBe(e1.text);
      expect((await row(e2.id)).erased_at).toBeNull();

      // The log, with other lines and a broken one in it.
      const log = await erasuresInLog(['not json essay erased', ...lines], backupTime);
      expect(log.unreadable).toBe(1);
      expect(log.erasures.map((e) => e.essayId)).toEqual([e1.id, e2.id, e4.id]);
      const result = await reapplyErasures(restored.get(EssayErasure), log.erasures);
      expect(result).toEqual({ found: 3, erasedAgain: [e1.id, e2.id], alreadyErased: 0, notFound: 1, busy: [] });
      for (const e of [e1, e2]) {
        const r = await row(e.id);
        expect(r.text).toBe('');
        expect(r.erased_at).not.toBeNull();
        expect(r.grade).toBeNull();
      }
      expect((await row(e3.id)).text).toBe(e3.text); // not erased, not touched
      // Logged as reapplied, with who asked the first time.
      expect((await ds.query(`SELECT erased_by FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, e2.id]))[0].erased_by).toBe(tenant.admin.keyId);

      // The command, as an operator runs it, on the same log: nothing left to do the second time.
      const logFile = path.join(dir, 'service.log');
      fs.writeFileSync(logFile, `${lines.join('\n')}\n`);
      const out = await run('npx', ['ts-node', '--transpile-only', 'src/reapply-erasures.ts', '--since', backupTime.toISOString(), logFile], {
        cwd: path.resolve(__dirname, '..'),
        env: { ...process.env, ...testEnv(restoredUrl) },
      });
      expect(JSON.parse(out.stdout)).toMatchObject({ found: 3, erasedAgain: [], alreadyErased: 2, notFound: 1, busy: [] });
      // An erasure line it cannot read (a log written with LOG_FORMAT=pretty): exit 3, said on standard error.
      fs.appendFileSync(logFile, `[12:00:00.000] WARN: essay erased {"tenantId":"${tenant.tenantId}"}\n`);
      const unread = await run('npx', ['ts-node', '--transpile-only', 'src/reapply-erasures.ts', '--since', backupTime.toISOString(), logFile], {
        cwd: path.resolve(__dirname, '..'),
        env: { ...process.env, ...testEnv(restoredUrl) },
      }).then(
        () => undefined,
        (e: { code?: number; stdout?: string; stderr?: string }) => e,
      );
      expect(unread?.code).toBe(3);
      expect(JSON.parse(unread!.stdout!)).toMatchObject({ unreadableLines: 1, found: 3 });
      expect(unread?.stderr).toContain('1 "essay erased" line(s) could not be read');
      // A time after every erasure finds none.
      expect((await erasuresInLog(lines, new Date(Date.now() + 60_000))).erasures).toEqual([]);
    } finally {
      await restored?.close();
      const c = new Client({ connectionString: t.db.url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${restoredName} WITH (FORCE)`);
      await c.end();
    }
  }, 120_000);

  it('refuses a --since that is not a time in one line, exit 1, before it reads a log or opens the database', async () => {
    const logFile = path.join(dir, 'unread.log');
    fs.writeFileSync(logFile, `${JSON.stringify({ msg: 'essay erased', essayId: '00000000-0000-4000-8000-000000000000', tenantId: tenant.tenantId, time: Date.now() })}\n`);
    for (const since of ['yesterday', undefined]) {
      const args = ['ts-node', '--transpile-only', 'src/reapply-erasures.ts', '--since', ...(since === undefined ? [] : [since, logFile])];
      // No database at all: were it opened, the error would be a connection's, not this one.
      const err = await run('npx', args, { cwd: path.resolve(__dirname, '..'), env: { ...process.env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } }).then(
        () => undefined,
        (e: { code?: number; stdout?: string; stderr?: string }) => e,
      );
      expect(err?.code).toBe(1);
      expect(err?.stdout).toBe('');
      expect(err?.stderr).toBe('reapply-erasures: --since must be a time, e.g. 2026-12-01T00:00:00Z\n');
    }
  }, 60_000);
});
