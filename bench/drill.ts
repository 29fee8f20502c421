/**
 * The two-process drill: two service processes on one PostgreSQL, essays submitted to both, one
 * killed with SIGKILL in the middle of the run and started again. Afterwards every essay must be
 * graded exactly once, settled spend must be within the cap with nothing left reserved, and the
 * ledger must sum to the spend. The provider's side is reconciled too: every answer the fake
 * provider sent whole (what a provider bills) must be in the ledger, and no prompt may have been
 * answered twice (a grading paid twice), and every request the provider received must have its
 * ledger row: a call the killed process had in flight is recorded by the sweeper (outcome
 * lost_in_flight, an incident the platform absorbs; the tenant is not charged for it).
 *
 *   npm run bench:drill
 */
import { Client } from 'pg';
import { generateEssay } from '../test/support/essays';
import { dropDatabase, ensureBuilt, fakeProviderEnv, freshDatabase, json, newTenant, sleep, startFake, startService, runMain } from './lib/harness';

export interface DrillResult {
  essays: number;
  killedAfterSeconds: number;
  restarted: boolean;
  graded: number;
  notGraded: number;
  jobsDone: number;
  jobsRetriedAfterKill: number;
  doublePaidGradings: number;
  /** the fake provider's side: requests received, answers sent whole (billed), prompts answered twice */
  provider: { requests: number; answered: number; answeredAgain: number };
  /** ledger rows: calls a provider answered (ok or invalid output), calls lost in flight (recorded by the sweeper), every provider call */
  ledgerAnswered: number;
  ledgerLostInFlight: number;
  ledgerProviderCalls: number;
  /** answers the provider sent that the ledger has no row for, answered or lost (must be 0) */
  unrecordedAnswers: number;
  /** requests the provider received that have no ledger row (must be 0) */
  requestsWithoutLedgerRow: number;
  capCny: string;
  spentCny: string;
  withinCap: boolean;
  reservedAfter: string;
  ledgerEqualsSpend: boolean;
  seconds: number;
  passed: boolean;
}

export async function runDrill(): Promise<DrillResult> {
  const essays = Number(process.env.DRILL_ESSAYS ?? 2000);
  ensureBuilt();
  const dbName = 'inkstone_bench_drill';
  const databaseUrl = await freshDatabase(dbName);
  const fake = await startFake(300);
  const env = {
    ...fakeProviderEnv(fake.url),
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: '20',
    WORKER_CONCURRENCY: '40',
    WORKER_POLL_MS: '100',
    JOB_LEASE_MS: '5000',
    BUDGET_RESERVATION_TTL_MS: '5000',
    BUDGET_SWEEP_INTERVAL_MS: '1000',
    LLM_STANDARD_MODELS: 'dashscope:qwen-flash',
  };
  let a = await startService(env);
  const b = await startService(env);
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  const t0 = Date.now();
  let killedAt = 0;
  try {
    const capCny = '0.60'; // binds: the run costs more, so the invariant is tested at the cap
    const tenant = await newTenant(a.url, capCny);
    // Load on both processes: batches of 50 alternate between them; A is killed a third of the way.
    let restarted = false;
    for (let i = 0, n = 0; i < essays; i += 50, n++) {
      const target = n % 2 ? b : a;
      const batch = Array.from({ length: Math.min(50, essays - i) }, (_, j) => ({ text: generateEssay(50_000 + i + j, (i + j) % 3 ? 'zh' : 'en').text }));
      await json(`${target.url}/v1/essays/batch`, { key: tenant.teacherKey, body: { essays: batch } });
      if (!killedAt && i >= essays / 3) {
        await a.stop('SIGKILL');
        killedAt = Date.now();
        // Restarted at once: its jobs come back when their leases run out.
        a = await startService(env);
        restarted = true;
      }
      await sleep(100);
    }
    for (;;) {
      const [{ n }] = (await db.query(`SELECT count(*)::int AS n FROM jobs WHERE status IN ('queued', 'running')`)).rows;
      if (n === 0) break;
      if (Date.now() - t0 > 10 * 60_000) throw new Error('the drill did not finish in 10 minutes');
      await sleep(250);
    }
    await sleep(6_000); // reservations of the killed process expire and are swept
    const [s] = (
      await db.query(`SELECT count(*) FILTER (WHERE status IN ('graded', 'needs_review') AND graded_at IS NOT NULL)::int AS graded,
                             count(*) FILTER (WHERE status NOT IN ('graded', 'needs_review'))::int AS not_graded FROM essays`)
    ).rows;
    const [j] = (await db.query(`SELECT count(*) FILTER (WHERE status = 'done')::int AS done, count(*) FILTER (WHERE attempts > 1)::int AS retried FROM jobs`)).rows;
    const [dbl] = (
      await db.query(`SELECT count(*)::int AS n FROM (SELECT essay_id FROM llm_calls WHERE outcome = 'ok' AND cache_status = 'miss' GROUP BY essay_id, purpose HAVING count(*) > 1) x`)
    ).rows;
    const fakeSide = await json<{ count: number; answered: number; answeredAgain: number }>(`${fake.url}/_fake/requests`);
    const [calls] = (
      await db.query(`SELECT count(*) FILTER (WHERE outcome IN ('ok', 'invalid_output'))::int AS answered, count(*) FILTER (WHERE outcome = 'lost_in_flight')::int AS lost,
                             count(*)::int AS provider_calls
                        FROM llm_calls WHERE provider IS NOT NULL AND cache_status = 'miss' AND outcome <> 'budget_exhausted'`)
    ).rows;
    const [books] = (
      await db.query(`SELECT spent_nanos::text AS spent, reserved_nanos::text AS reserved, cap_nanos::text AS cap,
                             (SELECT coalesce(sum(cost_nanos), 0) FROM llm_calls)::text AS ledger FROM budget_periods`)
    ).rows;
    const withinCap = BigInt(books.spent) <= BigInt(books.cap);
    const result: DrillResult = {
      essays,
      killedAfterSeconds: Math.round((killedAt - t0) / 100) / 10,
      restarted,
      graded: s.graded,
      notGraded: s.not_graded,
      jobsDone: j.done,
      jobsRetriedAfterKill: j.retried,
      doublePaidGradings: dbl.n + fakeSide.answeredAgain,
      provider: { requests: fakeSide.count, answered: fakeSide.answered, answeredAgain: fakeSide.answeredAgain },
      ledgerAnswered: calls.answered,
      ledgerLostInFlight: calls.lost,
      ledgerProviderCalls: calls.provider_calls,
      unrecordedAnswers: Math.max(0, fakeSide.answered - calls.answered - calls.lost),
      requestsWithoutLedgerRow: Math.max(0, fakeSide.count - calls.provider_calls),
      capCny,
      spentCny: (Number(books.spent) / 1e9).toFixed(6),
      withinCap,
      reservedAfter: books.reserved,
      ledgerEqualsSpend: books.ledger === books.spent,
      seconds: Math.round((Date.now() - t0) / 1000),
      passed: false,
    };
    // A grading paid for twice fails the drill, like a lost essay or an overspend.
    result.passed =
      result.graded === essays &&
      result.notGraded === 0 &&
      result.jobsDone === essays &&
      result.doublePaidGradings === 0 &&
      result.unrecordedAnswers === 0 &&
      result.requestsWithoutLedgerRow === 0 &&
      withinCap &&
      books.reserved === '0' &&
      result.ledgerEqualsSpend;
    return result;
  } finally {
    await db.end();
    await a.stop();
    await b.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('drill.json', runDrill, (r) => r.passed);
