import { renderFairness } from './report-fairness';
import { renderHostile } from './report-hostile';
import { renderInjection } from './report-injection';
import { renderQuality } from './report-quality';
import { renderReadFlood } from './report-read-flood';
import { caseHeadline, renderCaseStudy } from './report-case-study';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderLedger, renderPeers } from './report-growth';
import { renderStartMemory } from './report-start-memory';

/** The results of the benchmarks run on their own (bench:ledger, bench:peers, bench:read-flood, bench:start-memory, and the latest bench:case-study and bench:drill), laid over `results`. */
export function withSeparateRuns(results: any, root: string): any {
  const separate: Array<[string, string]> = [['ledger', 'ledger'], ['peers', 'peers'], ['case-study', 'caseStudy'], ['drill', 'drill'], ['read-flood', 'readFlood'], ['start-memory', 'startMemory']];
  for (const [file, key] of separate) {
    const at = path.join(root, `bench/results/${file}.json`);
    if (fs.existsSync(at)) results[key] = JSON.parse(fs.readFileSync(at, 'utf8'));
  }
  return results;
}
/**
 * BENCHMARKS.md, written from the results of `npm run bench` (bench/results/latest.json).
 */
export function renderBenchmarks(r: any): string {
  const cs = r.caseStudy;
  return `# Benchmarks

Written by \`npm run bench\` (\`bench/run-all.ts\`) from its results in \`bench/results/latest.json\`;
every figure below can be reproduced with the command given for it. Speed is measured here, never by
timed assertions in tests.

| | |
|---|---|
| command | \`${r.command}\` |
| date | ${r.date} |
| commit | \`${r.commit}\`${r.commitNote ? ` (${r.commitNote})` : ''} |
| machine | ${r.machine.cpus} vCPU (${r.machine.cpuModel}), ${r.machine.memoryGiB} GiB, ${r.machine.platform}, Node.js ${r.machine.node} |
| database | PostgreSQL on the same machine (${r.database}) |

The service (the build, as \`npm start\` runs it), PostgreSQL, the fake provider and the load
generator share the two cores, so these are floors, not ceilings.

${renderCaseStudy(cs)}${cs.escalation ? renderEscalation(cs.escalation) : ''}${movedSincePrevious(r)}
## Submissions accepted per second (\`npm run bench:submissions\`)

API-only service (\`WORKERS_ENABLED=false\`), autocannon, ${r.submissions.single.durationS} s per case; every accepted essay is
stored with its job before the 202; essays of ~900 Chinese characters.

| case | connections | accepted / s | p50 | p99 | errors |
|---|---|---|---|---|---|
| \`POST /v1/essays\` | ${r.submissions.single.connections} | **${r.submissions.single.perSecond}** | ${r.submissions.single.p50Ms} ms | ${r.submissions.single.p99Ms} ms | ${r.submissions.single.errors + r.submissions.single.non2xx} |
| \`POST /v1/essays/batch\` (${r.submissions.batch.essaysPerRequest} a request) | ${r.submissions.batch.connections} | **${r.submissions.batch.essaysPerSecond}** essays | ${r.submissions.batch.p50Ms} ms | ${r.submissions.batch.p99Ms} ms | ${r.submissions.batch.non2xx} |

Target ≥ 1,500 / s.

## Grading throughput (\`npm run bench:grading\`)

${r.grading.essays} distinct essays; every model call answered after ${r.grading.providerLatencyMs / 1000} s; \`WORKER_CONCURRENCY=${r.grading.workerConcurrency}\`;
rate between 10% and 90% done.

| graded / s | total | failed | offline | cache hits |
|---|---|---|---|---|
| **${r.grading.essaysPerSecond}** | ${r.grading.totalSeconds} s | ${r.grading.failed} | ${r.grading.offline} | ${r.grading.cacheHits} |

Target ≥ 100 / s at that latency (the ceiling at this concurrency is ${Math.round(r.grading.workerConcurrency / (r.grading.providerLatencyMs / 1000))} / s).

## Gateway overhead and the cache-hit path (\`npm run bench:gateway\`)

A short chat completion, ${r.gateway.connections} connections, ${r.gateway.durationS} s each.

| path | req / s | p50 | p99 |
|---|---|---|---|
| straight to the fake provider | ${r.gateway.direct.perSecond} | ${r.gateway.direct.p50Ms} ms | ${r.gateway.direct.p99Ms} ms |
| through Inkstone, \`Cache-Control: no-cache\` (auth, reservation, settlement + ledger row, cache write) | ${r.gateway.throughInkstone.perSecond} | ${r.gateway.throughInkstone.p50Ms} ms | ${r.gateway.throughInkstone.p99Ms} ms |
| through Inkstone, exact repeat (cache hit: lookup + ledger row) | ${r.gateway.cacheHit.perSecond} | ${r.gateway.cacheHit.p50Ms} ms | ${r.gateway.cacheHit.p99Ms} ms |

Overhead of the gateway: ${r.gateway.overheadP50Ms} ms at p50, ${r.gateway.overheadP99Ms} ms at p99.

## The two-process drill (\`npm run bench:drill\`)

Two service processes on one PostgreSQL, ${r.drill.essays} essays submitted to both; one killed with SIGKILL
after ${r.drill.killedAfterSeconds} s and started again; the cap (${r.drill.capCny} CNY) binds.${r.drill.commit ? ` Run ${r.drill.at}, commit \`${r.drill.commit}\`.` : ''}
${r.drill.deepReviews ? `
A second school (its own cap, which does not bind) ordered ${r.drill.deepReviews} paid deep reviews from the first process alone before the
essays above; all were sent in provider batches that were still running when that process was killed. Delivered: ${r.drill.deepReviewsDelivered};
their jobs retried after the kill (each call taken over with its reservation, waiting for the same batch): ${r.drill.deepReviewsRetriedAfterKill};
batch lines the provider billed: ${r.drill.deepReviewLinesBilled} (a line paid again, in real time or in another batch, counts in "paid twice").
Each school's books are checked on their own (spent within its cap, nothing reserved, the ledger equal to the spend).
` : ''}
| graded | not graded | jobs done | retried after the kill | paid twice | spent ≤ cap | reserved after | ledger = spend | passed |
|---|---|---|---|---|---|---|---|---|
| ${r.drill.graded} | ${r.drill.notGraded} | ${r.drill.jobsDone} | ${r.drill.jobsRetriedAfterKill} | ${r.drill.doublePaidGradings} | ${r.drill.withinCap} (${r.drill.spentCny}) | ${r.drill.reservedAfter} | ${r.drill.ledgerEqualsSpend} | **${r.drill.passed}** |
${r.drill.provider ? `
The provider's side, reconciled with the ledger: the fake provider received ${r.drill.provider.requests} requests and sent
${r.drill.provider.answered} answers whole (what a provider bills${r.drill.provider.answeredInBatches === undefined ? '' : `; ${r.drill.provider.answeredInBatches} of them batch lines`}). The ledger holds ${r.drill.ledgerProviderCalls} provider calls: ${r.drill.ledgerAnswered} answered,
${r.drill.ledgerLostInFlight} lost in flight with the killed process (recorded by the sweeper, with incidents whose worst case the
platform absorbs: the provider may have billed them; the tenant is not charged for them), the rest failed; requests without a ledger row: ${r.drill.requestsWithoutLedgerRow}; answers without one:
${r.drill.unrecordedAnswers}.${r.drill.answersRecordedNotGiven === undefined ? '' : ` The other way: answers the ledger records beyond those the
provider sent: ${r.drill.answersRecordedNotGiven} (must be 0); provider-call rows beyond the requests it received: ${r.drill.ledgerRowsWithoutRequest}
(at most the calls lost in flight: a call whose process was killed after reserving it and before sending it is booked lost too,
as the sweeper cannot tell).`} Prompts the provider answered twice: ${r.drill.provider.answeredAgain} (counted in "paid twice": a call answered
to a process that died before it could record the answer is made again by the job's retry, and no provider
takes an idempotency key that would let the retry fetch the first answer instead).
` : ''}${r.drill.filesLeftAtProvider === undefined ? '' : `
Left at the provider once every deep review was delivered: ${r.drill.filesLeftAtProvider} batch files (uploads with students' essays, and
results) and ${r.drill.uploadsNotStruckOff} uploads still written down in \`provider_uploads\` (both must be 0).
`}${r.drill.note ? `\n${r.drill.note}\n` : ''}
${r.fairness ? renderFairness(r.fairness) : ''}
${r.readFlood ? `${renderReadFlood(r.readFlood)}
` : ''}${r.hostile ? renderHostile(r.hostile) : ''}
${r.injection ? renderInjection(r.injection) : ''}
${r.quality ? renderQuality(r.quality) : ''}
${r.peers ? renderPeers(r.peers) : ''}
${r.ledger ? renderLedger(r.ledger) : ''}
${r.startMemory ? renderStartMemory(r.startMemory) : ''}
## The token bound's margin

\`npx ts-node --transpile-only bench/calibrate-tokens.ts\` — real tokens (o200k_base, cl100k_base) ÷ the
upper bound (the prompt's UTF-8 bytes plus the chat template) on 300 generated Chinese and 300
English essays: never above 1 (the bound is a proof, not a fit); ${TOKEN_MARGIN}
`;
}

/** From the last run of bench/calibrate-tokens.ts (it is not part of npm run bench: it measures no speed). */
const TOKEN_MARGIN =
  'measured 2026-11-30: Chinese essays use about a third of the bound on o200k (mean ratio 0.324, max 0.343) and half on cl100k (0.494, max 0.518); English essays about a sixth (o200k 0.159, cl100k 0.161, max 0.169). A reservation holds that much more than the call will cost, only while the call is in flight.';

/** How the reference case moved since the run before this one (kept in latest.json as \`previous\`). */
function movedSincePrevious(r: any): string {
  const before = caseHeadline(r.previous?.caseStudy);
  const after = caseHeadline(r.caseStudy);
  if (!before || !after) return '';
  const row = (what: string, before: string | number, after: string | number) => `| ${what} | ${before} | ${after} |`;
  return `
**Since the previous run** (commit \`${r.previous.commit}\`, ${r.previous.date}):

| | before | now |
|---|---|---|
${row('cost per grading, Inkstone (headline run)', `${before!.costPerGrading} CNY`, `${after!.costPerGrading} CNY`)}
${row('cost per grading, naive', `${before!.naive} CNY`, `${after!.naive} CNY`)}
${row('costRatioVsNaive', before!.ratio, after!.ratio)}
${speedRows(r, row)}
${r.previous.note ? `\n${r.previous.note}\n` : ''}`;
}

/** The speed figures of the previous run beside this one's, where the previous run measured them. */
function speedRows(r: any, row: (what: string, before: string | number, after: string | number) => string): string {
  const p = r.previous ?? {};
  const rows: string[] = [];
  const add = (what: string, before: unknown, after: unknown) => {
    if (before !== undefined && after !== undefined) rows.push(row(what, String(before), String(after)));
  };
  add('submissions, single (per s, p50)', p.submissions && `${p.submissions.single.perSecond} / ${p.submissions.single.p50Ms} ms`, r.submissions && `${r.submissions.single.perSecond} / ${r.submissions.single.p50Ms} ms`);
  add('submissions, class sets (essays per s)', p.submissions?.batch.essaysPerSecond, r.submissions?.batch.essaysPerSecond);
  add('grading throughput (essays per s)', p.grading?.essaysPerSecond, r.grading?.essaysPerSecond);
  add('gateway, no cache (per s, p50)', p.gateway && `${p.gateway.throughInkstone.perSecond} / ${p.gateway.throughInkstone.p50Ms} ms`, r.gateway && `${r.gateway.throughInkstone.perSecond} / ${r.gateway.throughInkstone.p50Ms} ms`);
  add('gateway, cache hits (per s)', p.gateway?.cacheHit.perSecond, r.gateway?.cacheHit.perSecond);
  return rows.join('\n');
}

/** What escalation costs, from the case study's escalation run. */
function renderEscalation(e: any): string {
  const pct = (x: string | null) => (x === null ? '—' : `${(Number(x) * 100).toFixed(1)}%`);
  return `
**Escalation** (SPEC §9): at its default (\`escalate: off\`) it costs nothing. Turned on as \`deep\` with the
pass mark at 60% of each rubric's maximum, on the first ${e.days} days of the same traffic (${e.essays} essays, exact
repeats left out, each rubric's essays in an assignment): ${e.escalated} standard grades (${pct(e.escalatedShare)}) were
low-confidence — within one step of the pass mark, repaired, or flagged — and graded again on the deep
tier; ${e.leftFlagged} were left flagged for review. That adds ${e.escalationCostPerGrading} CNY to the
${e.costPerGradingWithout} CNY of a standard grading: **${pct(e.addsToGradingCost)}** more, because one deep grading
costs as much as many standard ones.
`;
}
