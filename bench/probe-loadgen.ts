/**
 * What the load generator itself costs a request (a diagnostic): autocannon at 50 connections against
 * the trivial upstream alone, three ways of making the requests, alternated: `setup` (a setupRequest
 * that builds each body with JSON.stringify, as bench:peers' load() does), `id` (one body with
 * autocannon's own `[<id>]` replacement, a unique id a request), `fixed` (one body, built once).
 * Prints each run's requests/s and this process's CPU a request.
 *
 *   npx ts-node --transpile-only bench/probe-loadgen.ts
 */
import autocannon from 'autocannon';
import { startNode } from './lib/harness';

async function main() {
  const upstream = await startNode(['-r', 'ts-node/register/transpile-only', 'bench/lib/trivial-upstream.ts', '--port', '{port}'], (p) => `http://127.0.0.1:${p}/health`);
  try {
    const url = `${upstream.url}/v1/chat/completions`;
    const msg = (tag: string) => JSON.stringify({ model: 'deepseek-flash', messages: [{ role: 'user', content: `用一句话说明为什么要多读书。(${tag})` }], max_tokens: 64, temperature: 0 });
    const base = { url, method: 'POST' as const, connections: 50, duration: Number(process.env.BENCH_DURATION_S ?? 5), headers: { 'content-type': 'application/json', authorization: 'Bearer bench' } };
    let n = 0;
    const ways: Record<string, () => autocannon.Options> = {
      setup: () => ({ ...base, body: msg('0'), requests: [{ setupRequest: (req: any) => ({ ...req, body: msg(`x-${n++}`) }) }] }),
      id: () => ({ ...base, body: msg('x-[<id>]'), idReplacement: true }),
      fixed: () => ({ ...base, body: msg('same') }),
    };
    for (let round = 0; round < Number(process.env.ROUNDS ?? 2); round++) {
      for (const [name, opts] of Object.entries(ways)) {
        const before = process.cpuUsage();
        const r = await autocannon(opts());
        const cpu = process.cpuUsage(before);
        console.log(JSON.stringify({ way: name, perSecond: Math.round(r.requests.average), loadGeneratorMsPerRequest: Number(((cpu.user + cpu.system) / 1000 / r.requests.total).toFixed(4)) }));
      }
    }
  } finally {
    await upstream.stop();
  }
}

void main();
