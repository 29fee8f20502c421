/**
 * Grading throughput: how many essays per second the workers grade when every model call takes
 * about 1.5 s (the fake provider's latency), with distinct essays (no cache hits). The rate is
 * measured between 10% and 90% of the essays being done, so start-up and the tail do not count.
 *
 *   npm run bench:grading
 */
import { Client } from 'pg';
import { generateEssay } from '../test/support/essays';
import { dropDatabase, ensureBuilt, fakeProviderEnv, freshDatabase, json, newTenant, sleep, startFake, startService, runMain } from './lib/harness';

export interface GradingThroughputResult {
  essays: number;
  providerLatencyMs: number;
  workerConcurrency: number;
  essaysPerSecond: number;
  totalSeconds: number;
  graded: number;
  failed: number;
  offline: number;
  cacheHits: number;
}

export async function runGradingThroughput(opts: { essays?: number; latencyMs?: number; concurrency?: number } = {}): Promise<GradingThroughputResult> {
  const essays = opts.essays ?? Number(process.env.BENCH_ESSAYS ?? 3000);
  const latencyMs = opts.latencyMs ?? 1500;
  const concurrency = opts.concurrency ?? Number(process.env.BENCH_WORKER_CONCURRENCY ?? 240);
  ensureBuilt();
  const dbName = 'inkstone_bench_grading';
  const databaseUrl = await freshDatabase(dbName);
  const fake = await startFake(latencyMs);
  const service = await startService({
    ...fakeProviderEnv(fake.url),
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: '40',
    WORKER_CONCURRENCY: String(concurrency),
    WORKER_POLL_MS: '100',
    LLM_STANDARD_MODELS: 'dashscope:qwen-flash,deepseek:deepseek-flash',
  });
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const tenant = await newTenant(service.url);
    const t0 = Date.now();
    for (let i = 0; i < essays; i += 200) {
      const batch = Array.from({ length: Math.min(200, essays - i) }, (_, j) => ({ text: generateEssay(10_000 + i + j, (i + j) % 3 ? 'zh' : 'en').text, studentRef: `s${i + j}` }));
      await json(`${service.url}/v1/essays/batch`, { key: tenant.teacherKey, body: { essays: batch } });
    }
    const marks: Array<{ at: number; done: number }> = [];
    for (;;) {
      const [{ n }] = (await db.query(`SELECT count(*)::int AS n FROM essays WHERE status IN ('graded', 'needs_review', 'failed')`)).rows;
      marks.push({ at: Date.now(), done: n });
      if (n >= essays) break;
      if (Date.now() - t0 > 15 * 60_000) throw new Error(`only ${n} of ${essays} essays done after 15 minutes`);
      await sleep(250);
    }
    const at = (share: number) => marks.find((m) => m.done >= essays * share)!;
    const from = at(0.1);
    const to = at(0.9);
    const rate = (to.done - from.done) / ((to.at - from.at) / 1000);
    const [s] = (
      await db.query(`SELECT count(*) FILTER (WHERE status IN ('graded', 'needs_review'))::int AS graded,
                             count(*) FILTER (WHERE status = 'failed')::int AS failed,
                             count(*) FILTER (WHERE 'offline_estimate' = ANY(flags))::int AS offline,
                             count(*) FILTER (WHERE cache_status = 'hit')::int AS hits FROM essays`)
    ).rows;
    return {
      essays,
      providerLatencyMs: latencyMs,
      workerConcurrency: concurrency,
      essaysPerSecond: Math.round(rate * 10) / 10,
      totalSeconds: Math.round((marks[marks.length - 1].at - t0) / 100) / 10,
      graded: s.graded,
      failed: s.failed,
      offline: s.offline,
      cacheHits: s.hits,
    };
  } finally {
    await db.end();
    await service.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('grading-throughput.json', runGradingThroughput);
