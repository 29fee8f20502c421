/**
 * Where the miss path's (PROBE_HITS=1: the hit path's) CPU goes: the built service with budget, ledger and cache on in front of the
 * trivial upstream, loaded at 50 connections for BENCH_DURATION_S, with the CPU time of each process
 * (the service, PostgreSQL's backends, the upstream, this load generator) read from /proc before and
 * after, per request, and the rows each table had written in the measured run (inserted, updated,
 * of them HOT, deleted), per request. A diagnostic, not a benchmark of record.
 * With BENCH_NODE_ARGS=--trace-gc, also the measured run's garbage collections (`gc`: pauses and
 * incremental marking per request, the old generation live after each mark-compact).
 * PROBE_ANALYZE=1: ANALYZE the database just before the measured run (are fresh statistics the difference?).
 * PROBE_OTHER_TENANTS=N and PROBE_SPREAD_S: see below.
 * PROBE_TENANTS=N spreads the requests over N tenants (after a warm-up pass of one request from
 * each, as bench:peers does); BENCH_CPU_PROF also prints where the measured run lies in the
 * service's profile (ms after its start).
 *
 *   npx ts-node --transpile-only bench/probe-miss.ts
 */
import * as fs from 'node:fs';
import autocannon from 'autocannon';
import { Client } from 'pg';
import { cpuOf, postgresCpu } from './lib/schedstat';
import { ensureBuilt, newTenant, newTenantKeys, startGatewayOverTrivialUpstream } from './lib/harness';
import { readGcTrace } from './lib/gc-trace';

/** The service's resident memory now and at its peak (VmRSS, VmHWM), in MB. */
function rss(pid: number): { now: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { now: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

/**
 * With BENCH_NODE_ARGS=--trace-gc: the measured run's collections (their main-thread pauses per
 * request, and for the mark-compacts what was live after each and the marking done before it).
 */
function gcSummary(output: string, requests: number): { gc?: Record<string, unknown> } {
  const gc = readGcTrace(output);
  if (!gc.lines.length) return {};
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  return {
    gc: {
      scavenges: gc.scavenges,
      markCompacts: gc.markCompacts,
      pauseUsPerRequest: Number(((sum(gc.pausesMs) * 1000) / requests).toFixed(1)),
      markingStepsUsPerRequest: Number(((sum(gc.markingStepsMs) * 1000) / requests).toFixed(1)),
      liveAfterMarkCompactMb: gc.liveAfterMarkCompactMb,
      markingStepsMs: gc.markingStepsMs,
    },
  };
}

async function main() {
  const durationS = Number(process.env.BENCH_DURATION_S ?? 10);
  ensureBuilt();
  const tStart = Date.now();
  const gateway = await startGatewayOverTrivialUpstream('inkstone_bench_probe', process.env.PROBE_ENV ? JSON.parse(process.env.PROBE_ENV) : {});
  const { upstream, service, databaseUrl } = gateway;
  try {
    const tenant = await newTenant(service.url, '1000000.00');
    // PROBE_TENANTS=N: each request from the next of N tenants (their admin keys). PROBE_HITS=1: every
    // request the same, so after the first each is a cache hit (the hit path instead of the miss path).
    const hits = process.env.PROBE_HITS === '1';
    const keys = [tenant.teacherKey, ...(await newTenantKeys(service.url, Number(process.env.PROBE_TENANTS ?? 1) - 1))];
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    const xacts = async () => Number((await db.query(`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`)).rows[0].xact_commit);
    let n = 0;
    // PROBE_OTHER_TENANTS=N: N more tenants make one miss each first (bench:peers' hit run follows its
    // 10,000-tenant run); the measured run stays with the tenants above.
    const others = await newTenantKeys(service.url, Number(process.env.PROBE_OTHER_TENANTS ?? 0));
    const run = (seconds: number, amount?: number, from = keys, unique = !hits) =>
      autocannon({
        url: `${service.url}/v1/chat/completions`,
        connections: 50,
        ...(amount ? { amount } : { duration: seconds }),
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [
          {
            setupRequest: (r: any) => {
              const i = ++n;
              return {
                ...r,
                headers: { ...r.headers, authorization: `Bearer ${from[i % from.length]}` },
                body: JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: unique ? `probe ${process.pid} ${i}` : 'probe the same' }], max_tokens: 64 }),
              };
            },
          },
        ],
      });
    await run(Number(process.env.PROBE_WARM_S ?? 3));
    // With many tenants, one more warm-up pass of one request from every tenant (as bench:peers does),
    // so the measured run sees tenants that are known, each with its budget period and lease.
    if (keys.length > 1) await run(0, Math.max(keys.length, 50));
    if (others.length) await run(0, Math.max(others.length, 50), others, true);
    // PROBE_SPREAD_S=10: then that many seconds of misses spread over those tenants at 50 connections
    // (bench:peers' 10,000-tenant run, which its hit run follows with no pause).
    if (others.length && process.env.PROBE_SPREAD_S) await run(Number(process.env.PROBE_SPREAD_S), undefined, others, true);
    // PROBE_ANALYZE=1: the database's statistics brought up to date (ANALYZE) before the measured run.
    if (process.env.PROBE_ANALYZE === '1') await db.query('ANALYZE');
    // Autovacuum and autoanalyze runs on this database's tables (started before, or during, the measured run).
    const autovacuums = async () => (await db.query(`SELECT relname, autovacuum_count + autoanalyze_count AS n FROM pg_stat_user_tables WHERE autovacuum_count + autoanalyze_count > 0`)).rows.map((r) => `${r.relname}:${r.n}`).join(' ');
    const av0 = await autovacuums();
    // Rows written by table in the measured run (inserted, updated, of them HOT, deleted), per request.
    // (PostgreSQL's counts: a backend reports its own at most once a second, and one that went idle
    // within a second of its last report does so ten seconds later (PGSTAT_IDLE_INTERVAL). So up to
    // a second of the warm-up's rows, e.g. the tenants made for PROBE_TENANTS, can show in the run's,
    // and up to a second of the run's last ones can be missing; at a steady rate the two about cancel.)
    const writes = async () => new Map((await db.query(`SELECT relname, n_tup_ins AS i, n_tup_upd AS u, n_tup_hot_upd AS h, n_tup_del AS d FROM pg_stat_user_tables`)).rows.map((r) => [r.relname as string, [r.i, r.u, r.h, r.d].map(Number)]));
    const w0 = await writes();
    const x0 = await xacts();
    const before = { service: cpuOf(service.child.pid!), pg: postgresCpu(), upstream: cpuOf(upstream.child.pid!), me: process.cpuUsage() };
    const mark = service.output().length;
    const t0 = Date.now();
    const r = await run(durationS);
    const t1 = Date.now();
    const x1 = await xacts();
    await new Promise((r) => setTimeout(r, 500)); // the statistics collector's reports
    const av1 = await autovacuums();
    const w1 = await writes();
    const after = { service: cpuOf(service.child.pid!), pg: postgresCpu(), upstream: cpuOf(upstream.child.pid!), me: process.cpuUsage(before.me) };
    const reqs = r.requests.total;
    const ms = (s: number) => Number(((s * 1000) / reqs).toFixed(3));
    console.log(
      JSON.stringify(
        {
          perSecond: Math.round(r.requests.average),
          p50: r.latency.p50,
          p99: r.latency.p99,
          non2xx: r.non2xx,
          statusCodes: (r as unknown as { statusCodeStats?: unknown }).statusCodeStats,
          autovacuumsBeforeAndAfter: [av0, av1],
          transactionsPerRequest: Number(((x1 - x0) / r.requests.total).toFixed(3)),
          rowsWrittenPerRequest: Object.fromEntries(
            [...w1]
              .map(([table, after]) => [table, after.map((v, k) => Number(((v - (w0.get(table)?.[k] ?? 0)) / reqs).toFixed(3)))] as const)
              .filter(([, d]) => d.some((v) => v > 0))
              .map(([table, [ins, upd, hot, del]]) => [table, { ins, upd, hot, del }]),
          ),
          serviceRssMb: rss(service.child.pid!),
          ...gcSummary(service.output().slice(mark), reqs),
          cpuMsPerRequest: {
            service: ms(after.service - before.service),
            postgres: ms(after.pg - before.pg),
            upstream: ms(after.upstream - before.upstream),
            loadGenerator: ms((after.me.user + after.me.system) / 1e6),
          },
        },
        null,
        2,
      ),
    );
    // What the service logged at warn or above (a request that did not answer 200 says why here).
    if (r.non2xx || r.errors) process.stderr.write(`${service.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-20).join('\n')}\n`);
    await db.end();
    // For a CPU profile (BENCH_CPU_PROF): where the measured run lies, in ms after the service was started (about).
    if (process.env.BENCH_CPU_PROF) console.log(JSON.stringify({ measuredMsAfterStart: [t0 - tStart, t1 - tStart] }));
  } finally {
    await gateway.stop();
  }
}

void main();
