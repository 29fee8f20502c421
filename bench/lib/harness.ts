/**
 * What every benchmark needs: a fresh PostgreSQL database, the fake provider and the service as
 * processes of their own (the built service, as `npm start` runs it), and a few HTTP helpers.
 */
import { ChildProcess, execSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';

export const ROOT = path.resolve(__dirname, '../..');
export const OPERATOR = 'bench-operator-token-0123456789';

export function adminDatabaseUrl(): string {
  return process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** A new, empty database for one benchmark run (migrations run when the service starts). */
export async function freshDatabase(name: string): Promise<string> {
  const admin = new Client({ connectionString: adminDatabaseUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminDatabaseUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = new Client({ connectionString: adminDatabaseUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A process's output, kept in memory (the last 4–8 MB); with BENCH_SERVICE_OUTPUT=FILE also appended there whole (V8 traces of a diagnostic). */
function track(child: ChildProcess): () => string {
  let out = '';
  const file = process.env.BENCH_SERVICE_OUTPUT;
  const keep = (d: Buffer) => {
    if (file) fs.appendFileSync(file, d);
    out += d.toString();
    if (out.length > 8_000_000) out = out.slice(-4_000_000); // room for a run under --trace-gc
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => out;
}

async function waitHttp(url: string, child: ChildProcess, output: () => string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited:\n${output().slice(-3000)}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer in time:\n${output().slice(-3000)}`);
}

function stopper(child: ChildProcess) {
  return (signal: NodeJS.Signals = 'SIGTERM') =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
}

/** Any server as a child process (`node <args>`), up once `healthUrl` answers 200. */
export async function startNode(args: string[], healthUrl: (port: number) => string, env: Record<string, string> = {}): Promise<Proc & { port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, args.map((a) => a.replace('{port}', String(port))), {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = track(child);
  await waitHttp(healthUrl(port), child, output);
  return { child, url: `http://127.0.0.1:${port}`, output, stop: stopper(child), port };
}

/** Builds the service once (dist/) so benchmarks run what `npm start` runs. */
export function ensureBuilt(): void {
  if (process.env.BENCH_SKIP_BUILD === '1' && fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) return;
  execSync('npm run -s build', { cwd: ROOT, stdio: 'inherit' });
}

export async function startFake(latencyMs: number): Promise<Proc> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'test/fake-provider/main.ts', '--port', String(port), '--latency', String(latencyMs)], {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = track(child);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/_fake/health`, child, output);
  return { child, url, output, stop: stopper(child) };
}

export function fakeProviderEnv(fakeUrl: string): Record<string, string> {
  return {
    DEEPSEEK_API_KEY: 'bench',
    DEEPSEEK_BASE_URL: `${fakeUrl}/deepseek`,
    ZHIPU_API_KEY: 'bench',
    ZHIPU_BASE_URL: `${fakeUrl}/zhipu/api/paas/v4`,
    DASHSCOPE_API_KEY: 'bench',
    DASHSCOPE_BASE_URL: `${fakeUrl}/dashscope/compatible-mode/v1`,
    OPENAI_API_KEY: 'bench',
    OPENAI_BASE_URL: `${fakeUrl}/openai/v1`,
  };
}

/** The node flags `npm start` runs the service with (package.json's start script): the same here. */
const START_NODE_ARGS: string[] = (() => {
  const start = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start;
  return start.split(/\s+/).filter((a) => a.startsWith('--'));
})();

/**
 * The node flags the built service runs with here: `npm start`'s, then BENCH_NODE_ARGS (a
 * diagnostic, e.g. --trace-gc), after them so that they override them (--max-old-space-size).
 */
export function serviceNodeArgs(): string[] {
  return [...START_NODE_ARGS, ...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [])];
}

export async function startService(env: Record<string, string>): Promise<Proc> {
  const port = await freePort();
  // BENCH_CPU_PROF=<dir> writes a V8 CPU profile of the service to that directory when it stops.
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  // BENCH_SERVICE_CPUS=0: the service on those cores only (taskset execs node, so the pid is node's).
  const pin = process.env.BENCH_SERVICE_CPUS ? ['taskset', '-c', process.env.BENCH_SERVICE_CPUS] : [];
  const argv = [...pin, process.execPath, ...prof, ...serviceNodeArgs(), 'dist/src/main.js'];
  const child = spawn(argv[0], argv.slice(1), {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      INKSTONE_ADMIN_TOKEN: OPERATOR,
      // Webhook secrets are encrypted at rest; a benchmark's throwaway database takes a fixed key.
      INKSTONE_SECRET_KEY: 'be9c'.repeat(16),
      // Throughput benchmarks measure the machine, not the fair-use limits: one key sends thousands
      // of requests a second. bench:fairness sets the limits it measures itself.
      LIMIT_REQUESTS_PER_SECOND_PER_KEY: '1000000',
      LIMIT_REQUEST_BURST_PER_KEY: '1000000',
      LIMIT_REQUESTS_PER_SECOND_PER_TENANT: '1000000',
      LIMIT_REQUEST_BURST_PER_TENANT: '1000000',
      LIMIT_ESSAYS_QUEUED: '10000000',
      LIMIT_ESSAYS_GRADING: '100000',
      LIMIT_CHAT_IN_FLIGHT: '100000',
      LIMIT_PROVIDER_CALLS: '100000',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = track(child);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/health`, child, output);
  return { child, url, output, stop: stopper(child) };
}

export async function json<T = any>(url: string, init: { method?: string; key?: string; body?: unknown } = {}): Promise<T> {
  const res = await fetch(url, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { ...(init.key ? { authorization: `Bearer ${init.key}` } : {}), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url} → ${res.status}: ${text.slice(0, 500)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A tenant with its admin key and a teacher key. */
export async function newTenant(serviceUrl: string, monthlyBudget = '100000.00', timezone = 'Asia/Shanghai') {
  const t = await json<{ tenant: { id: string }; adminKey: string }>(`${serviceUrl}/v1/tenants`, {
    key: OPERATOR,
    body: { name: 'Bench School', monthlyBudget, timezone },
  });
  const teacher = await json<{ key: string }>(`${serviceUrl}/v1/api-keys`, { key: t.adminKey, body: { name: 'bench teacher', role: 'teacher' } });
  return { tenantId: t.tenant.id, adminKey: t.adminKey, teacherKey: teacher.key };
}

/** `n` more tenants made through the operator API, 20 at a time: their admin keys. */
export async function newTenantKeys(serviceUrl: string, n: number, monthlyBudget = '1000.00'): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i += 20) {
    keys.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(20, n - i) }, async () =>
          (await json<{ adminKey: string }>(`${serviceUrl}/v1/tenants`, { key: OPERATOR, body: { name: 'Bench School', monthlyBudget, timezone: 'Asia/Shanghai' } })).adminKey,
        ),
      )),
    );
  }
  return keys;
}

/**
 * The trivial OpenAI-compatible upstream (its own process) and the built service in front of it,
 * chat only (no workers), on a fresh database: what bench:peers and bench/probe-miss.ts load.
 */
export async function startGatewayOverTrivialUpstream(dbName: string, env: Record<string, string> = {}) {
  const upstream = await startNode(['-r', 'ts-node/register/transpile-only', 'bench/lib/trivial-upstream.ts', '--port', '{port}'], (p) => `http://127.0.0.1:${p}/health`);
  const databaseUrl = await freshDatabase(dbName);
  const service = await startService({
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: '20',
    WORKERS_ENABLED: 'false',
    DEEPSEEK_API_KEY: 'bench',
    DEEPSEEK_BASE_URL: upstream.url,
    LLM_STANDARD_MODELS: 'deepseek:deepseek-flash',
    ...env,
  });
  return {
    upstream,
    service,
    databaseUrl,
    stop: async () => {
      await service.stop();
      await upstream.stop();
      await dropDatabase(dbName);
    },
  };
}

export function machine(): Record<string, string | number> {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export function commit(): string {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
  } catch {
    return 'unknown';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function writeResult(file: string, result: unknown): void {
  const dir = path.join(ROOT, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, file), JSON.stringify(result, null, 2) + '\n');
}

/** The entry point of one benchmark script: run it, print and save its result, exit 1 on failure. */
export function runMain<T extends object>(file: string, fn: () => Promise<T>, passed: (r: T) => boolean = () => true): void {
  // The commit the run started from (and built), not whatever HEAD is when it ends.
  const startedAt = commit();
  fn()
    .then((r) => {
      console.log(JSON.stringify(r, null, 2));
      writeResult(file, { at: new Date().toISOString(), commit: startedAt, ...r });
      if (!passed(r)) process.exit(1);
    })
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}

/** Waits until `n` of the tenant's essays have a final status (graded, needs_review, failed), read from the database every 0.5 s. */
export async function waitEssaysDone(db: Client, tenantId: string, n: number, limitMs: number): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const [{ done }] = (await db.query(`SELECT count(*)::int AS done FROM essays WHERE tenant_id = $1 AND status IN ('graded', 'needs_review', 'failed')`, [tenantId])).rows;
    if (done >= n) return;
    if (Date.now() - t0 > limitMs) throw new Error(`only ${done} of ${n} essays done after ${Math.round(limitMs / 1000)} s`);
    await sleep(500);
  }
}
