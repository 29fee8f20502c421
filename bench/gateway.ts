/**
 * Gateway overhead and the cache-hit path: the same chat completion sent straight to the fake
 * provider, through Inkstone with `Cache-Control: no-cache` (a provider call every time: auth,
 * budget reservation, settlement and ledger row, cache write), and through Inkstone as an exact
 * repeat (answered from the cache: a lookup and a ledger row, no provider call).
 *
 *   npm run bench:gateway
 */
import autocannon from 'autocannon';
import { dropDatabase, ensureBuilt, fakeProviderEnv, freshDatabase, json, newTenant, startFake, startService, runMain } from './lib/harness';

export interface GatewayResult {
  connections: number;
  durationS: number;
  direct: Stats;
  throughInkstone: Stats;
  cacheHit: Stats;
  overheadP50Ms: number;
  overheadP99Ms: number;
}

interface Stats {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
}

function stats(r: autocannon.Result): Stats {
  return { perSecond: Math.round(r.requests.average), p50Ms: r.latency.p50, p99Ms: r.latency.p99, non2xx: r.non2xx };
}

export async function runGateway(opts: { durationS?: number } = {}): Promise<GatewayResult> {
  const durationS = opts.durationS ?? Number(process.env.BENCH_DURATION_S ?? 10);
  const connections = 10;
  ensureBuilt();
  const dbName = 'inkstone_bench_gateway';
  const databaseUrl = await freshDatabase(dbName);
  const fake = await startFake(0);
  const service = await startService({
    ...fakeProviderEnv(fake.url),
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: '20',
    WORKERS_ENABLED: 'false',
    LLM_STANDARD_MODELS: 'deepseek:deepseek-flash',
  });
  try {
    const tenant = await newTenant(service.url);
    const messages = [{ role: 'user', content: '用一句话说明为什么要多读书。' }];
    const run = (url: string, headers: Record<string, string>, body: unknown) =>
      autocannon({ url, method: 'POST', connections, duration: durationS, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    // Warm-up.
    await run(`${service.url}/v1/chat/completions`, { authorization: `Bearer ${tenant.teacherKey}`, 'cache-control': 'no-cache' }, { model: 'inkstone-standard', messages, max_tokens: 64 });
    const direct = await run(`${fake.url}/deepseek/chat/completions`, { authorization: 'Bearer bench' }, { model: 'deepseek-flash', messages, max_tokens: 64 });
    const through = await run(
      `${service.url}/v1/chat/completions`,
      { authorization: `Bearer ${tenant.teacherKey}`, 'cache-control': 'no-cache' },
      { model: 'inkstone-standard', messages, max_tokens: 64 },
    );
    await json(`${service.url}/v1/chat/completions`, { key: tenant.teacherKey, body: { model: 'inkstone-standard', messages, max_tokens: 64, temperature: 0 } });
    const hit = await run(`${service.url}/v1/chat/completions`, { authorization: `Bearer ${tenant.teacherKey}` }, { model: 'inkstone-standard', messages, max_tokens: 64, temperature: 0 });
    const d = stats(direct);
    const th = stats(through);
    return {
      connections,
      durationS,
      direct: d,
      throughInkstone: th,
      cacheHit: stats(hit),
      overheadP50Ms: th.p50Ms - d.p50Ms,
      overheadP99Ms: th.p99Ms - d.p99Ms,
    };
  } finally {
    await service.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('gateway.json', runGateway);
