/**
 * How far below Inkstone's latency the machine's floor lies, and how much of the gap one durable
 * database write a call explains (a diagnostic, not a benchmark of record): the trivial upstream
 * called in an open loop of RATE requests/s (default 450) over 50 connections, ROUNDS times round
 * (default 2), each time by
 *  - the upstream directly,
 *  - the bare forwarder (bench/lib/bare-forwarder.js: Fastify + undici, nothing else),
 *  - the bare forwarder that commits one row a call to PostgreSQL before it answers,
 *  - the same with the rows written by group commit (one multi-row INSERT at a time),
 *  - Inkstone's miss path (budget, ledger, cache), as bench:peers runs it,
 * each after 5 s of warm-up, 10 s measured; p50 and p99 of each, and what each adds at p99 over the
 * upstream's own in the same round; and where the process serving each side spent the run (its main
 * thread on a core, or ready and waiting for one, bench/lib/schedstat.ts).
 *
 *   BENCH_SKIP_BUILD=1 npx ts-node --transpile-only bench/probe-floor.ts
 */
import { openLoop } from './lib/open-loop';
import { readSched, schedBetween } from './lib/schedstat';
import { dropDatabase, ensureBuilt, freshDatabase, newTenant, startGatewayOverTrivialUpstream, startNode } from './lib/harness';

async function main() {
  ensureBuilt();
  const rate = Number(process.env.RATE ?? 450);
  const rounds = Number(process.env.ROUNDS ?? 2);
  const g = await startGatewayOverTrivialUpstream('inkstone_bench_floor');
  const floorDb = await freshDatabase('inkstone_bench_floor_rows');
  const health = (p: number) => `http://127.0.0.1:${p}/`;
  const bare = await startNode(['bench/lib/bare-forwarder.js', '{port}', g.upstream.url], health, { NODE_ENV: 'production' });
  const durable = await startNode(['bench/lib/bare-forwarder.js', '{port}', g.upstream.url, floorDb], health, { NODE_ENV: 'production' });
  const grouped = await startNode(['bench/lib/bare-forwarder.js', '{port}', g.upstream.url, floorDb, 'group'], health, { NODE_ENV: 'production' });
  try {
    const t = await newTenant(g.service.url, '1000000.00');
    const upstreamSide = { headers: { authorization: 'Bearer bench' }, model: 'deepseek-flash' };
    const sides = [
      { name: 'upstream directly', url: g.upstream.url, pid: g.upstream.child.pid!, ...upstreamSide },
      { name: 'bare forwarder', url: bare.url, pid: bare.child.pid!, ...upstreamSide },
      { name: 'bare forwarder + one committed row a call', url: durable.url, pid: durable.child.pid!, ...upstreamSide },
      { name: 'bare forwarder + the row by group commit', url: grouped.url, pid: grouped.child.pid!, ...upstreamSide },
      { name: 'Inkstone, cache miss', url: g.service.url, pid: g.service.child.pid!, headers: { authorization: `Bearer ${t.teacherKey}` }, model: 'inkstone-standard' },
    ];
    for (let round = 1; round <= rounds; round++) {
      let direct = 0;
      for (const s of sides) {
        const body = (i: number) => JSON.stringify({ model: s.model, messages: [{ role: 'user', content: `q ${round}-${i}-${Math.random()}` }], max_tokens: 64 });
        const run = (durationS: number) => openLoop({ url: s.url, path: '/v1/chat/completions', headers: s.headers, body, rate, durationS, connections: 50 });
        await run(5);
        const before = readSched(s.pid);
        const r = await run(10);
        const sched = schedBetween(before, readSched(s.pid), rate * 10);
        if (s.name === 'upstream directly') direct = r.p99Ms;
        console.log(JSON.stringify({ round, side: s.name, perSecond: r.perSecond, p50Ms: r.p50Ms, p99Ms: r.p99Ms, addedP99Ms: Math.round((r.p99Ms - direct) * 10) / 10, errors: r.non2xx + r.errors, sched }));
      }
    }
  } finally {
    await bare.stop();
    await durable.stop();
    await grouped.stop();
    await g.stop();
    await dropDatabase('inkstone_bench_floor_rows');
  }
}

void main();
