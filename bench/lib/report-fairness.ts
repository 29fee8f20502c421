/**
 * The BENCHMARKS.md section for `npm run bench:fairness` (bench/fairness.ts), from its result
 * (bench/results/fairness.json).
 */
import type { FairnessResult, SideSummary } from '../fairness';

const n = (x: number) => x.toLocaleString('en-US');
const ms = (x: number | null) => (x === null ? '—' : n(Math.round(x)));
const ratio = (a: number | null, b: number | null) => (a === null || b === null || !b ? '—' : `${(a / b).toFixed(2)}×`);

function row(label: string, get: (s: SideSummary) => number | null, r: FairnessResult, withRatio = true): string {
  const alone = get(r.bAlone);
  const flood = get(r.bDuringFlood);
  return `| ${label} | ${ms(alone)} | ${ms(flood)} | ${withRatio ? ratio(flood, alone) : ''} |`;
}

export function renderFairness(r: FairnessResult): string {
  const s = r.settings;
  const f = r.flood;
  const l = s.limits;
  const sets = Math.ceil(s.floodEssays / s.floodClassSetSize);
  const flood = r.bDuringFlood;
  // B's essays in the order the workers claimed them (ties by the class set's order).
  const byClaim = [...flood.perEssay].sort((x, y) => x.claimWaitMs - y.claimWaitMs || x.index - y.index);
  const first = byClaim[0];
  const last = byClaim[byClaim.length - 1];
  // B's share of the claims made while its essays waited: 50% with strict alternation.
  const share = flood.essays / (flood.essays + last.otherClaimedAhead);
  const shareNote =
    share < 0.45
      ? `B's essays got ${Math.round(share * 100)}% of the claims made while they waited, not the half that
strict alternation would give: a claim of one free slot takes the tenant whose oldest ready job has
waited longest (\`ORDER BY head LIMIT $3\` in \`JobQueue.claim\`), which during a flood is always A, so
B advances only in claims of two slots or more; in a saturated pool most claims are of one slot
(each finished grading wakes the claim loop).`
      : `B's essays got ${Math.round(share * 100)}% of the claims made while they waited (strict alternation: 50%).`;
  const perEssay = r.bAlone.perEssay
    .map((alone, i) => {
      const fl = flood.perEssay[i];
      return `| ${i + 1} | ${ms(alone.timeToGradeMs)} | ${ms(fl.timeToGradeMs)} | ${ms(fl.claimWaitMs)} | ${fl.otherClaimedAhead} | ${fl.otherGradedMeanwhile} |`;
    })
    .join('\n');
  return `## Fairness (\`npm run bench:fairness\`)

Does one tenant's flood hold another tenant's essays back? One service process (the built service)
on a fresh PostgreSQL database, the fake provider answering every grading after
${n(s.providerLatencyMs)} ms, ${s.workerConcurrency} workers (\`WORKER_CONCURRENCY\`).

- **Tenant A** floods: ${n(s.floodEssays)} essays as ${sets} class sets of ${s.floodClassSetSize}
  (\`POST /v1/essays/batch\`), sent one after another as fast as the service answers them. A keeps
  the default limits: ${sets} requests fit in the per-key burst of ${n(l.requestBurstPerKey)} (refill
  ${n(l.requestsPerSecondPerKey)}/s), so the operator raises nothing (a 429 would be waited out per
  \`Retry-After\`; there were ${f.rateLimited429}). ${n(s.floodEssays)} essays are within its
  \`essaysQueued\` limit of ${n(l.essaysQueued)}.
- **Tenant B** submits ${s.bEssays} essays as one class set (\`POST /v1/essays/batch\`) once A has
  ${n(s.bSubmittedAfterAEssaysAccepted)} essays accepted (${f.bSubmittedAtSeconds} s after A's first
  202; A keeps submitting), and follows each essay on its event stream
  (\`GET /v1/essays/:id/events\`). Time to grade = from B's 202 to the essay's terminal status event.
- **B alone**: the same ${s.bEssays} texts as one class set by another tenant on the same, idle
  service (after a 10-essay warm-up), before the flood.

A's cap of gradings at once (\`essaysGrading\` ${n(l.essaysGrading)}) is above the worker pool
(${s.workerConcurrency}), so A alone can take every worker: what keeps B moving is the queue's
round-robin claim across tenants, not the per-tenant cap. Other limits at their defaults
(provider calls ${n(l.providerCalls)}, event streams ${n(l.eventStreams)}). Model
\`${s.models}\`, \`WORKER_POLL_MS\` ${s.workerPollMs}, pool ${s.databasePoolSize} connections.
Percentiles: ${s.percentiles}.

| | |
|---|---|
| command | \`${r.command}\` |
| date | ${r.date} |
| commit | \`${r.commit}\` |
| machine | ${r.machine.cpus} vCPU (${r.machine.cpuModel}), Node.js ${r.machine.node} |

| B's ${s.bEssays} essays, ms | B alone | B during A's flood | ratio |
|---|---:|---:|---:|
${row('time to grade p50', (x) => x.p50Ms, r)}
${row('time to grade p95', (x) => x.p95Ms, r)}
${row('time to grade max', (x) => x.maxMs, r)}
${row('time to grade min', (x) => x.minMs, r)}
${row('wait for a worker p50 (202 → claimed)', (x) => x.claimWaitP50Ms, r, false)}
${row('wait for a worker max', (x) => x.claimWaitMaxMs, r, false)}
${row('server side p50 (created → graded)', (x) => x.serverP50Ms, r)}
${row('server side p95', (x) => x.serverP95Ms, r)}
| A's essays claimed ahead of a B essay, p50 / max | — | ${flood.otherClaimedAheadP50} / ${flood.otherClaimedAheadMax} | |
| A's essays graded while a B essay waited, p50 / max | — | ${flood.otherGradedMeanwhileP50} / ${flood.otherGradedMeanwhileMax} | |

How the rows are measured:
- **time to grade**: the client's clock, from the class set's 202 to the essay's terminal status on
  its event stream.
- **wait for a worker** and **A's essays claimed ahead**: the service records no claim time, so the
  benchmark reads the jobs table on a connection of its own, 15 ms after each read's answer, while
  B's essays wait (alone ${r.bAlone.samples} reads, during the flood ${flood.samples}; the wait is known to
  within one read's interval): an essay is claimed in the first sample that shows
  its job no longer queued; "claimed ahead" is how many more of A's jobs that sample shows claimed
  than the last sample before B's 202 — the places A took in the claim rounds the B essay waited
  through. With strict alternation between the two tenants, B's k-th essay would have about k of A's
  ahead of it.
- **server side**: \`essays.graded_at − created_at\`.
- **A's essays graded while a B essay waited**: A's essays with \`graded_at\` after the B essay was
  queued and no later than its own.

B's first essay was claimed ${ms(first.claimWaitMs)} ms after the 202 with ${first.otherClaimedAhead} of A's
claimed ahead of it, the last ${ms(last.claimWaitMs)} ms after it with ${last.otherClaimedAhead}. ${shareNote} When B's
class set was queued, ${n(f.aQueuedAheadAtBSubmit)} of A's essays were waiting (queued, or claimed but
not yet at the provider); a first-in-first-out queue would have made B's essays wait behind all of
them, about ${f.fifoWaitEstimateSeconds} s at A's rate.

**Tenant A**: ${n(f.graded)} of ${n(s.floodEssays)} graded (${f.failed} failed, ${f.cacheHits} cache
hits), submitted in ${f.submitSeconds} s (${f.requests} requests), all graded ${f.drainSeconds} s
after its first 202: ${f.essaysPerSecondOverall} essays/s overall, ${f.essaysPerSecond10to90}
essays/s between 10% and 90% done (the pool's ceiling is
${n(Math.round((s.workerConcurrency * 1000) / s.providerLatencyMs))}/s: ${s.workerConcurrency} workers ÷
${n(s.providerLatencyMs)} ms). **B's p95 during the flood: ${ms(flood.p95Ms)} ms, ${r.ratio.p95}× alone
(p50 ${r.ratio.p50}×) — ${r.passed ? 'every essay graded' : 'NOT every essay graded'}.**

Each of B's essays (the same text on both sides; ms from the 202):

| # | alone: time to grade | flood: time to grade | flood: wait for a worker | A's claimed ahead | A's graded meanwhile |
|---:|---:|---:|---:|---:|---:|
${perEssay}
`;
}
