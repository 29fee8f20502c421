/** The sections of BENCHMARKS.md for bench/ledger.ts and bench/peers.ts. */

export function renderLedger(l: any): string {
  const rows = l.endpoints.map((e: any) => `| ${e.name} | \`${e.path}\` | ${e.p50Ms} ms | **${e.p95Ms} ms** | ${e.maxMs} ms | ${e.scanMs.toLocaleString('en')} ms |`).join('\n');
  return `## The reports over a 10-million-row ledger (\`npm run bench:ledger\`)

A generated ledger of ${l.rows.toLocaleString('en')} rows for one tenant, ${l.monthRows.toLocaleString('en')} of them in the
current month (and 10,000 of another tenant beside them), inserted as the service writes its ledger
(${l.insertSeconds} s), so the daily roll-up (\`ledger_daily\`) was kept by its trigger as they went in:
${l.rollupRows.toLocaleString('en')} roll-up rows for the tenant. Each endpoint through the built service's HTTP API,
30 requests after 3 warm-ups, one at a time. "A scan" is the query the endpoint ran before the
roll-up, timed once in SQL on the same database. Commit \`${l.commit}\`, ${l.date}, ${l.machine.cpus} vCPU
(${l.machine.cpuModel}), PostgreSQL on the same machine.

| report | path | p50 | p95 | max | a scan of the ledger |
|---|---|---|---|---|---|
${rows}

Target: under 500 ms p95 each — **${l.passed ? 'met' : 'not met'}**.
${l.note ? `\n${l.note}\n` : ''}`;
}

/** Mean time in a closed loop of `connections` clients at `perSecond` (Little's law), in ms. */
function littleMs(connections: number, perSecond: number): number {
  return Math.round((connections / perSecond) * 1000);
}

/** The sides at one offered load below saturation (bench/peers.ts `atRate`). */
function renderAtRate(p: any): string {
  const a = p.atRate;
  const r = (what: string, x: any) => `| ${what} | ${x.perSecond.toLocaleString('en')} | ${x.p50Ms} ms | ${x.p99Ms} ms | ${x.non2xx + x.errors} |`;
  const intro = `At one offered load below saturation — ${a.offered.toLocaleString('en')} requests/s, half the rate Portkey served saturated, the same
for each side — latency is what each side adds rather than a queue for the two cores. This load is an
open loop (\`bench/lib/open-loop.ts\`): each request sent when it is due, one every 1/${a.offered.toLocaleString('en')} s, over
${p.connections} keep-alive connections, its latency counted from when it was due (so a side that falls behind
pays for it). (autocannon's own \`overallRate\` sends each second's quota in a burst and then adds
synthetic samples for every answer slower than 1 ms: not used.)${
    a.poolWarmS
      ? ` Each side's run starts on open connections, as a client in steady state sends: ${a.poolWarmS} s of the
same load on the same ${p.connections} connections come first, which open them and wake the side after the
others' runs (about 40 s in which Inkstone's idle database connections close, after 30 s, and its
tenant's unused lease goes back, after 15 s). Those seconds are reported apart below the table, not left
out. (The earlier runs in the notes below opened their connections in their measured run and counted them.)`
      : ''
  }

`;
  const table = `| ${a.offered.toLocaleString('en')}/s offered | requests/s | p50 | p99 | errors |
|---|---|---|---|---|
${r('upstream directly', a.direct)}
${r('through Portkey', a.portkey)}
${a.floor ? r('through a bare forwarder (the floor)', a.floor) + '\n' : ''}${r('through Inkstone, cache miss (budget, ledger, cache write)', a.inkstone)}

Added over the upstream's own at this load: Inkstone p50 ${a.inkstoneAddedP50Ms} ms, p99 ${a.inkstoneAddedP99Ms} ms; Portkey p99 ${a.portkeyAddedP99Ms} ms${
    a.floor ? `; the bare forwarder p99 ${a.floorAddedP99Ms} ms` : ''
  }.
${
    a.warmUp
      ? `
In the ${a.poolWarmS} s before each run, each side's ${p.connections} connections being opened and the side woken: p99 directly ${a.warmUp.p99Ms.direct} ms,
through Portkey ${a.warmUp.p99Ms.portkey} ms, through the floor ${a.warmUp.p99Ms.floor} ms, through Inkstone ${a.warmUp.p99Ms.inkstone} ms; added over the upstream's own
(median of the rounds'): Inkstone ${a.warmUp.inkstoneAddedP99Ms} ms, Portkey ${a.warmUp.portkeyAddedP99Ms} ms, the floor ${a.warmUp.floorAddedP99Ms} ms.
`
      : ''
  }
`;
  return intro + table;
}

const list = (xs: number[], unit = '') => xs.map((x) => `${x.toLocaleString('en')}${unit}`).join(', ');

/** How the rows were taken when the run had rounds (bench/peers.ts PEERS_ROUNDS), and each round's figures. */
function renderRounds(p: any): string {
  const r = p.perRound;
  const a = r.atRate;
  return `
Each side ran ${p.rounds} times, the sides in turn in each round (direct, Portkey, the floor, Inkstone's miss
path for one tenant and then over ${p.manyTenants.toLocaleString('en')}, its hit path; then the four at the offered load below),
so that each meets the machine's drift as the others do. Each row below is the median round by requests/s (at the
offered load, by p99); each ratio and added latency is the median of the rounds' own, each round's sides
measured seconds apart. The rounds, requests/s: upstream directly ${list(r.requestsPerSecond.direct)}; Portkey
${list(r.requestsPerSecond.portkey)}; the floor ${list(r.requestsPerSecond.floor)}; Inkstone's miss path ${list(r.requestsPerSecond.inkstoneMiss)}
(${list(r.inkstoneOverPortkey, '×')} Portkey's in the same round; added p99 ${list(r.inkstoneAddedP99Ms, ' ms')}); over
${p.manyTenants.toLocaleString('en')} tenants ${list(r.requestsPerSecond.inkstoneMissManyTenants)} (${list(r.manyTenantsOverOne.map((x: number) => Math.round(x * 100)), '%')} of one tenant's in the same round); hits ${list(r.requestsPerSecond.inkstoneHit)}. At the offered load, added
over the upstream's own in each round: Inkstone p50 ${list(a.inkstoneAddedP50Ms, ' ms')}, p99 ${list(a.inkstoneAddedP99Ms, ' ms')}; Portkey p99
${list(a.portkeyAddedP99Ms, ' ms')}; the floor p99 ${list(a.floorAddedP99Ms, ' ms')}.${
    a.warmUp
      ? ` In the seconds that opened the connections and woke the side, p99 added: Inkstone ${list(a.warmUp.inkstoneAddedP99Ms, ' ms')};
Portkey ${list(a.warmUp.portkeyAddedP99Ms, ' ms')}; the floor ${list(a.warmUp.floorAddedP99Ms, ' ms')}.`
      : ''
  }
`;
}

export function renderPeers(p: any): string {
  const r = (what: string, x: any) => `| ${what} | ${x.perSecond.toLocaleString('en')} | ${x.p50Ms} ms | ${x.p99Ms} ms | ${x.non2xx + x.errors} |`;
  const yes = (b: boolean) => (b ? 'met' : '**not met**');
  return `## Beside Portkey: the gateway's own cost (\`npm run bench:peers\`)

A trivial OpenAI-compatible upstream (its own process; one small fixed answer with usage) called at
${p.connections} connections for ${p.durationS} s each: directly; through the open-source Portkey gateway
(\`@portkey-ai/gateway\` ${p.portkeyVersion}, no budget, no database, no cache: provider \`openai\`, the upstream as
its custom host; ${p.peerNodeArgs ? `run, like the floor, with \`node ${p.peerNodeArgs.join(' ')}\`` : 'run, like the floor, with no node flags, as its package ships'});${
    p.floor
      ? ` through a bare forwarder (\`bench/lib/bare-forwarder.js\`: Fastify takes the request and parses its JSON, undici
forwards it over a keep-alive pool, the answer is parsed and sent back; no auth, budget, ledger, cache or logging: the floor, what
this shared machine charges any Node gateway on Inkstone's stack before it does any work);`
      : ''
  } and through Inkstone as \`npm start\` runs it (\`node ${(p.serviceNodeArgs ?? ['--max-old-space-size=256']).join(' ')}\`) with everything on (key auth, limits,
the tenant's budget reservation and settlement, the ledger row, the answer cache looked up (from
\`821d0fe\` its index answers a key no instance stored, without a statement) and written). Every prompt differs, so each call through Inkstone misses its cache and reaches the
upstream, as each call through Portkey does; the hit row repeats one prompt${
    p.machineLoad ? ' (one request, which the load generator builds once where it builds each of the others anew, after a quiet second as before each miss run)' : ''
  }; from \`00df945\` a hit's ledger row, which costs nothing, goes with the next group commit after its answer has left (before, each hit waited for it). Commit \`${p.commit}\`,
${p.date}, ${p.machine.cpus} vCPU (${p.machine.cpuModel}); the upstream, the gateways, PostgreSQL and the load
generator share the two cores. Absolute figures on this virtual machine move a lot from one run,
and one day, to the next (the upstream alone served 11,181/s in the run of commit b1aba03 and
${p.direct.perSecond.toLocaleString('en')}/s in this one): the rows of one run, measured minutes apart, are what compare. The
many-tenant row sends one request from every tenant first (so each has its budget period,
settings and lease${p.rounds ? ', before each of its runs' : ''}), then spreads the measured run over them all, each request from the next.${
    p.machineLoad
      ? `
The machine's other work: over 3 s before the bench started it was ${p.machineLoad.before.busyPct}% busy, and over the
bench its processes other than the bench's own (node, postgres: its other services, RabbitMQ, Mosquitto,
NATS and MariaDB, and the kernel's threads) took ${p.machineLoad.during.othersPct}% of its CPU (it was ${p.machineLoad.during.busyPct}% busy in all).`
      : ''
  }
${p.perRound ? renderRounds(p) : ''}
| | requests/s | p50 | p99 | errors |
|---|---|---|---|---|
${r('upstream directly', p.direct)}
${r('through Portkey', p.portkey)}
${p.floor ? r('through a bare forwarder (the floor)', p.floor) + '\n' : ''}${r('through Inkstone, cache miss (budget, ledger, cache write)', p.inkstoneMiss)}
${p.inkstoneMissManyTenants ? r(`through Inkstone, cache miss, spread over ${p.manyTenants.toLocaleString('en')} tenants`, p.inkstoneMissManyTenants) + '\n' : ''}${r('through Inkstone, cache hit', p.inkstoneHit)}

Inkstone on the miss path: ${p.inkstoneOverPortkey}× Portkey's requests per second; p99 added over the upstream's
own: ${p.inkstoneAddedP99Ms} ms (Portkey: ${p.portkeyAddedP99Ms} ms${p.floor ? `; the bare forwarder: ${p.floorAddedP99Ms} ms` : ''}). Inkstone's peak RSS: ${p.inkstoneRssMb} MB. During the miss ${p.rounds ? 'runs (each counted once quiet, summed)' : 'run (counted once quiet)'}
the upstream served ${p.reconciliation.upstreamServed.toLocaleString('en')} completions and Inkstone's ledger recorded ${p.reconciliation.ledgerProviderCalls.toLocaleString('en')} provider calls.

${p.atRate ? renderAtRate(p) : ''}What the latency target asks of this load: each of the ${p.connections} connections sends its next request when the
answer to the last arrives, so requests/s × mean latency ≈ ${p.connections} (Little's law). At Inkstone's
${p.inkstoneMiss.perSecond.toLocaleString('en')}/s a request spends about ${littleMs(p.connections, p.inkstoneMiss.perSecond)} ms in the system on average, at Portkey's ${p.portkey.perSecond.toLocaleString('en')}/s about
${littleMs(p.connections, p.portkey.perSecond)} ms: mostly waiting for one of the two cores that the gateway, PostgreSQL, the upstream and the
load generator share, not work done for it. A p99 under 10 ms means a mean under 10 ms, which at ${p.connections}
connections needs more than ${(p.connections / 0.01).toLocaleString('en')} requests/s (${p.connections} / 10 ms) through the gateway: ${(p.connections / 0.01 / p.portkey.perSecond).toFixed(1)}× Portkey's rate in this run.

Targets (issue 14): added p99 ≤ 10 ms — ${yes(p.targets.addedP99)} at saturation${
    p.atRate ? ` (${yes(p.targets.addedP99BelowSaturation)} at ${p.atRate.offered.toLocaleString('en')}/s offered)` : ''
  }; miss path ≥ 1,500/s — ${yes(p.targets.miss1500)};
at least twice Portkey — ${yes(p.targets.twicePortkey)}; hits ≥ 4,000/s — ${yes(p.targets.hits4000)}; RSS ≤ 300 MB — ${yes(p.targets.rss300)}${
    p.targets.manyTenantsWithin10pc === undefined ? '' : `; the miss path over ${p.manyTenants.toLocaleString('en')} tenants within 10% of one tenant's — ${yes(p.targets.manyTenantsWithin10pc)}`
  }.
${p.note ? `\n${p.note}\n` : ''}`;
}
