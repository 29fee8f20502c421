/**
 * One tenant's read flood: does tenant A's flood of in-limit list and export reads slow tenant B's
 * reads, with A's `readsInFlight` effectively unbounded (as before the bound) and at its default?
 *
 * One service process (the built service, as `npm start` runs it) on a fresh PostgreSQL database,
 * `DATABASE_POOL_SIZE=10`, no provider (essays are graded by the offline grader). Both tenants'
 * request-rate limits are raised by the operator (`PUT /v1/tenants/:id/limits`), so the request
 * rate limiter is not what is measured; the only thing that differs between the flood phases is
 * A's `readsInFlight` (100,000, then null = the default).
 *
 * - Tenant A: one assignment of BENCH_READ_FLOOD_A_ESSAYS essays (class sets of 200, ~800
 *   characters, test/support/essays.ts), all graded before the phases start.
 * - Tenant B: one assignment of BENCH_READ_FLOOD_B_ESSAYS essays, graded.
 * - B's loop (every phase): 2 connections, closed loop, each alternating
 *   `GET /v1/essays?assignmentId=<B's>&limit=20` and `GET /v1/assignments/<B's>` (a worker thread
 *   of its own, so its clock is not behind A's event loop): latency of each request.
 * - A's flood (flood phases): BENCH_READ_FLOOD_A_CONNECTIONS connections of
 *   `GET /v1/essays?limit=100` (pages of all of A's essays, by cursor, round-robin) and
 *   BENCH_READ_FLOOD_A_EXPORTS connections of `GET /v1/assignments/<A's>/grades.csv`, closed
 *   loops; a 429 is waited out per its `Retry-After` (as a client library does), then sent again.
 *   The flood starts 1 s before B's loop (ramp) and stops after it.
 *
 * Phases: B alone; then BENCH_READ_FLOOD_ROUNDS rounds of (flood unbounded, flood bounded), each
 * preceded by a quiet gap; then B alone again (does the baseline drift?). The machine's busy share
 * (all cores) and the part of it not taken by node and postgres processes are read per phase.
 *
 *   npm run bench:read-flood
 *
 * Knobs (environment): BENCH_READ_FLOOD_SECONDS (B's loop per phase, 10), BENCH_READ_FLOOD_GAP_S
 * (quiet gap before each phase, 3), BENCH_READ_FLOOD_ROUNDS (2), BENCH_READ_FLOOD_A_ESSAYS (2000),
 * BENCH_READ_FLOOD_B_ESSAYS (100), BENCH_READ_FLOOD_A_CONNECTIONS (200),
 * BENCH_READ_FLOOD_A_EXPORTS (4), BENCH_READ_FLOOD_B_CONNECTIONS (2), BENCH_SKIP_BUILD=1 (the harness's).
 */
import { execSync } from 'node:child_process';
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { Client } from 'pg';
import { generateEssay } from '../test/support/essays';
import { commit, dropDatabase, ensureBuilt, freshDatabase, json, machine, newTenant, OPERATOR, ROOT, runMain, sleep, startService, waitEssaysDone } from './lib/harness';
import { cpuOf, readShare, shareBetween } from './lib/schedstat';

const CLASS_SET = 200;
const POOL_SIZE = 10;
/** readShare's names (only the machine's busy share is used here: a CI run's jest is node too, so names cannot tell ours apart). */
const OURS = ['node', 'postgres'];
const UNBOUNDED = 100_000;

export interface LatencyStats {
  count: number;
  perSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export interface BSide extends LatencyStats {
  /** HTTP status → count (B is never over a limit: 200 only, or something went wrong) */
  statuses: Record<string, number>;
  essaysList: LatencyStats;
  assignment: LatencyStats;
}

export interface ASide {
  /** requests answered while B's loop ran (A's flood started 1 s before it) */
  lists: { answered: number; perSecond: number; statuses: Record<string, number>; okP50Ms: number | null; okP99Ms: number | null };
  exports: { answered: number; perSecond: number; statuses: Record<string, number>; okP50Ms: number | null; okP99Ms: number | null };
  /** network errors (no answer) */
  errors: number;
}

export interface Phase {
  name: 'alone' | 'unbounded' | 'bounded' | 'alone again';
  round: number | null;
  /** A's readsInFlight during the phase (null: the default) */
  aReadsInFlight: number | null;
  seconds: number;
  /** after the quiet gap, how much longer until none of A's reads was running on the service */
  quietExtraMs: number;
  b: BSide;
  a: ASide | null;
  /** % of all cores busy over the phase */
  machineBusyPct: number;
  /** CPU over the phase, % of one core: the service process, this load generator (both sides), this database's PostgreSQL backends */
  cpu: { servicePct: number; loadGeneratorPct: number; postgresPct: number };
  /** % of all cores: busy minus the three above (whatever else the machine ran: another helper's tests, a CI run) */
  othersBusyPct: number;
  loadAvg1: number;
}

export interface ReadFloodResult {
  command: string;
  date: string;
  commit: string;
  /** files under src/ and migrations/ that differ from that commit when the run started (0: the build is the commit's) */
  srcChanged: number;
  machine: Record<string, string | number>;
  settings: {
    seconds: number;
    gapSeconds: number;
    rounds: number;
    databasePoolSize: number;
    aEssays: number;
    bEssays: number;
    essayChars: string;
    aConnections: number;
    aExports: number;
    bConnections: number;
    aPages: number;
    /** the effective limits of A as GET /v1/limits shows them in the bounded phase */
    aLimitsBounded: Record<string, number>;
    percentiles: string;
    on429: string;
  };
  setup: { aGradedSeconds: number; aStatuses: Record<string, number>; bStatuses: Record<string, number>; gradesCsvBytes: number };
  /** the machine before anything of this run started (3 s): % of all cores busy (all of it others'), load average */
  machineBefore: { busyPct: number; loadAvg1: number };
  phases: Phase[];
  /** B's p50, p95 and p99 under each flood phase ÷ B alone's (the first alone phase) */
  ratios: Array<{ name: string; round: number; p50: number; p95: number; p99: number }>;
  seconds: number;
  passed: boolean;
}

/** Nearest-rank percentile of a sorted list. */
function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

function stats(latencies: number[], seconds: number): LatencyStats {
  const s = [...latencies].sort((a, b) => a - b);
  return {
    count: s.length,
    perSecond: r1(s.length / seconds),
    p50Ms: r1(pct(s, 0.5)),
    p95Ms: r1(pct(s, 0.95)),
    p99Ms: r1(pct(s, 0.99)),
    maxMs: r1(s[s.length - 1] ?? NaN),
    meanMs: r1(s.reduce((a, b) => a + b, 0) / (s.length || 1)),
  };
}

/**
 * B's closed loop, in a worker thread (its own event loop, so A's flood in the main thread does not
 * delay its clock): `connections` loops, each alternating the two reads, for `seconds`.
 * Posts back [route, ms, status] for every request.
 */
const B_LOOP = `
const { parentPort, workerData } = require('node:worker_threads');
const { urls, key, connections, seconds } = workerData;
(async () => {
  const out = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: connections }, async (_, c) => {
    let i = c;
    while (performance.now() < until) {
      const route = i++ % urls.length;
      const t0 = performance.now();
      let status = 0;
      try {
        const res = await fetch(urls[route], { headers: { authorization: 'Bearer ' + key } });
        await res.arrayBuffer();
        status = res.status;
      } catch { status = -1; }
      out.push([route, performance.now() - t0, status]);
    }
  }));
  parentPort.postMessage(out);
})().catch((e) => parentPort.postMessage({ error: String(e) }));
`;

function runB(urls: string[], key: string, connections: number, seconds: number): Promise<Array<[number, number, number]>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(B_LOOP, { eval: true, workerData: { urls, key, connections, seconds } });
    w.once('message', (m) => {
      if (m && !Array.isArray(m)) reject(new Error(`B's loop failed: ${m.error}`));
      else resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

function bSide(rows: Array<[number, number, number]>, seconds: number): BSide {
  const statuses: Record<string, number> = {};
  for (const [, , s] of rows) statuses[s] = (statuses[s] ?? 0) + 1;
  return {
    ...stats(rows.map((x) => x[1]), seconds),
    statuses,
    essaysList: stats(rows.filter((x) => x[0] === 0).map((x) => x[1]), seconds),
    assignment: stats(rows.filter((x) => x[0] === 1).map((x) => x[1]), seconds),
  };
}

/** A's flood: closed loops until stopped; counts only what is answered between `measure()` and `stop()`. */
function startFlood(listUrls: string[], exportUrl: string, key: string, connections: number, exports: number) {
  // One controller per request (one shared signal would collect a listener per request for the whole phase).
  const inFlight = new Set<AbortController>();
  let stopped = false;
  let measuring = false;
  let t0 = 0;
  const lists = { statuses: {} as Record<string, number>, ok: [] as number[] };
  const csv = { statuses: {} as Record<string, number>, ok: [] as number[] };
  let errors = 0;
  let page = 0;
  const loop = async (kind: 'list' | 'export') => {
    const into = kind === 'list' ? lists : csv;
    while (!stopped) {
      const url = kind === 'list' ? listUrls[page++ % listUrls.length] : exportUrl;
      const start = performance.now();
      let retryAfter = 0;
      const ac = new AbortController();
      inFlight.add(ac);
      try {
        const res = await fetch(url, { headers: { authorization: `Bearer ${key}` }, signal: ac.signal });
        await res.arrayBuffer();
        if (measuring) {
          into.statuses[res.status] = (into.statuses[res.status] ?? 0) + 1;
          if (res.status === 200) into.ok.push(performance.now() - start);
        }
        if (res.status === 429) retryAfter = Number(res.headers.get('retry-after') ?? 1);
      } catch {
        if (stopped) return;
        if (measuring) errors++;
        retryAfter = 0.1;
      } finally {
        inFlight.delete(ac);
      }
      if (retryAfter > 0 && !stopped) await sleep(retryAfter * 1000);
    }
  };
  const loops = [...Array.from({ length: connections }, () => loop('list')), ...Array.from({ length: exports }, () => loop('export'))];
  return {
    measure() {
      measuring = true;
      t0 = performance.now();
    },
    async stop(): Promise<ASide> {
      measuring = false;
      const seconds = (performance.now() - t0) / 1000;
      stopped = true;
      for (const ac of inFlight) ac.abort();
      await Promise.all(loops);
      const side = (x: typeof lists) => {
        const ok = [...x.ok].sort((a, b) => a - b);
        const answered = Object.values(x.statuses).reduce((a, b) => a + b, 0);
        return {
          answered,
          perSecond: r1(answered / seconds),
          statuses: x.statuses,
          okP50Ms: ok.length ? r1(pct(ok, 0.5)) : null,
          okP99Ms: ok.length ? r1(pct(ok, 0.99)) : null,
        };
      };
      return { lists: side(lists), exports: side(csv), errors };
    },
  };
}

async function statusesOf(db: Client, tenantId: string): Promise<Record<string, number>> {
  const rows = (await db.query(`SELECT status, count(*)::int AS n FROM essays WHERE tenant_id = $1 GROUP BY status ORDER BY status`, [tenantId])).rows;
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

export async function runReadFlood(): Promise<ReadFloodResult> {
  const seconds = Number(process.env.BENCH_READ_FLOOD_SECONDS ?? 10);
  const gapSeconds = Number(process.env.BENCH_READ_FLOOD_GAP_S ?? 3);
  const rounds = Number(process.env.BENCH_READ_FLOOD_ROUNDS ?? 2);
  const aEssays = Number(process.env.BENCH_READ_FLOOD_A_ESSAYS ?? 2000);
  const bEssays = Number(process.env.BENCH_READ_FLOOD_B_ESSAYS ?? 100);
  const aConnections = Number(process.env.BENCH_READ_FLOOD_A_CONNECTIONS ?? 200);
  const aExports = Number(process.env.BENCH_READ_FLOOD_A_EXPORTS ?? 4);
  const bConnections = Number(process.env.BENCH_READ_FLOOD_B_CONNECTIONS ?? 2);
  const started = new Date();
  const t0 = Date.now();
  // The commit the run started from (and built); src/ as committed or not.
  const startedAt = commit();
  const srcChanged = execSync('git status --porcelain -- src migrations', { cwd: ROOT }).toString().trim().split('\n').filter(Boolean).length;

  const idle = readShare(OURS);
  const idleLoad = os.loadavg()[0];
  await sleep(3_000);
  const machineBefore = { busyPct: shareBetween(idle, readShare(OURS)).busyPct, loadAvg1: r2(idleLoad) };

  ensureBuilt();
  const dbName = 'inkstone_bench_read_flood';
  const databaseUrl = await freshDatabase(dbName);
  // No provider keys: every essay is graded by the offline grader.
  const service = await startService({ DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: String(POOL_SIZE), WORKER_POLL_MS: '100' });
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const a = await newTenant(service.url);
    const b = await newTenant(service.url);
    const setLimits = (tenantId: string, limits: Record<string, number | null>) =>
      json(`${service.url}/v1/tenants/${tenantId}/limits`, { method: 'PUT', key: OPERATOR, body: limits });
    const rates = { requestsPerSecondPerKey: 1_000_000, requestBurstPerKey: 1_000_000, requestsPerSecondPerTenant: 1_000_000, requestBurstPerTenant: 1_000_000 };
    await setLimits(a.tenantId, rates);
    await setLimits(b.tenantId, rates);

    const assignment = (key: string, title: string) =>
      json<{ id: string }>(`${service.url}/v1/assignments`, {
        key,
        body: { title, prompt: '以“那一刻，我长大了”为题，写一篇不少于600字的记叙文。', rubric: 'zh-gaokao-60' },
      });
    const aAssignment = await assignment(a.teacherKey, '九年级 第三单元作文 (A)');
    const bAssignment = await assignment(b.teacherKey, '九年级 第三单元作文 (B)');
    const submit = async (key: string, assignmentId: string, n: number, seed: number) => {
      for (let i = 0; i < n; i += CLASS_SET) {
        const essays = Array.from({ length: Math.min(CLASS_SET, n - i) }, (_, j) => ({
          text: generateEssay(seed + i + j, 'zh', { targetChars: 800 }).text,
          studentRef: `s${i + j}`,
        }));
        await json(`${service.url}/v1/essays/batch`, { key, body: { assignmentId, essays } });
      }
    };
    process.stdout.write(`read-flood: submitting ${aEssays} essays for A, ${bEssays} for B…\n`);
    const tSubmit = Date.now();
    await submit(a.teacherKey, aAssignment.id, aEssays, 100_000);
    await submit(b.teacherKey, bAssignment.id, bEssays, 500_000);
    await waitEssaysDone(db, a.tenantId, aEssays, 15 * 60_000);
    await waitEssaysDone(db, b.tenantId, bEssays, 5 * 60_000);
    const aGradedSeconds = r1((Date.now() - tSubmit) / 1000);
    process.stdout.write(`read-flood: all graded after ${aGradedSeconds} s\n`);

    // A's pages of 100: every cursor, so the flood reads all of A's essays round-robin.
    const listUrls: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `${service.url}/v1/essays?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      listUrls.push(url);
      cursor = (await json<{ nextCursor: string | null }>(url, { key: a.teacherKey })).nextCursor;
    } while (cursor);
    const exportUrl = `${service.url}/v1/assignments/${aAssignment.id}/grades.csv`;
    const gradesCsvBytes = (await (await fetch(exportUrl, { headers: { authorization: `Bearer ${a.teacherKey}` } })).arrayBuffer()).byteLength;
    const bUrls = [`${service.url}/v1/essays?assignmentId=${bAssignment.id}&limit=20`, `${service.url}/v1/assignments/${bAssignment.id}`];

    // Warm-up: B's loop and a short flood, so the first phase does not pay for JIT and cold pools.
    process.stdout.write('read-flood: warm-up…\n');
    await setLimits(a.tenantId, { readsInFlight: UNBOUNDED });
    const warm = startFlood(listUrls, exportUrl, a.teacherKey, aConnections, aExports);
    await runB(bUrls, b.teacherKey, bConnections, 3);
    await warm.stop();
    await setLimits(a.tenantId, { readsInFlight: null });

    const phases: Phase[] = [];
    let aLimitsBounded: Record<string, number> = {};
    const phase = async (name: Phase['name'], round: number | null, aReadsInFlight: number | null) => {
      if (name !== 'alone' && name !== 'alone again') {
        const view = await setLimits(a.tenantId, { readsInFlight: aReadsInFlight });
        if (aReadsInFlight === null) aLimitsBounded = (view as { limits: Record<string, number> }).limits;
      }
      // The quiet gap, then until none of A's reads is still running (a cancelled read's query may outlive its client).
      await sleep(gapSeconds * 1000);
      const quiet0 = Date.now();
      while ((await json<{ usage: { readsInFlight: number } }>(`${service.url}/v1/limits`, { key: a.teacherKey })).usage.readsInFlight > 0) {
        if (Date.now() - quiet0 > 60_000) throw new Error("A's reads still running 60 s after its flood stopped");
        await sleep(200);
      }
      const quietExtraMs = Date.now() - quiet0;
      process.stdout.write(`read-flood: ${name}${round ? ` (round ${round})` : ''}…\n`);
      const flood = name === 'unbounded' || name === 'bounded' ? startFlood(listUrls, exportUrl, a.teacherKey, aConnections, aExports) : null;
      if (flood) await sleep(1000);
      flood?.measure();
      const backends = (await db.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)).rows.map((x) => Number(x.pid));
      const pgCpu = () => backends.reduce((sum, pid) => sum + cpuOf(pid), 0);
      const own = () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1e6;
      };
      const share0 = readShare(OURS);
      const cpu0 = { service: cpuOf(service.child.pid!), own: own(), pg: pgCpu() };
      const w0 = performance.now();
      const rows = await runB(bUrls, b.teacherKey, bConnections, seconds);
      const wall = (performance.now() - w0) / 1000;
      const share1 = readShare(OURS);
      const machineBusyPct = shareBetween(share0, share1).busyPct;
      const pctOf = (x: number) => r1((100 * x) / wall);
      const cpu = { servicePct: pctOf(cpuOf(service.child.pid!) - cpu0.service), loadGeneratorPct: pctOf(own() - cpu0.own), postgresPct: pctOf(pgCpu() - cpu0.pg) };
      const cores = os.cpus().length;
      const othersBusyPct = r1(Math.max(0, machineBusyPct - (cpu.servicePct + cpu.loadGeneratorPct + cpu.postgresPct) / cores));
      const aSide = flood ? await flood.stop() : null;
      const p: Phase = {
        name,
        round,
        aReadsInFlight,
        seconds: r1(wall),
        quietExtraMs,
        b: bSide(rows, wall),
        a: aSide,
        machineBusyPct,
        cpu,
        othersBusyPct,
        loadAvg1: r2(os.loadavg()[0]),
      };
      process.stdout.write(
        `  B p50 ${p.b.p50Ms} p95 ${p.b.p95Ms} p99 ${p.b.p99Ms} max ${p.b.maxMs} ms, ${p.b.count} reads` +
          (aSide ? `; A lists ${JSON.stringify(aSide.lists.statuses)}, exports ${JSON.stringify(aSide.exports.statuses)}` : '') +
          `; machine ${machineBusyPct}% busy, service ${cpu.servicePct}%, generator ${cpu.loadGeneratorPct}%, postgres ${cpu.postgresPct}%, others ${othersBusyPct}% of all\n`,
      );
      phases.push(p);
    };

    await phase('alone', null, null);
    for (let round = 1; round <= rounds; round++) {
      await phase('unbounded', round, UNBOUNDED);
      await phase('bounded', round, null);
    }
    await phase('alone again', null, null);

    const alone = phases[0].b;
    const ratios = phases
      .filter((p) => p.name === 'unbounded' || p.name === 'bounded')
      .map((p) => ({ name: p.name, round: p.round!, p50: r2(p.b.p50Ms / alone.p50Ms), p95: r2(p.b.p95Ms / alone.p95Ms), p99: r2(p.b.p99Ms / alone.p99Ms) }));
    const result: ReadFloodResult = {
      command: 'npm run bench:read-flood',
      date: started.toISOString().slice(0, 10),
      commit: startedAt,
      srcChanged,
      machine: machine(),
      settings: {
        seconds,
        gapSeconds,
        rounds,
        databasePoolSize: POOL_SIZE,
        aEssays,
        bEssays,
        essayChars: 'about 800 Chinese characters each, from test/support/essays.ts',
        aConnections,
        aExports,
        bConnections,
        aPages: listUrls.length,
        aLimitsBounded,
        percentiles: "nearest rank over all of B's reads in the phase (both routes)",
        on429: "A's connection waits the answer's Retry-After, then sends again",
      },
      setup: { aGradedSeconds, aStatuses: await statusesOf(db, a.tenantId), bStatuses: await statusesOf(db, b.tenantId), gradesCsvBytes },
      machineBefore,
      phases,
      ratios,
      seconds: Math.round((Date.now() - t0) / 1000),
      // B alone and under the bounded flood: every read answered 200 (under the unbounded flood a 503 is a finding, kept in its statuses).
      passed: phases.filter((p) => p.name !== 'unbounded').every((p) => Object.keys(p.b.statuses).every((s) => s === '200')),
    };
    return result;
  } finally {
    await db.end();
    await service.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) {
  runMain('read-flood.json', runReadFlood, (r) => r.passed);
}
