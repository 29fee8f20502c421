/**
 * Where the miss path's latency tail comes from below saturation (a diagnostic, not a benchmark of
 * record): the built service over the trivial upstream, one tenant, an open loop of RATE requests/s
 * (default 550) for 10 s after 5 s of warm-up (bench/lib/open-loop.ts), then its p50/p99 and, when the
 * service runs with BENCH_NODE_ARGS=--trace-gc, the garbage collections of the measured run (with
 * --trace-gc-nvp, what its scavenges promoted to the old generation, a request).
 * It also prints where the service's main thread was over the run (Linux schedstat): on a core, or
 * ready and waiting for one while another process ran there, and how busy the machine's cores were.
 * RATE=0: one request at a time instead, back to back, directly and through Inkstone. It prints the
 * service's event-loop delay and request-duration histogram; HEAP_SNAP=1 with
 * BENCH_NODE_ARGS=--heapsnapshot-signal=SIGUSR2 writes heap snapshots before and after the run.
 * POOL_WARM_S=2: the measured run's own connections carry that many seconds of the load first (the
 * run then starts on open connections; by default it opens them in its first second).
 * WARM_TENANTS=10000: after the warm-up, that many more tenants make one call each (at WARM_RATE), as
 * bench:peers' many-tenant runs leave the service before its open-loop runs.
 * IDLE_S=40: that many seconds with no traffic between the warm-up and the measured run (as in
 * bench:peers, where the other sides run between Inkstone's).
 * DIRECT_FIRST=1: after that quiet spell, 3 s of the same open loop straight at the upstream first (is the
 * load generator itself slow after a quiet spell?). It also prints the measured run's answers as the
 * service timed them (its chat route's histogram diffed over the run); PROBE_FULL_LOG=<file> keeps all
 * of the service's output.
 *
 *   BENCH_NODE_ARGS=--trace-gc RATE=200 npx ts-node --transpile-only bench/probe-tail.ts
 */
import { Pool } from 'undici';
import { oneCallFromEach, openLoop, slowWindows } from './lib/open-loop';
import { cpuOf, postgresCpu, readSched, schedBetween } from './lib/schedstat';
import { ensureBuilt, newTenant, newTenantKeys, OPERATOR, startGatewayOverTrivialUpstream } from './lib/harness';
import { readGcTrace } from './lib/gc-trace';
async function main() {
  ensureBuilt();
  const tStart = Date.now();
  const g = await startGatewayOverTrivialUpstream('inkstone_bench_tail', process.env.PROBE_ENV ? JSON.parse(process.env.PROBE_ENV) : {});
  try {
    const t = await newTenant(g.service.url, '1000000.00');
    const rate = Number(process.env.RATE ?? 550);
    if (rate === 0) {
      // RATE=0: one request at a time, back to back, on one connection (unloaded latency), directly and through Inkstone.
      for (const [name, url, h, model] of [
        ['direct', g.upstream.url, { authorization: 'Bearer bench' }, 'deepseek-flash'],
        ['inkstone', g.service.url, { authorization: `Bearer ${t.teacherKey}` }, 'inkstone-standard'],
      ] as const) {
        const pool = new Pool(url, { connections: 1 });
        const ms: number[] = [];
        for (let i = 0; i < 600; i++) {
          const t0 = performance.now();
          const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', ...h }, body: JSON.stringify({ model, messages: [{ role: 'user', content: `q ${process.pid}-${i}-${Math.random()}` }], max_tokens: 64 }) });
          await res.body.dump();
          if (i >= 100) ms.push(performance.now() - t0); // after 100 of warm-up
        }
        await pool.close();
        ms.sort((a, b) => a - b);
        console.log(JSON.stringify({ side: name, p50Ms: ms[250].toFixed(2), p99Ms: ms[495].toFixed(2) }));
      }
      return;
    }
    const body = (i: number) => JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: `q ${process.pid}-${i}-${Math.random()}` }], max_tokens: 64 });
    const headers = { authorization: `Bearer ${t.teacherKey}` };
    // Warm-up: WARM_S seconds (default 5) at WARM_RATE requests/s (default RATE).
    await openLoop({ url: g.service.url, path: '/v1/chat/completions', headers, body, rate: Number(process.env.WARM_RATE ?? rate), durationS: Number(process.env.WARM_S ?? 5), connections: 50 });
    const others = await newTenantKeys(g.service.url, Number(process.env.WARM_TENANTS ?? 0));
    await oneCallFromEach(g.service.url, others, body, Number(process.env.WARM_RATE ?? rate));
    await new Promise((res) => setTimeout(res, Number(process.env.IDLE_S ?? 0) * 1000));
    // DIRECT_FIRST=1: after the quiet spell, the same open loop straight at the upstream for 3 s first
    // (the load generator's own first second after the quiet, with the service still idle).
    if (process.env.DIRECT_FIRST) {
      const slowDirect = slowWindows();
      const direct = await openLoop({ url: g.upstream.url, path: '/v1/chat/completions', headers: { authorization: 'Bearer bench' }, body: (i) => JSON.stringify({ model: 'deepseek-flash', messages: [{ role: 'user', content: `d ${i}` }], max_tokens: 64 }), rate, durationS: 3, connections: 50, onAnswer: slowDirect.onAnswer });
      console.log('direct first:', JSON.stringify(direct), 'over 20 ms by 100 ms window:', slowDirect.summary());
    }
    const mark = g.service.output().length;
    // HEAP_SNAP=1 (with BENCH_NODE_ARGS=--heapsnapshot-signal=SIGUSR2): a heap snapshot before and after the run.
    const snap = async () => {
      if (!process.env.HEAP_SNAP) return;
      g.service.child.kill('SIGUSR2');
      await new Promise((res) => setTimeout(res, 8_000));
    };
    await snap();
    // Slow answers by 100 ms window (compare dense windows with the mark-compacts' spacing below).
    const slow = slowWindows();
    const sched0 = readSched(g.service.child.pid!);
    const cpu = () => ({ service: cpuOf(g.service.child.pid!), postgres: postgresCpu(), upstream: cpuOf(g.upstream.child.pid!), loadGenerator: cpuOf(process.pid) });
    const cpu0 = cpu();
    // The chat route's server-side duration histogram, before the run (diffed with the one after it).
    const chatBuckets = async () =>
      new Map(
        (await (await fetch(`${g.service.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } })).text())
          .split('\n')
          .map((l) => /^inkstone_http_request_duration_seconds_bucket\{le="([^"]+)",method="POST",route="\/v1\/chat\/completions",status="200"\} (\d+)/.exec(l))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => [m[1], Number(m[2])] as const),
      );
    const buckets0 = await chatBuckets();
    const t0 = Date.now();
    console.log(JSON.stringify(await openLoop({ url: g.service.url, path: '/v1/chat/completions', headers, body, rate, durationS: 10, connections: 50, onAnswer: slow.onAnswer, warmUpS: Number(process.env.POOL_WARM_S ?? 0) })));
    // For a CPU profile (BENCH_CPU_PROF): where the measured run lies, in ms after the service was started (about).
    if (process.env.BENCH_CPU_PROF) console.log(JSON.stringify({ measuredMsAfterStart: [t0 - tStart, Date.now() - tStart] }));
    // Where the service's main thread was over the run: on a core, or ready but waiting for one.
    console.log(JSON.stringify({ serviceMainThread: schedBetween(sched0, readSched(g.service.child.pid!), rate * 10) }));
    // Each process's CPU (all its threads) a request over the run, in ms.
    const cpu1 = cpu();
    console.log(JSON.stringify({ cpuMsPerRequest: Object.fromEntries(Object.entries(cpu1).map(([k, v]) => [k, Number((((v - cpu0[k as keyof typeof cpu0]) * 1000) / (rate * 10)).toFixed(3))])) }));
    console.log(`answers over 20 ms by 100 ms window (s after ${new Date(t0).toISOString()}: count):`, slow.summary());
    await snap();
    // The service's own view: event-loop delay and the chat route's server-side duration.
    // The measured run's answers as the service timed them (from its request to its reply), by bucket:
    // slow answers here are the service's; slow answers only above are before or after it.
    const buckets1 = await chatBuckets();
    console.log('service-side durations in the run (le seconds: count):', [...buckets1].map(([le, n]) => `${le}: ${n - (buckets0.get(le) ?? 0)}`).join(', '));
    const metrics = await (await fetch(`${g.service.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } })).text();
    console.log(metrics.split('\n').filter((l) => /eventloop_lag_(p50|p90|p99|max)_seconds |http_request_duration_seconds_bucket.*chat\/completions/.test(l)).join('\n'));
    // PROBE_GC_LOG=<file>: the service's output over the measured run (its GC trace lines) kept there.
    if (process.env.PROBE_GC_LOG) require('node:fs').writeFileSync(process.env.PROBE_GC_LOG, g.service.output().slice(mark));
    // PROBE_FULL_LOG=<file>: all of the service's output, with the offset where the measured run began.
    if (process.env.PROBE_FULL_LOG) require('node:fs').writeFileSync(process.env.PROBE_FULL_LOG, `measured run from offset ${mark}\n${g.service.output()}`);
    const gc = readGcTrace(g.service.output().slice(mark));
    const pauses = gc.pausesMs;
    // With BENCH_NODE_ARGS=--trace-gc-nvp: what the scavenges promoted to the old generation in the run, a request.
    const promoted = g.service.output().slice(mark).split('\n').map((l) => /\bgc=s\b.*\bpromoted=(\d+)/.exec(l)?.[1]).filter((v): v is string => v !== undefined);
    const rates = g.service.output().slice(mark).split('\n').map((l) => /\bgc=s\b.*\bpromotion_rate=([\d.]+)%/.exec(l)?.[1]).filter((v): v is string => v !== undefined).map(Number).sort((a, b) => a - b);
    if (rates.length) console.log('scavenges: median share of the last survivors promoted (%)', rates[rates.length >> 1]);
    if (promoted.length) console.log('promoted by scavenges: KB a request', (promoted.reduce((a, v) => a + Number(v), 0) / 1024 / (rate * 10)).toFixed(2), 'in', promoted.length, 'scavenges');
    const status = require('node:fs').readFileSync(`/proc/${g.service.child.pid}/status`, 'utf8') as string;
    console.log('service peak RSS MB', Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024));
    console.log('gc events', gc.lines.length, 'scavenges', gc.scavenges, 'mark-compacts', gc.markCompacts, 'max pause', Math.max(0, ...pauses), 'total ms', Math.round(pauses.reduce((a, b) => a + b, 0)));
    const mcAt = gc.markCompactAtMs;
    if (mcAt.length > 1) console.log('mark-compacts every (s):', mcAt.slice(1).map((t, i) => ((t - mcAt[i]) / 1000).toFixed(2)).join(', '));
    console.log(gc.lines.filter((l) => /Mark-Compact/.test(l)).slice(0, 3).join('\n'));
  } finally {
    await g.stop();
  }
}
void main();
