/**
 * What a Prometheus scrape costs with many tenants (a diagnostic, not a benchmark of record): the
 * built service over the trivial upstream, PROBE_TENANTS tenants (default 10,000) each making one
 * call (1,000/s), then five scrapes of /metrics, each's time, size and number of series.
 * PROBE_ENV='{"METRICS_TENANT_SERIES":"100000"}' gives every tenant its own series (as before the bound).
 *
 *   BENCH_SKIP_BUILD=1 npx ts-node --transpile-only bench/probe-scrape.ts
 */
import { oneCallFromEach } from './lib/open-loop';
import { ensureBuilt, newTenantKeys, OPERATOR, startGatewayOverTrivialUpstream } from './lib/harness';

async function main() {
  ensureBuilt();
  const g = await startGatewayOverTrivialUpstream('inkstone_bench_scrape', process.env.PROBE_ENV ? JSON.parse(process.env.PROBE_ENV) : {});
  try {
    const n = Number(process.env.PROBE_TENANTS ?? 10_000);
    const keys = await newTenantKeys(g.service.url, n);
    const body = (i: number) => JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: `q ${process.pid}-${i}-${Math.random()}` }], max_tokens: 64 });
    await oneCallFromEach(g.service.url, keys, body, 1000);
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const text = await (await fetch(`${g.service.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } })).text();
      console.log(JSON.stringify({ scrapeMs: Math.round((performance.now() - t0) * 10) / 10, bytes: text.length, series: text.split('\n').filter((l) => l && !l.startsWith('#')).length }));
    }
  } finally {
    await g.stop();
  }
}
void main();
