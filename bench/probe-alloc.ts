/**
 * Where the miss path allocates (a diagnostic, not a benchmark of record): the built service over
 * the trivial upstream, one tenant, an open loop of RATE requests/s (default 450) for 10 s after 5 s
 * of warm-up, with V8's sampling heap profiler on through the inspector, keeping the objects that
 * minor and major collections freed (`--heap-prof` keeps only what is still alive). Prints the KB
 * allocated a request (sampled every ALLOC_INTERVAL bytes, default 4096) by file and by function,
 * and writes the profile to ALLOC_PROFILE (default /tmp/alloc.heapprofile, for Chrome's DevTools).
 * ALLOC_MINOR=0: only what outlived the young generation (promoted, then freed by a major collection
 * or still alive at the end), which is what makes mark-compacts.
 * The sampling slows the service: its latencies here mean nothing.
 *
 *   BENCH_SKIP_BUILD=1 npx ts-node --transpile-only bench/probe-alloc.ts
 */
import * as fs from 'node:fs';
import { WebSocket } from 'undici';
import { openLoop } from './lib/open-loop';
import { ensureBuilt, newTenant, startGatewayOverTrivialUpstream } from './lib/harness';

/** A node of V8's sampling heap profile. */
interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

async function main() {
  ensureBuilt();
  const rate = Number(process.env.RATE ?? 450);
  const interval = Number(process.env.ALLOC_INTERVAL ?? 4096);
  process.env.BENCH_NODE_ARGS = `${process.env.BENCH_NODE_ARGS ?? ''} --inspect=127.0.0.1:9339`.trim();
  const g = await startGatewayOverTrivialUpstream('inkstone_bench_alloc');
  try {
    const t = await newTenant(g.service.url, '1000000.00');
    const body = (i: number) => JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: `q ${process.pid}-${i}-${Math.random()}` }], max_tokens: 64 });
    const headers = { authorization: `Bearer ${t.teacherKey}` };
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
    const p = prof.result?.profile as { head: ProfileNode };
    const self = new Map<string, number>();
    const byFile = new Map<string, number>();
    let total = 0;
    const walk = (node: ProfileNode): void => {
      const cf = node.callFrame;
      const url = String(cf.url).replace(/.*node_modules\//, 'nm/').replace(/.*\/dist\//, 'dist/');
      const k = `${cf.functionName || '(anon)'} ${url}:${cf.lineNumber}`;
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
    fs.writeFileSync(process.env.ALLOC_PROFILE ?? '/tmp/alloc.heapprofile', JSON.stringify(p));
    ws.close();
  } finally {
    await g.stop();
  }
}
void main();
