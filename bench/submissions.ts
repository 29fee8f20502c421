/**
 * Essay submissions accepted per second, single (POST /v1/essays) and in class sets
 * (POST /v1/essays/batch, 100 essays a request), against the built service on PostgreSQL.
 * The service runs API-only (WORKERS_ENABLED=false) so that acceptance alone is measured; every
 * accepted essay is durably stored with its job before the 202.
 *
 *   npm run bench:submissions
 */
import autocannon from 'autocannon';
import { generateEssay } from '../test/support/essays';
import { dropDatabase, ensureBuilt, freshDatabase, json, newTenant, startService, runMain } from './lib/harness';

export interface SubmissionsResult {
  single: { connections: number; durationS: number; requests: number; perSecond: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number };
  batch: { connections: number; durationS: number; essaysPerRequest: number; requests: number; essaysPerSecond: number; p50Ms: number; p99Ms: number; non2xx: number };
  storedEssays: number;
}

async function load(url: string, key: string, body: string, connections: number, duration: number) {
  return autocannon({
    url,
    method: 'POST',
    connections,
    duration,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body,
  });
}

export async function runSubmissions(opts: { durationS?: number } = {}): Promise<SubmissionsResult> {
  const durationS = opts.durationS ?? Number(process.env.BENCH_DURATION_S ?? 15);
  ensureBuilt();
  const dbName = 'inkstone_bench_submissions';
  const databaseUrl = await freshDatabase(dbName);
  const service = await startService({ DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: '20', WORKERS_ENABLED: 'false' });
  try {
    const tenant = await newTenant(service.url);
    const essay = generateEssay(42, 'zh', { targetChars: 900 }).text;
    // Warm up: connection pools, JIT.
    await load(`${service.url}/v1/essays`, tenant.teacherKey, JSON.stringify({ text: essay }), 10, 2);

    const single = await load(`${service.url}/v1/essays`, tenant.teacherKey, JSON.stringify({ text: essay, studentRef: 's1' }), 50, durationS);
    const per = 100;
    const batchBody = JSON.stringify({ essays: Array.from({ length: per }, (_, i) => ({ text: generateEssay(i, 'zh', { targetChars: 900 }).text, studentRef: `b${i}` })) });
    const batch = await load(`${service.url}/v1/essays/batch`, tenant.teacherKey, batchBody, 8, durationS);
    const stats = await json<{ data: unknown[] }>(`${service.url}/v1/essays?limit=1`, { key: tenant.teacherKey });
    void stats;
    const { Client } = await import('pg');
    const c = new Client({ connectionString: databaseUrl });
    await c.connect();
    const [{ n }] = (await c.query(`SELECT count(*)::int AS n FROM essays`)).rows;
    await c.end();
    return {
      single: {
        connections: 50,
        durationS,
        requests: single.requests.total,
        perSecond: Math.round(single.requests.average),
        p50Ms: single.latency.p50,
        p99Ms: single.latency.p99,
        errors: single.errors,
        non2xx: single.non2xx,
      },
      batch: {
        connections: 8,
        durationS,
        essaysPerRequest: per,
        requests: batch.requests.total,
        essaysPerSecond: Math.round(batch.requests.average * per),
        p50Ms: batch.latency.p50,
        p99Ms: batch.latency.p99,
        non2xx: batch.non2xx,
      },
      storedEssays: n,
    };
  } finally {
    await service.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('submissions.json', runSubmissions);
