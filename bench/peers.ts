/**
 * Inkstone beside the gateway people would otherwise pick, on the same traffic, at 50 connections:
 * a trivial OpenAI-compatible upstream (bench/lib/trivial-upstream.ts, its own process) called
 *  - directly,
 *  - through the open-source Portkey gateway (`@portkey-ai/gateway`, a dev dependency: no budget,
 *    no database, no cache; provider "openai" with the upstream as its custom host),
 *  - through a bare forwarder (bench/lib/bare-forwarder.js: Fastify + undici, the JSON parsed and
 *    forwarded, nothing else): the floor, what the shared machine charges any Node gateway here,
 *  - through Inkstone as `npm start` runs it, with everything on: key auth, the tenant's budget
 *    (reservation and settlement), the ledger, the answer cache (looked up and written), limits.
 * Each prompt differs (a counter in the message), so every call through Inkstone misses its cache
 * and reaches the upstream, like every call through Portkey. Then the cache-hit path: one prompt,
 * repeated (one request the load generator builds once; a quiet second before it, as before each
 * miss run). The machine's CPU is read before and over the run: how busy it was, and how much its
 * other processes (its other services) took. Inkstone's RSS is read from /proc after the runs (VmHWM: its peak).
 * Then the four again at one fixed offered load below saturation (an open loop, bench/lib/open-loop.ts,
 * the same for each: half the rate Portkey served saturated, or PEERS_RATE): at saturation a closed
 * loop's latency is mostly queueing for the two cores (Little's law), below it what each adds. Each
 * such run starts on open keep-alive connections, as a client in steady state sends: PEERS_POOL_WARM_S
 * seconds (default 2) of the same load on the same connections come first, which open them and
 * wake the side after the others' runs (Inkstone's idle database connections have closed by then);
 * their figures are kept beside the run's (`atRate.warmUp`), not left out.
 * Every side runs PEERS_ROUNDS times (default 3), the sides in turn in each round (the many-tenant
 * miss path right after the one-tenant one); the result keeps each round's figures and reports the
 * median round.
 *
 *   npm run bench:peers
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import autocannon from 'autocannon';
import { openLoop, OpenLoopResult, OpenLoopRun, slowWindows } from './lib/open-loop';
import { readShare, shareBetween } from './lib/schedstat';
import { commit, ensureBuilt, json, machine, newTenant, newTenantKeys, runMain, serviceNodeArgs, startGatewayOverTrivialUpstream, startNode } from './lib/harness';

const CONNECTIONS = 50;
/** Seconds of each at-rate run's load that open its connections before the measured part (0: opened in it, as before 2026-12-05). */
const POOL_WARM_S = Number(process.env.PEERS_POOL_WARM_S ?? 2);
/** The bench's own processes, by name: every other process on the machine is another's. */
const OURS = ['node', 'postgres'];

interface Row {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

export interface PeersResult {
  commit: string;
  date: string;
  machine: Record<string, string | number>;
  connections: number;
  durationS: number;
  /** every side was measured this many times, in turn (PEERS_ROUNDS) */
  rounds: number;
  portkeyVersion: string;
  /** the node flags Inkstone ran with (npm start's, then BENCH_NODE_ARGS) */
  serviceNodeArgs?: string[];
  /** the node flags Portkey and the floor ran with (PEERS_PEER_NODE_ARGS; absent: none) */
  peerNodeArgs?: string[];
  direct: Row;
  portkey: Row;
  /** the bare forwarder: the floor */
  floor: Row;
  inkstoneMiss: Row;
  /** the miss path with its requests spread over `manyTenants` active tenants, each with its own budget, leases and cache */
  manyTenants: number;
  inkstoneMissManyTenants: Row;
  inkstoneHit: Row;
  /** Inkstone's p99 less the upstream's own, on the miss path */
  inkstoneAddedP99Ms: number;
  portkeyAddedP99Ms: number;
  floorAddedP99Ms: number;
  inkstoneOverPortkey: number;
  inkstoneRssMb: number;
  /** the miss path of each at one offered load (requests/s over all connections), below saturation */
  atRate: {
    offered: number;
    direct: OpenLoopResult;
    portkey: OpenLoopResult;
    floor: OpenLoopResult;
    inkstone: OpenLoopResult;
    inkstoneAddedP50Ms: number;
    inkstoneAddedP99Ms: number;
    portkeyAddedP99Ms: number;
    floorAddedP99Ms: number;
    /** seconds of the same load before each measured run, on its connections, which it opened (absent: none, the connections opened in the run) */
    poolWarmS?: number;
    /** those seconds' own figures, the connections being opened and the side woken after the others' runs: each side's p99 and what it added over the upstream's (median of the rounds') */
    warmUp?: { p99Ms: Record<'direct' | 'portkey' | 'floor' | 'inkstone', number>; inkstoneAddedP99Ms: number; portkeyAddedP99Ms: number; floorAddedP99Ms: number };
  };
  /** each round's own figures (the rows above are the median rounds, the ratios and differences the median of these) */
  perRound: {
    requestsPerSecond: Record<'direct' | 'portkey' | 'floor' | 'inkstoneMiss' | 'inkstoneHit' | 'inkstoneMissManyTenants', number[]>;
    inkstoneOverPortkey: number[];
    /** the many-tenant miss path's requests/s over the one-tenant one's, in the same round */
    manyTenantsOverOne: number[];
    inkstoneAddedP99Ms: number[];
    atRate: { inkstoneAddedP50Ms: number[]; inkstoneAddedP99Ms: number[]; portkeyAddedP99Ms: number[]; floorAddedP99Ms: number[]; warmUp?: { inkstoneAddedP99Ms: number[]; portkeyAddedP99Ms: number[]; floorAddedP99Ms: number[] } };
    /**
     * each side's at-rate runs, by round: its answers over 20 ms by 100 ms window of when they were
     * due ("0.5: 80, 2.7: 12", seconds after the run's start: count), where its p99 came from
     */
    atRateSlowWindows?: Record<'direct' | 'portkey' | 'floor' | 'inkstone', string[]>;
  };
  /** the miss runs, each once quiet, summed: completions the upstream served through Inkstone, and Inkstone's ledger rows that reached a provider */
  reconciliation: { upstreamServed: number; ledgerProviderCalls: number };
  /**
   * The machine's CPU over 3 s before anything started, and over the whole run: how busy, and the
   * part taken by processes other than the bench's own (node, postgres): the machine's other
   * services (RabbitMQ, Mosquitto, NATS, MariaDB here) and the kernel's threads.
   */
  machineLoad?: { before: { busyPct: number; othersPct: number }; during: { busyPct: number; othersPct: number } };
  targets: { addedP99: boolean; addedP99BelowSaturation: boolean; miss1500: boolean; twicePortkey: boolean; hits4000: boolean; rss300: boolean; manyTenantsWithin10pc: boolean };
}

function row(r: autocannon.Result): Row {
  return { perSecond: Math.round(r.requests.average), p50Ms: r.latency.p50, p99Ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

/** A prompt never sent before (not in an earlier run either, so no run is answered from the cache). */
function bodies(model: string, unique: boolean): (i: number) => string {
  const run = randomUUID().slice(0, 8);
  return (i) => JSON.stringify({ model, messages: [{ role: 'user', content: `用一句话说明为什么要多读书。(${unique ? `${run}-${i}` : 'same'})` }], max_tokens: 64, temperature: 0 });
}

/**
 * `durationS` of POSTs, each with its own prompt when `unique` (a counter in the message); with
 * `keys`, each request from the next tenant's key in turn (requests spread over every tenant).
 */
function load(url: string, headers: Record<string, string>, model: string, durationS: number, unique: boolean, keys?: string[], amount?: number): Promise<autocannon.Result> {
  let n = 0;
  const body = bodies(model, unique);
  // One request repeated (the hit run) is built once, as autocannon does by default; the others
  // are built request by request. (A built request costs the load generator, on the same two
  // cores, about a third less CPU: bench/probe-loadgen.ts.)
  const each = unique || keys;
  // When each run started (stderr), to set beside what else the machine did then (an autovacuum, say).
  console.error(`saturated ${keys ? `${keys.length} tenants` : ''}${amount ? ` (${amount} requests)` : ''} ${url} ${unique ? 'unique' : 'repeated'} from ${new Date().toISOString()}`);
  return autocannon({
    url,
    method: 'POST',
    connections: CONNECTIONS,
    ...(amount ? { amount } : { duration: durationS }),
    headers: { 'content-type': 'application/json', ...headers },
    body: body(0),
    ...(each
      ? {
          requests: [
            {
              setupRequest: (req: autocannon.Request) => {
                const i = n++;
                return { ...req, body: body(i), ...(keys ? { headers: { ...req.headers, authorization: `Bearer ${keys[i % keys.length]}` } } : {}) };
              },
            },
          ],
        }
      : {}),
  });
}

/** The middle one by `by` (the lower middle of an even count): a real round, its other figures with it. */
function middle<T>(xs: T[], by: (x: T) => number): T {
  return [...xs].sort((a, b) => by(a) - by(b))[(xs.length - 1) >> 1];
}

const median = (xs: number[]) => middle(xs, (x) => x);
/** The round with the median requests/s. */
const medianRow = (rows: Row[]) => middle(rows, (r) => r.perSecond);
/** At a fixed offered load every side keeps up: the round with the median p99 (its warm-up's figures are reported apart). */
const medianOpen = (runs: OpenLoopRun[]): OpenLoopResult => {
  const { warmUp: _, ...run } = middle(runs, (r) => r.p99Ms);
  return run;
};

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function main(): Promise<PeersResult> {
  const durationS = Number(process.env.BENCH_DURATION_S ?? 10);
  ensureBuilt();
  const idle = readShare(OURS);
  await new Promise((r) => setTimeout(r, 3_000));
  const start = readShare(OURS);
  const machineBefore = shareBetween(idle, start);
  // PEERS_SERVICE_ENV='{"LLM_CACHE_MEMORY_MB":"32"}': more environment for Inkstone (a diagnostic; the record runs without).
  const gateway = await startGatewayOverTrivialUpstream('inkstone_bench_peers', process.env.PEERS_SERVICE_ENV ? JSON.parse(process.env.PEERS_SERVICE_ENV) : {});
  const { upstream, service } = gateway;
  // PEERS_PEER_NODE_ARGS: node flags for Portkey and the floor too (by default they run as their
  // packages ship: no flags), e.g. Inkstone's `--v8-pool-size=1`, to see what they gain from it.
  const peerArgs = process.env.PEERS_PEER_NODE_ARGS ? process.env.PEERS_PEER_NODE_ARGS.split(' ') : [];
  const portkey = await startNode([...peerArgs, 'node_modules/@portkey-ai/gateway/build/start-server.js', '--port={port}', '--headless'], (p) => `http://127.0.0.1:${p}/`, { NODE_ENV: 'production' });
  const forwarder = await startNode([...peerArgs, 'bench/lib/bare-forwarder.js', '{port}', upstream.url], (p) => `http://127.0.0.1:${p}/`, { NODE_ENV: 'production' });
  try {
    const tenant = await newTenant(service.url, '1000000.00');
    const sides = {
      inkstone: { url: service.url, headers: { authorization: `Bearer ${tenant.teacherKey}` }, model: 'inkstone-standard' },
      portkey: { url: portkey.url, headers: { authorization: 'Bearer bench', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream.url}/v1` }, model: 'deepseek-flash' },
      direct: { url: upstream.url, headers: { authorization: 'Bearer bench' }, model: 'deepseek-flash' },
      floor: { url: forwarder.url, headers: { authorization: 'Bearer bench' }, model: 'deepseek-flash' },
    };
    const inkstone = (unique: boolean) => load(`${sides.inkstone.url}/v1/chat/completions`, sides.inkstone.headers, sides.inkstone.model, durationS, unique);
    const viaPortkey = () => load(`${sides.portkey.url}/v1/chat/completions`, sides.portkey.headers, sides.portkey.model, durationS, true);
    const direct = () => load(`${sides.direct.url}/v1/chat/completions`, sides.direct.headers, sides.direct.model, durationS, true);
    const viaFloor = () => load(`${sides.floor.url}/v1/chat/completions`, sides.floor.headers, sides.floor.model, durationS, true);
    const atRateSlowWindows = { direct: [] as string[], portkey: [] as string[], floor: [] as string[], inkstone: [] as string[] };
    const atLoad = async (side: keyof typeof sides, rate: number) => {
      const slow = slowWindows();
      console.error(`at ${rate}/s: ${side} from ${new Date().toISOString()}`);
      const result = await openLoop({ url: sides[side].url, path: '/v1/chat/completions', headers: sides[side].headers, body: bodies(sides[side].model, true), rate, durationS, connections: CONNECTIONS, onAnswer: slow.onAnswer, warmUpS: POOL_WARM_S });
      atRateSlowWindows[side].push(slow.summary());
      return result;
    };
    // Warm-ups (JIT, pools), not counted.
    for (const warm of [direct, viaPortkey, viaFloor, () => inkstone(true)]) await warm();
    // When a run stops, up to `connections` requests are still in flight: the server completes and
    // records them. The counts are read once everything is quiet.
    const quiet = () => new Promise((r) => setTimeout(r, 1_000));
    const served = async () => (await json<{ requests: number }>(`${upstream.url}/count`)).requests;
    const providerCalls = async () => (await json<{ providerCalls: number }>(`${service.url}/v1/stats`, { key: tenant.adminKey })).providerCalls;
    // The hit path: one prompt, answered from the cache after its first call.
    await json(`${service.url}/v1/chat/completions`, { key: tenant.teacherKey, body: { model: 'inkstone-standard', messages: [{ role: 'user', content: '用一句话说明为什么要多读书。(same)' }], max_tokens: 64, temperature: 0 } });
    // Growth: the same miss path with every request from the next of MANY tenants (each its own
    // budget period, leases, cache and limits), after one warm-up pass so each tenant is known.
    const many = Number(process.env.PEERS_TENANTS ?? 10_000);
    const keys = await newTenantKeys(service.url, many);
    const spread = (amount?: number) => load(`${service.url}/v1/chat/completions`, {}, 'inkstone-standard', durationS, true, keys, amount);
    // Before each measured run, a warm-up pass: one request from every tenant (each has its budget
    // period, settings and lease: active tenants, as the one tenant of the other runs is).
    const warmTenants = () => spread(Math.max(keys.length, CONNECTIONS)); // (autocannon sends at least one request per connection)
    const manyRuns: Row[] = [];
    // ROUNDS rounds of every side in turn, so that each side meets the machine's drift as the
    // others do (on this shared virtual machine one side's rate moves by half from one minute to
    // the next); each row is the median round by requests/s, each ratio and difference the median
    // of the rounds' own (each round's sides measured seconds apart).
    const rounds = Number(process.env.PEERS_ROUNDS ?? 3);
    const saturated = { direct: [] as Row[], portkey: [] as Row[], floor: [] as Row[], miss: [] as Row[], hit: [] as Row[] };
    const reconciliation = { upstreamServed: 0, ledgerProviderCalls: 0 };
    for (let r = 0; r < rounds; r++) {
      saturated.direct.push(row(await direct()));
      saturated.portkey.push(row(await viaPortkey()));
      saturated.floor.push(row(await viaFloor()));
      await quiet();
      const before = { upstream: await served(), ledger: await providerCalls() };
      saturated.miss.push(row(await inkstone(true)));
      await quiet();
      reconciliation.upstreamServed += (await served()) - before.upstream;
      reconciliation.ledgerProviderCalls += (await providerCalls()) - before.ledger;
      await warmTenants();
      manyRuns.push(row(await spread()));
      await quiet();
      saturated.hit.push(row(await inkstone(false)));
    }
    const [d, p, f, m, h] = [saturated.direct, saturated.portkey, saturated.floor, saturated.miss, saturated.hit].map(medianRow);
    const perRound = (fn: (i: number) => number) => Array.from({ length: rounds }, (_, i) => fn(i));
    const overPortkey = perRound((i) => Math.round((saturated.miss[i].perSecond / Math.max(1, saturated.portkey[i].perSecond)) * 100) / 100);
    const addedP99 = perRound((i) => saturated.miss[i].p99Ms - saturated.direct[i].p99Ms);
    const manyOverOne = perRound((i) => Math.round((manyRuns[i].perSecond / Math.max(1, saturated.miss[i].perSecond)) * 100) / 100);
    // Below saturation: the same offered load through each, half of what Portkey served saturated.
    const offered = Number(process.env.PEERS_RATE ?? Math.max(100, Math.round(p.perSecond / 2 / 50) * 50));
    const open = { direct: [] as OpenLoopRun[], portkey: [] as OpenLoopRun[], floor: [] as OpenLoopRun[], inkstone: [] as OpenLoopRun[] };
    for (let r = 0; r < rounds; r++) for (const side of ['direct', 'portkey', 'floor', 'inkstone'] as const) open[side].push(await atLoad(side, offered));
    const added = (side: 'portkey' | 'floor' | 'inkstone', q: 'p50Ms' | 'p99Ms') => perRound((i) => Math.round((open[side][i][q] - open.direct[i][q]) * 10) / 10);
    const atRateAdded = { inkstoneP50: added('inkstone', 'p50Ms'), inkstoneP99: added('inkstone', 'p99Ms'), portkeyP99: added('portkey', 'p99Ms'), floorP99: added('floor', 'p99Ms') };
    // The warm-ups, which opened the connections: what each side added then, by round.
    const warm = (side: keyof typeof open, i: number) => open[side][i].warmUp!.p99Ms;
    const addedInWarmUp = (side: 'portkey' | 'floor' | 'inkstone') => perRound((i) => Math.round((warm(side, i) - warm('direct', i)) * 10) / 10);
    const warmAdded = POOL_WARM_S > 0 ? { inkstoneAddedP99Ms: addedInWarmUp('inkstone'), portkeyAddedP99Ms: addedInWarmUp('portkey'), floorAddedP99Ms: addedInWarmUp('floor') } : undefined;
    const mt = medianRow(manyRuns);
    const version = JSON.parse(fs.readFileSync('node_modules/@portkey-ai/gateway/package.json', 'utf8')).version as string;
    const inkstoneAddedP99Ms = median(addedP99);
    const rss = rssMb(service.child.pid!);
    const during = shareBetween(start, readShare(OURS));
    const inkstoneOverPortkey = median(overPortkey);
    return {
      commit: commit(),
      date: new Date().toISOString().slice(0, 10),
      machine: machine(),
      connections: CONNECTIONS,
      durationS,
      rounds,
      portkeyVersion: version,
      serviceNodeArgs: serviceNodeArgs(),
      ...(peerArgs.length ? { peerNodeArgs: peerArgs } : {}),
      direct: d,
      portkey: p,
      floor: f,
      inkstoneMiss: m,
      manyTenants: many,
      inkstoneMissManyTenants: mt,
      inkstoneHit: h,
      inkstoneAddedP99Ms,
      portkeyAddedP99Ms: median(perRound((i) => saturated.portkey[i].p99Ms - saturated.direct[i].p99Ms)),
      floorAddedP99Ms: median(perRound((i) => saturated.floor[i].p99Ms - saturated.direct[i].p99Ms)),
      inkstoneOverPortkey,
      inkstoneRssMb: rss,
      atRate: {
        offered,
        direct: medianOpen(open.direct),
        portkey: medianOpen(open.portkey),
        floor: medianOpen(open.floor),
        inkstone: medianOpen(open.inkstone),
        inkstoneAddedP50Ms: median(atRateAdded.inkstoneP50),
        inkstoneAddedP99Ms: median(atRateAdded.inkstoneP99),
        portkeyAddedP99Ms: median(atRateAdded.portkeyP99),
        floorAddedP99Ms: median(atRateAdded.floorP99),
        ...(warmAdded
          ? {
              poolWarmS: POOL_WARM_S,
              warmUp: {
                p99Ms: { direct: median(perRound((i) => warm('direct', i))), portkey: median(perRound((i) => warm('portkey', i))), floor: median(perRound((i) => warm('floor', i))), inkstone: median(perRound((i) => warm('inkstone', i))) },
                inkstoneAddedP99Ms: median(warmAdded.inkstoneAddedP99Ms),
                portkeyAddedP99Ms: median(warmAdded.portkeyAddedP99Ms),
                floorAddedP99Ms: median(warmAdded.floorAddedP99Ms),
              },
            }
          : {}),
      },
      perRound: {
        requestsPerSecond: {
          direct: saturated.direct.map((x) => x.perSecond),
          portkey: saturated.portkey.map((x) => x.perSecond),
          floor: saturated.floor.map((x) => x.perSecond),
          inkstoneMiss: saturated.miss.map((x) => x.perSecond),
          inkstoneHit: saturated.hit.map((x) => x.perSecond),
          inkstoneMissManyTenants: manyRuns.map((x) => x.perSecond),
        },
        inkstoneOverPortkey: overPortkey,
        manyTenantsOverOne: manyOverOne,
        inkstoneAddedP99Ms: addedP99,
        atRate: { inkstoneAddedP50Ms: atRateAdded.inkstoneP50, inkstoneAddedP99Ms: atRateAdded.inkstoneP99, portkeyAddedP99Ms: atRateAdded.portkeyP99, floorAddedP99Ms: atRateAdded.floorP99, ...(warmAdded ? { warmUp: warmAdded } : {}) },
        atRateSlowWindows,
      },
      reconciliation,
      machineLoad: { before: machineBefore, during },
      targets: {
        addedP99: inkstoneAddedP99Ms <= 10,
        addedP99BelowSaturation: median(atRateAdded.inkstoneP99) <= 10,
        miss1500: m.perSecond >= 1500,
        twicePortkey: inkstoneOverPortkey >= 2,
        hits4000: h.perSecond >= 4000,
        rss300: rss <= 300,
        manyTenantsWithin10pc: median(manyOverOne) >= 0.9,
      },
    };
  } finally {
    // PEERS_SERVICE_LOG=<file>: Inkstone's whole output (its log lines carry their times), to set
    // beside the at-rate runs' start times printed below (a diagnostic).
    if (process.env.PEERS_SERVICE_LOG) fs.writeFileSync(process.env.PEERS_SERVICE_LOG, service.output());
    await gateway.stop();
    await portkey.stop();
    await forwarder.stop();
  }
}

if (require.main === module) runMain('peers.json', main);
