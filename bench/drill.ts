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
 * Paid deep reviews wait in provider batches across the kill: a second school (its own cap, which
 * does not bind) orders DRILL_DEEP_REVIEWS of them (default 40) from the first process alone, and
 * their batches are still running when it is killed. The jobs' retries take the calls over and wait
 * for the same batches: each review must be delivered, its batch line billed once by the provider
 * (a line paid again in real time, or in another batch, is a grading paid twice), and each school's
 * books checked on their own.
 *
 *   npm run bench:drill
 */
import { Client } from 'pg';
import { formatCny } from '../src/common/money';
import { generateEssay } from '../test/support/essays';
import { dropDatabase, ensureBuilt, fakeProviderEnv, freshDatabase, json, newTenant, sleep, startFake, startService, runMain, waitEssaysDone } from './lib/harness';

export interface DrillResult {
  essays: number;
  /** paid deep reviews ordered by the second school, all sent in provider batches by the process then killed */
  deepReviews: number;
  /** of those: delivered; their jobs retried after the kill (the batch taken over); batch lines the provider billed */
  deepReviewsDelivered: number;
  deepReviewsRetriedAfterKill: number;
  deepReviewLinesBilled: number;
  killedAfterSeconds: number;
  restarted: boolean;
  graded: number;
  notGraded: number;
  jobsDone: number;
  jobsRetriedAfterKill: number;
  doublePaidGradings: number;
  /** the fake provider's side: requests received, answers sent whole (billed), prompts answered twice */
  provider: { requests: number; answered: number; answeredInBatches: number; answeredAgain: number };
  /** ledger rows: calls a provider answered (ok or invalid output), calls lost in flight (recorded by the sweeper), every provider call */
  ledgerAnswered: number;
  ledgerLostInFlight: number;
  ledgerProviderCalls: number;
  /** answers the provider sent that the ledger has no row for, answered or lost (must be 0) */
  unrecordedAnswers: number;
  /** requests the provider received that have no ledger row (must be 0) */
  requestsWithoutLedgerRow: number;
  /** the other way: answers the ledger records (ok or invalid output) beyond those the provider sent (must be 0) */
  answersRecordedNotGiven: number;
  /**
   * provider-call rows beyond the requests the provider received: only calls booked lost in flight
   * may be, each one whose process was killed after it reserved the call and before it sent it
   * (the sweeper cannot tell; the platform absorbs it). Must not exceed ledgerLostInFlight.
   */
  ledgerRowsWithoutRequest: number;
  /**
   * what the batches left at the provider once every deep review was delivered: its files not
   * deleted (uploads with students' essays, results) and the uploads still written down in
   * provider_uploads (both must be 0: the killed process's batches are cleaned up by their readers)
   */
  filesLeftAtProvider: number;
  uploadsNotStruckOff: number;
  /** the first school's (its cap binds) */
  capCny: string;
  spentCny: string;
  /** every school's books: spent within its cap, nothing left reserved, the ledger equal to the spend */
  withinCap: boolean;
  reservedAfter: string;
  ledgerEqualsSpend: boolean;
  seconds: number;
  passed: boolean;
}

export async function runDrill(): Promise<DrillResult> {
  const essays = Number(process.env.DRILL_ESSAYS ?? 2000);
  const deepReviews = Number(process.env.DRILL_DEEP_REVIEWS ?? 40);
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
    LLM_BATCH_WINDOW_MS: '500',
    LLM_BATCH_POLL_MS: '500',
  };
  let a = await startService(env);
  let b: Awaited<ReturnType<typeof startService>> | null = null;
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  const t0 = Date.now();
  let killedAt = 0;
  try {
    // The second school's deep reviews, ordered while A is the only process: every batch is A's.
    const reviews = await newTenant(a.url, '1000.00');
    await json(`${a.url}/v1/billing/settings`, { method: 'PUT', key: reviews.adminKey, body: { deepReviewPrice: '9.90', paymentMode: 'invoice' } });
    const reviewed = await json<{ ids: string[] }>(`${a.url}/v1/essays/batch`, {
      key: reviews.teacherKey,
      body: { essays: Array.from({ length: deepReviews }, (_, i) => ({ text: generateEssay(90_000 + i, i % 2 ? 'zh' : 'en').text })) },
    });
    await waitEssaysDone(db, reviews.tenantId, deepReviews, 120_000);
    await json(`${fake.url}/_fake/batch-latency`, { body: { ms: 20_000 } }); // still running when A is killed
    for (const id of reviewed.ids) await json(`${a.url}/v1/essays/${id}/deep-review`, { method: 'POST', key: reviews.teacherKey, body: {} });
    for (;;) {
      const [{ n }] = (await db.query(`SELECT count(*)::int AS n FROM call_guards WHERE tenant_id = $1 AND batch_id IS NOT NULL`, [reviews.tenantId])).rows;
      if (n === deepReviews) break;
      if (Date.now() - t0 > 120_000) throw new Error(`only ${n} of ${deepReviews} deep reviews sent in provider batches`);
      await sleep(250);
    }
    b = await startService(env);

    const capCny = '0.60'; // binds: the run costs more, so the invariant is tested at the cap
    const tenant = await newTenant(a.url, capCny);
    // Load on both processes: batches of 50 alternate between them; A is killed a third of the way.
    let restarted = false;
    for (let i = 0, n = 0; i < essays; i += 50, n++) {
      const target = n % 2 ? b! : a;
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
      await db.query(
        `SELECT count(*) FILTER (WHERE status IN ('graded', 'needs_review') AND graded_at IS NOT NULL)::int AS graded,
                count(*) FILTER (WHERE status NOT IN ('graded', 'needs_review'))::int AS not_graded FROM essays WHERE tenant_id = $1`,
        [tenant.tenantId],
      )
    ).rows;
    const [j] = (
      await db.query(`SELECT count(*) FILTER (WHERE status = 'done')::int AS done, count(*) FILTER (WHERE attempts > 1)::int AS retried FROM jobs WHERE tenant_id = $1 AND kind = 'grade'`, [
        tenant.tenantId,
      ])
    ).rows;
    const [deep] = (
      await db.query(
        `SELECT (SELECT count(*)::int FROM orders WHERE tenant_id = $1 AND status = 'delivered') AS delivered,
                (SELECT count(*)::int FROM jobs WHERE tenant_id = $1 AND kind = 'deep_review' AND attempts > 1) AS retried,
                (SELECT count(*)::int FROM llm_calls WHERE tenant_id = $1 AND purpose = 'deep_review' AND batch AND outcome = 'ok') AS batched_ok`,
        [reviews.tenantId],
      )
    ).rows;
    const [dbl] = (
      await db.query(`SELECT count(*)::int AS n FROM (SELECT essay_id FROM llm_calls WHERE outcome = 'ok' AND cache_status = 'miss' GROUP BY essay_id, purpose HAVING count(*) > 1) x`)
    ).rows;
    // The readers delete a batch's files after they have answered its calls: a few seconds at most.
    const leftOver = async () => ({
      files: (await json<{ filesStored: number }>(`${fake.url}/_fake/requests`)).filesStored,
      uploads: ((await db.query(`SELECT count(*)::int AS n FROM provider_uploads`)).rows[0] as { n: number }).n,
    });
    let left = await leftOver();
    for (const until = Date.now() + 15_000; (left.files > 0 || left.uploads > 0) && Date.now() < until; left = await leftOver()) await new Promise((r) => setTimeout(r, 250));
    const fakeSide = await json<{ count: number; answered: number; answeredInBatches: number; answeredAgain: number }>(`${fake.url}/_fake/requests`);
    const [calls] = (
      await db.query(`SELECT count(*) FILTER (WHERE outcome IN ('ok', 'invalid_output'))::int AS answered, count(*) FILTER (WHERE outcome = 'lost_in_flight')::int AS lost,
                             count(*)::int AS provider_calls
                        FROM llm_calls WHERE provider IS NOT NULL AND cache_status = 'miss' AND outcome <> 'budget_exhausted'`)
    ).rows;
    // Each school's books on their own: a spend that moved from one school to the other must not balance out.
    const schools: Array<{ tenant_id: string; spent: string; reserved: string; cap: string; ledger: string }> = (
      await db.query(`SELECT p.tenant_id, p.spent_nanos::text AS spent, p.reserved_nanos::text AS reserved, p.cap_nanos::text AS cap,
                             (SELECT coalesce(sum(c.cost_nanos), 0) FROM llm_calls c WHERE c.tenant_id = p.tenant_id)::text AS ledger
                        FROM budget_periods p`)
    ).rows;
    const books = schools.find((r) => r.tenant_id === tenant.tenantId)!;
    const withinCap = schools.length === 2 && schools.every((r) => BigInt(r.spent) <= BigInt(r.cap));
    const result: DrillResult = {
      essays,
      deepReviews,
      deepReviewsDelivered: deep.delivered,
      deepReviewsRetriedAfterKill: deep.retried,
      deepReviewLinesBilled: fakeSide.answeredInBatches,
      killedAfterSeconds: Math.round((killedAt - t0) / 100) / 10,
      restarted,
      graded: s.graded,
      notGraded: s.not_graded,
      jobsDone: j.done,
      jobsRetriedAfterKill: j.retried,
      doublePaidGradings: dbl.n + fakeSide.answeredAgain,
      provider: { requests: fakeSide.count, answered: fakeSide.answered, answeredInBatches: fakeSide.answeredInBatches, answeredAgain: fakeSide.answeredAgain },
      ledgerAnswered: calls.answered,
      ledgerLostInFlight: calls.lost,
      ledgerProviderCalls: calls.provider_calls,
      unrecordedAnswers: Math.max(0, fakeSide.answered - calls.answered - calls.lost),
      requestsWithoutLedgerRow: Math.max(0, fakeSide.count - calls.provider_calls),
      answersRecordedNotGiven: Math.max(0, calls.answered - fakeSide.answered),
      ledgerRowsWithoutRequest: Math.max(0, calls.provider_calls - fakeSide.count),
      filesLeftAtProvider: left.files,
      uploadsNotStruckOff: left.uploads,
      capCny,
      spentCny: formatCny(BigInt(books.spent)),
      withinCap,
      reservedAfter: schools.reduce((sum, r) => sum + BigInt(r.reserved), 0n).toString(),
      ledgerEqualsSpend: schools.every((r) => r.ledger === r.spent),
      seconds: Math.round((Date.now() - t0) / 1000),
      passed: false,
    };
    // A grading paid for twice fails the drill, like a lost essay or an overspend.
    result.passed =
      result.graded === essays &&
      result.notGraded === 0 &&
      result.jobsDone === essays &&
      result.deepReviewsDelivered === deepReviews &&
      result.deepReviewLinesBilled === deepReviews &&
      deep.batched_ok === deepReviews &&
      result.doublePaidGradings === 0 &&
      result.unrecordedAnswers === 0 &&
      result.requestsWithoutLedgerRow === 0 &&
      result.answersRecordedNotGiven === 0 &&
      result.ledgerRowsWithoutRequest <= result.ledgerLostInFlight &&
      result.filesLeftAtProvider === 0 &&
      result.uploadsNotStruckOff === 0 &&
      withinCap &&
      result.reservedAfter === '0' &&
      result.ledgerEqualsSpend;
    return result;
  } finally {
    await db.end();
    await a.stop();
    await b?.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('drill.json', runDrill, (r) => r.passed);
