/**
 * What a new instance holds in memory once it has started:
 * the built service (`npm start`'s node flags, see harness.serviceNodeArgs) started ROUNDS times
 * (default 2) on a new embedded data directory (no DATABASE_URL: PGlite, the default) and
 * restarted on it, and as many times on a new PostgreSQL database (EXTERNAL=0: not); its resident
 * memory (VmRSS) and peak (VmHWM) read from /proc/<pid>/status once /health answers and SETTLE_MS
 * (default 1,000) after, then the service stopped. BENCH_NODE_ARGS adds node flags after npm start's, as in the benches.
 *
 * The result goes to bench/results/start-memory.json (BENCHMARKS.md, by `npm run bench:report`).
 *
 *   npm run bench:start-memory
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dropDatabase, ensureBuilt, freshDatabase, machine, runMain, serviceNodeArgs, sleep, startService } from './lib/harness';

/** A field of /proc/<pid>/status in MB (the kernel writes kB). */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  if (!line) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Math.round(Number(line.split(/\s+/)[1]) / 1024);
}

/** One start of the service with `env`: its memory once up, then stopped. */
async function measure(env: Record<string, string>, settleMs: number) {
  const started = Date.now();
  const service = await startService(env);
  try {
    const pid = service.child.pid!;
    const atHealth = { rssMb: statusMb(pid, 'VmRSS'), startMs: Date.now() - started };
    await sleep(settleMs);
    return { startMs: atHealth.startMs, rssAtHealthMb: atHealth.rssMb, rssAfterSettleMb: statusMb(pid, 'VmRSS'), peakRssMb: statusMb(pid, 'VmHWM') };
  } finally {
    await service.stop();
  }
}

/** A first start on a new store, then a restart on the same one (the data directory or database as the first left it). */
async function once(store: 'embedded' | 'postgres', round: number, settleMs: number) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'inkstone-start-memory-'));
  const dbName = `inkstone_bench_start_${round}`;
  const env: Record<string, string> = { INKSTONE_DATA_DIR: dataDir };
  if (store === 'postgres') env.DATABASE_URL = await freshDatabase(dbName);
  try {
    return [
      { store, round, start: 'new', ...(await measure(env, settleMs)) },
      { store, round, start: 'restart', ...(await measure(env, settleMs)) },
    ];
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (store === 'postgres') await dropDatabase(dbName);
  }
}

async function main() {
  ensureBuilt();
  const rounds = Number(process.env.ROUNDS ?? 2);
  const settleMs = Number(process.env.SETTLE_MS ?? 1_000);
  const stores: Array<'embedded' | 'postgres'> = process.env.EXTERNAL === '0' ? ['embedded'] : ['embedded', 'postgres'];
  const runs = [];
  for (let round = 0; round < rounds; round++) for (const store of stores) runs.push(...(await once(store, round, settleMs)));
  return { date: new Date().toISOString().slice(0, 10), machine: machine(), nodeArgs: serviceNodeArgs(), settleMs, runs };
}

runMain('start-memory.json', main);
