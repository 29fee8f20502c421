/**
 * Fair share: tenant A floods the queue with 5,000 essays (25 class sets of 200), and tenant B
 * submits one class set of 20 shortly after the flood starts. How long do B's essays take from
 * their 202 to graded, against the same 20 essays submitted by a tenant alone on the service?
 *
 * One service process (the built service, as `npm start` runs it) on a fresh PostgreSQL database,
 * the fake provider answering every grading after a fixed latency, and a worker pool smaller than
 * a tenant's `essaysGrading` cap: A alone could fill every worker, so what keeps B's essays moving
 * is the queue's round-robin claim, not the per-tenant cap.
 *
 * Each B essay is watched over its event stream (GET /v1/essays/:id/events): the time of its 202
 * and of its terminal status. While B's essays wait, a second connection samples the jobs table
 * (the service records no claim time): when each B essay was claimed, and how many of A's essays
 * were claimed after B's 202 and before it (the places A took in the claim rounds B waited
 * through). From the database afterwards: A's essays graded while each B essay waited, A's
 * essays whose model call started ahead of it (`llm_calls`), A's throughput, and how many of A's
 * essays were waiting when B's class set was queued (what B would wait behind under FIFO).
 *
 *   npm run bench:fairness
 *
 * Knobs (environment): BENCH_FAIRNESS_LATENCY_MS (500), BENCH_FAIRNESS_CONCURRENCY (32),
 * BENCH_FAIRNESS_A_ESSAYS (5000), BENCH_FAIRNESS_B_AFTER (A essays accepted before B submits, 2000).
 */
import { Client } from 'pg';
import { generateEssay } from '../test/support/essays';
import { commit, dropDatabase, ensureBuilt, fakeProviderEnv, freshDatabase, json, machine, newTenant, runMain, sleep, startFake, startService, waitEssaysDone } from './lib/harness';

const TERMINAL = new Set(['graded', 'needs_review', 'failed']);
const CLASS_SET = 200;
const SAMPLE_MS = 15;

export interface EssayTiming {
  /** index in B's class set (0-based) */
  index: number;
  id: string;
  status: string;
  /** client side: 202 of the class set → terminal status event on the essay's stream */
  timeToGradeMs: number;
  /** client side: 202 → `grading` status event on the stream (null when the stream never saw it; an upper bound: streams open after the 202) */
  streamGradingMs: number | null;
  /** 202 → the first sample of the jobs table that shows the essay's job claimed (a read every ~15 ms plus its own time) */
  claimWaitMs: number;
  /** the other tenant's (A's) essays claimed by workers after B's 202 and before this essay was claimed (same samples) */
  otherClaimedAhead: number;
  /** server side: essays.graded_at − essays.created_at */
  serverTimeToGradeMs: number;
  /** ms from the essay being queued (created_at) to its model call starting (llm_calls) */
  queuedToCallMs: number | null;
  /** the other tenant's (A's) essays whose model call started after this essay was queued and before its own */
  otherStartedAhead: number;
  /** A's essays graded after this essay was queued and before it was graded */
  otherGradedMeanwhile: number;
  /** B's own essays of the same class set whose call started before this one's */
  siblingsStartedAhead: number;
  cacheStatus: string | null;
}

export interface SideSummary {
  essays: number;
  graded: number;
  failed: number;
  cacheHits: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  minMs: number;
  claimWaitP50Ms: number;
  claimWaitMaxMs: number;
  serverP50Ms: number;
  serverP95Ms: number;
  otherClaimedAheadP50: number;
  otherClaimedAheadMax: number;
  otherStartedAheadP50: number;
  otherStartedAheadMax: number;
  /** jobs-table samples taken while B's essays waited for workers */
  samples: number;
  otherGradedMeanwhileP50: number;
  otherGradedMeanwhileMax: number;
  perEssay: EssayTiming[];
}

export interface FairnessResult {
  command: string;
  date: string;
  commit: string;
  machine: Record<string, string | number>;
  settings: {
    providerLatencyMs: number;
    workerConcurrency: number;
    workerPollMs: number;
    databasePoolSize: number;
    models: string;
    /** the effective limits of tenant A, as GET /v1/limits shows them (env defaults, no override) */
    limits: Record<string, number>;
    floodEssays: number;
    floodClassSetSize: number;
    floodPacing: string;
    bEssays: number;
    bSubmission: string;
    bSubmittedAfterAEssaysAccepted: number;
    percentiles: string;
  };
  flood: {
    requests: number;
    rateLimited429: number;
    submitSeconds: number;
    /** A's 202 of its first class set → A's last essay graded */
    drainSeconds: number;
    graded: number;
    failed: number;
    cacheHits: number;
    essaysPerSecondOverall: number;
    essaysPerSecond10to90: number;
    /** A's essays queued and not yet started when B's class set was queued: what B would wait behind under FIFO */
    aQueuedAheadAtBSubmit: number;
    /** aQueuedAheadAtBSubmit / A's 10–90% rate: B's wait under a FIFO queue, estimated */
    fifoWaitEstimateSeconds: number;
    /** seconds after A's first 202 that B's class set got its 202 */
    bSubmittedAtSeconds: number;
  };
  bAlone: SideSummary;
  bDuringFlood: SideSummary;
  ratio: { p50: number; p95: number; max: number };
  seconds: number;
  passed: boolean;
}

/** Nearest-rank percentile of a sorted list. */
function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
const sortNum = (xs: number[]) => [...xs].sort((a, b) => a - b);
const round1 = (x: number) => Math.round(x * 10) / 10;

async function post(url: string, key: string, body: unknown, on429: () => void): Promise<any> {
  for (;;) {
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await res.text();
    if (res.status === 429) {
      on429();
      await sleep(1000 * Number(res.headers.get('retry-after') ?? 1));
      continue;
    }
    if (!res.ok) throw new Error(`POST ${url} → ${res.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text);
  }
}

interface Watched {
  id: string;
  status: string;
  grading: number | null;
  done: number;
}

/**
 * Follows one essay's event stream until its terminal status: when `grading` and the terminal
 * status arrived (Date.now()). Falls back to polling GET /v1/essays/:id if the stream ends early.
 */
async function watch(serviceUrl: string, key: string, id: string, deadline: number): Promise<Watched> {
  let grading: number | null = null;
  try {
    const res = await fetch(`${serviceUrl}/v1/essays/${id}/events`, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
    if (res.status !== 200 || !res.body) throw new Error(`event stream of ${id}: ${res.status} ${await res.text()}`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== 'status' || !data) continue;
        const now = Date.now();
        const status = JSON.parse(data).status as string;
        if (status === 'grading' && grading === null) grading = now;
        if (TERMINAL.has(status)) {
          await reader.cancel().catch(() => undefined);
          return { id, status, grading, done: now };
        }
      }
    }
  } catch (err) {
    console.error(`fairness: stream of ${id} failed (${(err as Error).message}); polling instead`);
  }
  for (;;) {
    const e = await json<{ status: string }>(`${serviceUrl}/v1/essays/${id}`, { key });
    if (TERMINAL.has(e.status)) return { id, status: e.status, grading, done: Date.now() };
    if (Date.now() > deadline) throw new Error(`essay ${id} not graded in time (${e.status})`);
    await sleep(200);
  }
}

interface Sample {
  /** clock_timestamp() of the sample, epoch ms (the database runs on this machine: the same clock as Date.now()) */
  at: number;
  /** A's grading jobs no longer queued (claimed: running, done or failed) */
  otherClaimed: number;
  /** B's essays whose grading job is no longer queued */
  claimed: Set<string>;
}

const NO_TENANT = '00000000-0000-0000-0000-000000000000';

/**
 * Samples the jobs table on a connection of its own, every ~SAMPLE_MS, until `expected` of B's
 * jobs have been claimed: when each B essay was claimed, and how many of A's jobs had been
 * claimed by then. The service writes no claim time, so this is as close as the outside gets.
 */
function startSampler(databaseUrl: string, tenantId: string, otherTenantId: string | null, expected: number) {
  const samples: Sample[] = [];
  let stopped = false;
  const client = new Client({ connectionString: databaseUrl });
  const loop = (async () => {
    await client.connect();
    try {
      const deadline = Date.now() + 5 * 60_000;
      while (!stopped && Date.now() < deadline) {
        const [r] = (
          await client.query(
            `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at,
                    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'grade' AND status <> 'queued')::int AS other,
                    (SELECT coalesce(array_agg(essay_id::text), '{}') FROM jobs WHERE tenant_id = $2 AND kind = 'grade' AND status <> 'queued') AS mine`,
            [otherTenantId ?? NO_TENANT, tenantId],
          )
        ).rows;
        samples.push({ at: Number(r.at), otherClaimed: r.other, claimed: new Set(r.mine as string[]) });
        if ((r.mine as string[]).length >= expected) break;
        await sleep(SAMPLE_MS);
      }
    } finally {
      await client.end();
    }
  })();
  return {
    ready: () =>
      new Promise<void>((resolve, reject) => {
        loop.catch(reject);
        const wait = () => (samples.length ? resolve() : setTimeout(wait, 5));
        wait();
      }),
    done: async () => {
      await loop;
      return samples;
    },
    stop: async () => {
      stopped = true;
      await loop.catch(() => undefined);
    },
  };
}

interface Run {
  accepted: number;
  ids: string[];
  watched: Watched[];
  samples: Sample[];
}

/** Submits B's class set and follows each essay: the 202's time, each essay's stream times and claim samples. */
async function submitAndWatch(
  serviceUrl: string,
  databaseUrl: string,
  tenantId: string,
  otherTenantId: string | null,
  key: string,
  essays: Array<{ text: string; studentRef: string }>,
): Promise<Run> {
  const sampler = startSampler(databaseUrl, tenantId, otherTenantId, essays.length);
  try {
    await sampler.ready();
    const r = await post(`${serviceUrl}/v1/essays/batch`, key, { essays }, () => {
      throw new Error('B was rate limited');
    });
    const accepted = Date.now();
    const ids = r.ids as string[];
    const watched = await Promise.all(ids.map((id) => watch(serviceUrl, key, id, accepted + 10 * 60_000)));
    return { accepted, ids, watched, samples: await sampler.done() };
  } finally {
    await sampler.stop();
  }
}

/** Per-essay timings of one side, joined with what the database recorded. */
async function summarize(db: Client, tenantId: string, otherTenantId: string | null, run: Run): Promise<SideSummary> {
  // Times in epoch milliseconds from the database clock (same machine as the client's).
  const rows = (
    await db.query(
      `WITH calls AS (
         SELECT tenant_id, essay_id, min(extract(epoch FROM created_at) * 1000 - latency_ms) AS call_ms
           FROM llm_calls WHERE tenant_id IN ($1, $3) AND essay_id IS NOT NULL GROUP BY tenant_id, essay_id),
       mine AS (
         SELECT e.id, e.status, e.cache_status,
                extract(epoch FROM e.created_at) * 1000 AS queued_ms,
                extract(epoch FROM e.graded_at) * 1000 AS graded_ms, c.call_ms
           FROM essays e LEFT JOIN calls c ON c.tenant_id = e.tenant_id AND c.essay_id = e.id
          WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[])),
       other AS MATERIALIZED (
         SELECT extract(epoch FROM e.graded_at) * 1000 AS graded_ms, c.call_ms
           FROM essays e LEFT JOIN calls c ON c.tenant_id = e.tenant_id AND c.essay_id = e.id
          WHERE e.tenant_id = $3)
       SELECT m.id, m.status, m.cache_status, m.queued_ms::float8 AS queued_ms, m.graded_ms::float8 AS graded_ms, m.call_ms::float8 AS call_ms,
              (SELECT count(*) FROM other o WHERE o.call_ms > m.queued_ms AND o.call_ms < m.call_ms)::int AS other_started,
              (SELECT count(*) FROM other o WHERE o.graded_ms > m.queued_ms AND o.graded_ms <= m.graded_ms)::int AS other_graded,
              (SELECT count(*) FROM mine s WHERE s.id <> m.id AND s.call_ms < m.call_ms)::int AS siblings_started
         FROM mine m`,
      [tenantId, run.ids, otherTenantId ?? NO_TENANT],
    )
  ).rows as Array<Record<string, any>>;
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  // A's claims counted from the last sample before B's 202.
  const before = [...run.samples].reverse().find((x) => x.at <= run.accepted) ?? run.samples[0];
  const perEssay: EssayTiming[] = run.watched.map((w, index) => {
    const r = byId.get(w.id)!;
    const claimedIn = run.samples.find((x) => x.claimed.has(w.id));
    if (!claimedIn) throw new Error(`no sample shows essay ${w.id} claimed`);
    return {
      index,
      id: w.id,
      status: w.status,
      timeToGradeMs: w.done - run.accepted,
      streamGradingMs: w.grading === null ? null : w.grading - run.accepted,
      claimWaitMs: Math.max(0, Math.round(claimedIn.at - run.accepted)),
      otherClaimedAhead: Math.max(0, claimedIn.otherClaimed - before.otherClaimed),
      serverTimeToGradeMs: Math.round(r.graded_ms - r.queued_ms),
      queuedToCallMs: r.call_ms === null ? null : Math.round(r.call_ms - r.queued_ms),
      otherStartedAhead: r.other_started,
      otherGradedMeanwhile: r.other_graded,
      siblingsStartedAhead: r.siblings_started,
      cacheStatus: r.cache_status,
    };
  });
  const ttg = sortNum(perEssay.map((e) => e.timeToGradeMs));
  const server = sortNum(perEssay.map((e) => e.serverTimeToGradeMs));
  const wait = sortNum(perEssay.map((e) => e.claimWaitMs));
  const claimedAhead = sortNum(perEssay.map((e) => e.otherClaimedAhead));
  const ahead = sortNum(perEssay.map((e) => e.otherStartedAhead));
  const meanwhile = sortNum(perEssay.map((e) => e.otherGradedMeanwhile));
  return {
    essays: perEssay.length,
    graded: perEssay.filter((e) => e.status === 'graded' || e.status === 'needs_review').length,
    failed: perEssay.filter((e) => e.status === 'failed').length,
    cacheHits: perEssay.filter((e) => e.cacheStatus === 'hit').length,
    p50Ms: pct(ttg, 0.5),
    p95Ms: pct(ttg, 0.95),
    maxMs: ttg[ttg.length - 1],
    minMs: ttg[0],
    claimWaitP50Ms: pct(wait, 0.5),
    claimWaitMaxMs: wait[wait.length - 1],
    serverP50Ms: pct(server, 0.5),
    serverP95Ms: pct(server, 0.95),
    otherClaimedAheadP50: pct(claimedAhead, 0.5),
    otherClaimedAheadMax: claimedAhead[claimedAhead.length - 1],
    otherStartedAheadP50: pct(ahead, 0.5),
    otherStartedAheadMax: ahead[ahead.length - 1],
    samples: run.samples.length,
    otherGradedMeanwhileP50: pct(meanwhile, 0.5),
    otherGradedMeanwhileMax: meanwhile[meanwhile.length - 1],
    perEssay,
  };
}

export async function runFairness(): Promise<FairnessResult> {
  const latencyMs = Number(process.env.BENCH_FAIRNESS_LATENCY_MS ?? 500);
  const concurrency = Number(process.env.BENCH_FAIRNESS_CONCURRENCY ?? 32);
  const floodEssays = Number(process.env.BENCH_FAIRNESS_A_ESSAYS ?? 5000);
  const bAfter = Number(process.env.BENCH_FAIRNESS_B_AFTER ?? 2000);
  const bEssays = 20;
  const poolSize = 20;
  const pollMs = 100;
  const models = 'dashscope:qwen-flash';
  const started = new Date();
  ensureBuilt();
  const dbName = 'inkstone_bench_fairness';
  const databaseUrl = await freshDatabase(dbName);
  const fake = await startFake(latencyMs);
  const service = await startService({
    ...fakeProviderEnv(fake.url),
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: String(poolSize),
    WORKER_CONCURRENCY: String(concurrency),
    WORKER_POLL_MS: String(pollMs),
    LLM_STANDARD_MODELS: models,
    // The product's default limits (src/config/app-config.ts), not the harness's raised ones.
    LIMIT_REQUESTS_PER_SECOND_PER_KEY: '20',
    LIMIT_REQUEST_BURST_PER_KEY: '40',
    LIMIT_REQUESTS_PER_SECOND_PER_TENANT: '200',
    LIMIT_REQUEST_BURST_PER_TENANT: '400',
    LIMIT_ESSAYS_QUEUED: '20000',
    LIMIT_ESSAYS_GRADING: '64',
    LIMIT_CHAT_IN_FLIGHT: '16',
    LIMIT_PROVIDER_CALLS: '64',
  });
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  const t0 = Date.now();
  try {
    // B's class set: the same 20 texts on both sides (different tenants, so no cache hits).
    const bSet = Array.from({ length: bEssays }, (_, i) => ({ text: generateEssay(900_000 + i, i % 3 ? 'zh' : 'en').text, studentRef: `b${i}` }));

    // Warm-up: a few gradings so the baseline does not pay for cold pools and JIT.
    const warm = await newTenant(service.url);
    await json(`${service.url}/v1/essays/batch`, {
      key: warm.teacherKey,
      body: { essays: Array.from({ length: 10 }, (_, i) => ({ text: generateEssay(800_000 + i, i % 2 ? 'zh' : 'en').text, studentRef: `w${i}` })) },
    });
    await waitEssaysDone(db, warm.tenantId, 10, 60_000);

    // 1. B alone: the class set on an idle service.
    const alone = await newTenant(service.url);
    process.stdout.write('fairness: B alone…\n');
    const aloneRun = await submitAndWatch(service.url, databaseUrl, alone.tenantId, null, alone.teacherKey, bSet);
    const bAlone = await summarize(db, alone.tenantId, null, aloneRun);

    // 2. A's flood, with B's class set submitted once A has `bAfter` essays accepted.
    const a = await newTenant(service.url);
    const b = await newTenant(service.url);
    const limits = (await json<{ limits: Record<string, number> }>(`${service.url}/v1/limits`, { key: a.teacherKey })).limits;
    process.stdout.write(`fairness: A floods ${floodEssays} essays…\n`);
    let requests = 0;
    let rateLimited = 0;
    let accepted = 0;
    let firstAccepted = 0;
    let bTask: Promise<Run> | null = null;
    const floodStart = Date.now();
    for (let i = 0; i < floodEssays; i += CLASS_SET) {
      const essays = Array.from({ length: Math.min(CLASS_SET, floodEssays - i) }, (_, j) => ({
        text: generateEssay(10_000 + i + j, (i + j) % 3 ? 'zh' : 'en').text,
        studentRef: `a${i + j}`,
      }));
      requests++;
      await post(`${service.url}/v1/essays/batch`, a.teacherKey, { essays }, () => rateLimited++);
      if (!firstAccepted) firstAccepted = Date.now();
      accepted += essays.length;
      if (!bTask && accepted >= bAfter) {
        process.stdout.write(`fairness: B submits its class set (A has ${accepted} accepted)…\n`);
        bTask = submitAndWatch(service.url, databaseUrl, b.tenantId, a.tenantId, b.teacherKey, bSet);
        bTask.catch(() => undefined); // awaited below; this only keeps an early failure from counting as unhandled
      }
    }
    const submitSeconds = (Date.now() - floodStart) / 1000;
    if (!bTask) bTask = submitAndWatch(service.url, databaseUrl, b.tenantId, a.tenantId, b.teacherKey, bSet);
    const floodRun = await bTask;
    process.stdout.write('fairness: B done; waiting for A to drain…\n');
    await waitEssaysDone(db, a.tenantId, floodEssays, 10 * 60_000);
    const bDuringFlood = await summarize(db, b.tenantId, a.tenantId, floodRun);

    // A's throughput and what B's essays would have waited behind under FIFO.
    const gradedTimes = (
      await db.query(`SELECT (extract(epoch FROM graded_at) * 1000)::float8 AS t FROM essays WHERE tenant_id = $1 AND graded_at IS NOT NULL ORDER BY graded_at`, [a.tenantId])
    ).rows.map((r) => Number(r.t));
    const [as] = (
      await db.query(
        `SELECT count(*) FILTER (WHERE status IN ('graded', 'needs_review'))::int AS graded, count(*) FILTER (WHERE status = 'failed')::int AS failed,
                count(*) FILTER (WHERE cache_status = 'hit')::int AS hits FROM essays WHERE tenant_id = $1`,
        [a.tenantId],
      )
    ).rows;
    const [{ b_queued_ms: bQueuedMs }] = (
      await db.query(`SELECT (min(extract(epoch FROM created_at)) * 1000)::float8 AS b_queued_ms FROM essays WHERE tenant_id = $1`, [b.tenantId])
    ).rows;
    const [{ n: aheadAtSubmit }] = (
      await db.query(
        `SELECT count(*)::int AS n FROM essays e
           LEFT JOIN (SELECT essay_id, min(extract(epoch FROM created_at) * 1000 - latency_ms) AS call_ms FROM llm_calls
                       WHERE tenant_id = $1 AND essay_id IS NOT NULL GROUP BY essay_id) c ON c.essay_id = e.id
          WHERE e.tenant_id = $1 AND extract(epoch FROM e.created_at) * 1000 < $2::float8 AND (c.call_ms IS NULL OR c.call_ms > $2::float8)`,
        [a.tenantId, bQueuedMs],
      )
    ).rows;
    const at = (share: number) => gradedTimes[Math.min(gradedTimes.length - 1, Math.floor(share * gradedTimes.length))];
    const rate1090 = (0.8 * gradedTimes.length) / ((at(0.9) - at(0.1)) / 1000);
    const drainSeconds = (gradedTimes[gradedTimes.length - 1] - firstAccepted) / 1000;

    const result: FairnessResult = {
      command: 'npm run bench:fairness',
      date: started.toISOString().slice(0, 10),
      commit: commit(),
      machine: machine(),
      settings: {
        providerLatencyMs: latencyMs,
        workerConcurrency: concurrency,
        workerPollMs: pollMs,
        databasePoolSize: poolSize,
        models,
        limits,
        floodEssays,
        floodClassSetSize: CLASS_SET,
        floodPacing:
          `${Math.ceil(floodEssays / CLASS_SET)} class sets of ${CLASS_SET} (POST /v1/essays/batch), one after another as fast as the service answers, ` +
          `with A's default per-key limits: the requests fit in the burst, so the operator raises nothing (a 429 would be waited out per Retry-After and counted)`,
        bEssays,
        bSubmission: `one class set of ${bEssays} (POST /v1/essays/batch), each essay followed on GET /v1/essays/:id/events`,
        bSubmittedAfterAEssaysAccepted: bAfter,
        percentiles: 'nearest rank over the 20 essays (p95 is the 19th of 20)',
      },
      flood: {
        requests,
        rateLimited429: rateLimited,
        submitSeconds: round1(submitSeconds),
        drainSeconds: round1(drainSeconds),
        graded: as.graded,
        failed: as.failed,
        cacheHits: as.hits,
        essaysPerSecondOverall: round1(gradedTimes.length / drainSeconds),
        essaysPerSecond10to90: round1(rate1090),
        aQueuedAheadAtBSubmit: aheadAtSubmit,
        fifoWaitEstimateSeconds: round1(aheadAtSubmit / rate1090),
        bSubmittedAtSeconds: round1((floodRun.accepted - firstAccepted) / 1000),
      },
      bAlone,
      bDuringFlood,
      ratio: {
        p50: Math.round((bDuringFlood.p50Ms / bAlone.p50Ms) * 100) / 100,
        p95: Math.round((bDuringFlood.p95Ms / bAlone.p95Ms) * 100) / 100,
        max: Math.round((bDuringFlood.maxMs / bAlone.maxMs) * 100) / 100,
      },
      seconds: Math.round((Date.now() - t0) / 1000),
      passed: false,
    };
    result.passed =
      bAlone.graded === bEssays && bDuringFlood.graded === bEssays && as.graded === floodEssays && bAlone.cacheHits === 0 && bDuringFlood.cacheHits === 0;
    return result;
  } finally {
    await db.end();
    await service.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) {
  runMain('fairness.json', runFairness, (r) => r.passed);
}
