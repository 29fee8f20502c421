/**
 * Where the miss path allocates (a diagnostic, not a benchmark of record): the built service over
 * the trivial upstream, one tenant, an open loop of RATE requests/s (default 450) for 10 s after 5 s
 * of warm-up, with V8's sampling heap profiler on through the inspector, keeping the objects that
 * minor and major collections freed (`--heap-prof` keeps only what is still alive). Prints the KB
 * allocated a request (sampled every ALLOC_INTERVAL bytes, default 4096) by file and by function,
 * and writes the profile to ALLOC_PROFILE (default /tmp/alloc.heapprofile, for Chrome's DevTools).
 * ALLOC_MINOR=0: only what outlived the young generation (promoted, then freed by a major collection
 * or still alive at the end), which is what makes mark-compacts.
 * PROBE_TENANTS=N: each request from the next of N tenants, after one warm-up request from each.
 * PROBE_HITS=1: every request the same prompt, so the hit path (each tenant's first is a miss).
 * Also prints the large objects (128 KB and more: V8 puts them in their own space, in the old
 * generation from birth, freed only by a mark-compact) by where they were made.
 * The sampling slows the service: its latencies here mean nothing.
 *
 *   BENCH_SKIP_BUILD=1 npx ts-node --transpile-only bench/probe-alloc.ts
 */
import * as fs from 'node:fs';
import { WebSocket } from 'undici';
import { oneCallFromEach, openLoop } from './lib/open-loop';
import { ensureBuilt, newTenant, newTenantKeys, startGatewayOverTrivialUpstream } from './lib/harness';

/** A node of V8's sampling heap profile. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** V8's largest regular object (kMaxRegularHeapObjectSize): anything bigger is a large object. */
const LARGE = 128 * 1024;

const frameName = (cf: ProfileNode['callFrame']) => `${cf.functionName || '(anon)'} ${String(cf.url).replace(/.*node_modules\//, 'nm/').replace(/.*\/dist\//, 'dist/')}:${cf.lineNumber}`;

/** The sampled large objects by their four innermost frames: MB, count, mean size. */
function largeObjects(p: { head: ProfileNode; samples: Array<{ size: number; nodeId: number }> }): string {
  const node = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  const index = (n: ProfileNode): void => {
    node.set(n.id, n);
    for (const c of n.children) {
      parent.set(c.id, n.id);
      index(c);
    }
  };
  index(p.head);
  const bySite = new Map<string, { n: number; bytes: number }>();
  for (const s of p.samples.filter((x) => x.size >= LARGE)) {
    const frames: string[] = [];
    for (let id: number | undefined = s.nodeId; id !== undefined && frames.length < 4; id = parent.get(id)) frames.push(frameName(node.get(id)!.callFrame));
    const k = frames.join(' < ');
    const a = bySite.get(k) ?? { n: 0, bytes: 0 };
    a.n++;
    a.bytes += s.size;
    bySite.set(k, a);
  }
  const total = [...bySite.values()].reduce((a, b) => a + b.bytes, 0);
  return [
    `large objects: ${(total / 2 ** 20).toFixed(1)} MB in ${[...bySite.values()].reduce((a, b) => a + b.n, 0)}`,
    ...[...bySite].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 12).map(([k, a]) => `${(a.bytes / 2 ** 20).toFixed(1).padStart(6)} MB ${String(a.n).padStart(4)} × ${Math.round(a.bytes / a.n / 1024)} KB  ${k}`),
  ].join('\n');
}

async function main() {
  ensureBuilt();
  const rate = Number(process.env.RATE ?? 450);
  const interval = Number(process.env.ALLOC_INTERVAL ?? 4096);
  process.env.BENCH_NODE_ARGS = `${process.env.BENCH_NODE_ARGS ?? ''} --inspect=127.0.0.1:9339`.trim();
  const g = await startGatewayOverTrivialUpstream('inkstone_bench_alloc');
  try {
    const t = await newTenant(g.service.url, '1000000.00');
    // PROBE_HITS=1: every measured request the same prompt (the hit path after its first call).
    const hits = process.env.PROBE_HITS === '1';
    const body = (i: number) => JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: hits ? 'q the same' : `q ${process.pid}-${i}-${Math.random()}` }], max_tokens: 64 });
    const keys = [t.teacherKey, ...(await newTenantKeys(g.service.url, Number(process.env.PROBE_TENANTS ?? 1) - 1))];
    const headers = (i: number) => ({ authorization: `Bearer ${keys[i % keys.length]}` });
    if (keys.length > 1) await oneCallFromEach(g.service.url, keys, body, rate);
    await openLoop({ url: g.service.url, path: '/v1/chat/completions', headers, body, rate, durationS: 5, connections: 50 });
    const list = (await (await fetch('http://127.0.0.1:9339/json/list')).json()) as Array<{ webSocketDebuggerUrl: string }>;
    const ws = new WebSocket(list[0].webSocketDebuggerUrl);
    await new Promise((r) => ws.addEventListener('open', r, { once: true }));
    let id = 0;
    const pending = new Map<number, (v: { result?: { profile?: unknown }; error?: unknown }) => void>();
    ws.addEventListener('message', (e) => {
      const msg = JSON.parse(String(e.data));
      if (msg.id && pending.has(msg.id)) pending.get(msg.id)!(msg);
    });
    const call = (method: string, params: object = {}) =>
      new Promise<{ result?: { profile?: unknown }; error?: unknown }>((resolve) => {
        const i = ++id;
        pending.set(i, resolve);
        ws.send(JSON.stringify({ id: i, method, params }));
      });
    await call('HeapProfiler.enable');
    const started = await call('HeapProfiler.startSampling', { samplingInterval: interval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.ALLOC_MINOR !== '0' });
    if (started.error) throw new Error(JSON.stringify(started.error));
    const n = rate * 10;
    const r = await openLoop({ url: g.service.url, path: '/v1/chat/completions', headers, body, rate, durationS: 10, connections: 50 });
    const prof = await call('HeapProfiler.stopSampling');
    console.log(JSON.stringify(r));
    const p = prof.result?.profile as { head: ProfileNode; samples: Array<{ size: number; nodeId: number }> };
    const self = new Map<string, number>();
    const byFile = new Map<string, number>();
    let total = 0;
    const walk = (node: ProfileNode): void => {
      const cf = node.callFrame;
      const k = frameName(cf);
      self.set(k, (self.get(k) ?? 0) + node.selfSize);
      const f = String(cf.url).includes('node_modules/') ? String(cf.url).replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, '$1') : String(cf.url).includes('/dist/') ? String(cf.url).replace(/.*\/dist\//, 'dist/') : cf.url || cf.functionName;
      byFile.set(f, (byFile.get(f) ?? 0) + node.selfSize);
      total += node.selfSize;
      for (const c of node.children) walk(c);
    };
    walk(p.head);
    console.log('sampled KB a request', (total / 1024 / n).toFixed(1));
    const top = (m: Map<string, number>, k: number) =>
      [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}% ${(v / 1024 / n).toFixed(2).padStart(6)} KB/req  ${name}`).join('\n');
    console.log(top(byFile, 25));
    console.log('---');
    console.log(top(self, 45));
    console.log('---');
    console.log(largeObjects(p));
    fs.writeFileSync(process.env.ALLOC_PROFILE ?? '/tmp/alloc.heapprofile', JSON.stringify(p));
    ws.close();
  } finally {
    await g.stop();
  }
}
void main();
