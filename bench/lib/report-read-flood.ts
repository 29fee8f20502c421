/**
 * The BENCHMARKS.md section for `npm run bench:read-flood` (bench/read-flood.ts), from its result
 * (bench/results/read-flood.json).
 */
import type { ASide, Phase, ReadFloodResult } from '../read-flood';

const n = (x: number) => x.toLocaleString('en-US');
const ms = (x: number | null) => (x === null || Number.isNaN(x) ? '—' : String(x));
const statuses = (s: Record<string, number>) =>
  Object.entries(s)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([k, v]) => `${k}: ${n(v)}`)
    .join(', ') || '—';
const label = (p: Phase) => (p.round ? `${p.name}, round ${p.round}` : p.name);
const bound = (p: Phase, def: number) => (p.name === 'alone' || p.name === 'alone again' ? '—' : p.aReadsInFlight === null ? `${def} (default)` : n(p.aReadsInFlight));

function aRow(p: Phase, a: ASide): string {
  return `| ${label(p)} | ${n(a.lists.answered)} (${a.lists.perSecond}/s) | ${statuses(a.lists.statuses)} | ${ms(a.lists.okP50Ms)} / ${ms(a.lists.okP99Ms)} | ${n(a.exports.answered)} | ${statuses(a.exports.statuses)} | ${ms(a.exports.okP50Ms)} / ${ms(a.exports.okP99Ms)} | ${a.errors} |`;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export function renderReadFlood(r: ReadFloodResult): string {
  const s = r.settings;
  const def = s.aLimitsBounded.readsInFlight ?? 4;
  const alone = r.phases[0];
  const again = r.phases.find((p) => p.name === 'alone again');
  const floods = r.phases.filter((p) => p.a);
  const ratioOf = (name: string) => r.ratios.filter((x) => x.name === name);
  const unb = ratioOf('unbounded');
  const bnd = ratioOf('bounded');
  const range = (xs: number[]) => (!xs.length ? '—' : Math.min(...xs) === Math.max(...xs) ? `${xs[0]}×` : `${Math.min(...xs)}–${Math.max(...xs)}×`);
  const bRows = r.phases
    .map(
      (p) =>
        `| ${label(p)} | ${bound(p, def)} | ${n(p.b.count)} (${p.b.perSecond}/s) | ${p.b.p50Ms} | ${p.b.p95Ms} | ${p.b.p99Ms} | ${p.b.maxMs} | ${p.b.essaysList.p95Ms} / ${p.b.assignment.p95Ms} | ${statuses(p.b.statuses)} | ${p.cpu.servicePct}% / ${p.cpu.postgresPct}% / ${p.cpu.loadGeneratorPct}% | ${p.machineBusyPct}% (${p.othersBusyPct}%) |`,
    )
    .join('\n');
  const ratioRows = r.ratios
    .map((x) => {
      const p = r.phases.find((q) => q.name === x.name && q.round === x.round)!;
      return `| ${x.name}, round ${x.round} | ${p.b.p50Ms} ms | ${x.p50}× | ${p.b.p95Ms} ms | **${x.p95}×** | ${p.b.p99Ms} ms | **${x.p99}×** |`;
    })
    .join('\n');
  const unbP95 = unb.map((x) => x.p95);
  const bndP95 = bnd.map((x) => x.p95);
  const unbP99 = unb.map((x) => x.p99);
  const bndP99 = bnd.map((x) => x.p99);
  const helped = unbP95.length && bndP95.length && Math.max(...bndP95) < Math.min(...unbP95);
  const verdict = !unbP95.length
    ? ''
    : helped
      ? `In every round B's p95 under the bounded flood (${range(bndP95)} alone) was below its p95 under the unbounded flood (${range(unbP95)}); p99 ${range(bndP99)} against ${range(unbP99)}.`
      : `B's p95 under the bounded flood (${range(bndP95)} alone) and under the unbounded flood (${range(unbP95)}) overlap across the rounds (p99 ${range(bndP99)} against ${range(unbP99)}): in this run the bound did not separate them.`;
  const aOk = (p: Phase) => p.a!.lists.statuses['200'] ?? 0;
  const few = r.phases.filter((p) => p.b.count < 100);
  const bndPhases = floods.filter((p) => p.name === 'bounded');
  const bndMedian = bndP95.length ? median(bndP95) : 0;
  const nRange = (xs: number[]) => (!xs.length ? '—' : Math.min(...xs) === Math.max(...xs) ? n(xs[0]) : `${n(Math.min(...xs))}–${n(Math.max(...xs))}`);
  const unbPhases = floods.filter((p) => p.name === 'unbounded');
  const okLists = (ps: Phase[]) => nRange(ps.map(aOk));
  const okExports = (ps: Phase[]) => nRange(ps.map((p) => p.a!.exports.statuses['200'] ?? 0));
  const aP50 = (ps: Phase[]) => nRange(ps.map((p) => p.a!.lists.okP50Ms ?? NaN).filter((x) => !Number.isNaN(x)).map(Math.round));
  const aSentence = bndPhases.length
    ? `**Tenant A** in B's window: pages answered \`200\` ${okLists(unbPhases)} unbounded, ${okLists(bndPhases)} bounded (the rest
\`429\`, sent again after \`Retry-After\`), at p50 ${aP50(unbPhases)} ms and ${aP50(bndPhases)} ms; exports answered \`200\`
${okExports(unbPhases)} unbounded, ${okExports(bndPhases)} bounded.`
    : '';
  const pct = (x: number, before: number) => `${Math.round((x / before) * 100)}%`;
  const stillSlow =
    bndMedian >= 2
      ? `

The bound does not bring B back to its figures alone: under the bounded flood B's p95 was still
${range(bndP95)} its p95 alone. Under the bound A still had ${Math.max(1, Math.floor(def / 2))} of its reads (pages of 100 essays,
exports) running at any time while B read — its queue of 64 stayed full, as its \`429\`s show — and its refused requests were answered too; B's reads share the service's one event loop, PostgreSQL and the
${r.machine.cpus} cores with them (${bndPhases.map((p) => `service ${p.cpu.servicePct}% of a core, PostgreSQL ${p.cpu.postgresPct}%, machine ${p.machineBusyPct}% busy in ${label(p)}`).join('; ')};
with B alone ${alone.cpu.servicePct}%, ${alone.cpu.postgresPct}% and ${alone.machineBusyPct}%). This benchmark does not separate which of these B's reads waited for.

Before the share (the record at \`0a77871\`, 2026-12-04, on a machine of the same kind), the bound held A to all ${def} of its slots whether or not B read: B's p50 35 and 39 ms, p95 104.6 and 120.7 ms (16.34–18.86× alone), 476 and 417 reads in 10 s; A's pages answered \`200\` 3,403 and 3,005, exports 25 and 24. In this run, at the medians of the bounded rounds: B's p95 ${pct(median(bndPhases.map((p) => p.b.p95Ms)), 112.65)} and its reads ${pct(median(bndPhases.map((p) => p.b.count)), 446.5)} of that record's, A's pages answered \`200\` ${pct(median(bndPhases.map(aOk)), 3204)} and its exports ${pct(median(bndPhases.map((p) => p.a!.exports.statuses['200'] ?? 0)), 24.5)}: a flooding tenant's own queue of 64 is full of its pages, so its exports, sent again a second after each \`429\`, find a place in it less often.`
      : '';
  return `## One tenant's read flood (\`npm run bench:read-flood\`)

Does one tenant's flood of in-limit reads slow another tenant's reads? One service process (the
built service) on a fresh PostgreSQL database, \`DATABASE_POOL_SIZE=${s.databasePoolSize}\`, no provider
(essays graded by the offline grader). The operator raised both tenants' request-rate limits
(\`PUT /v1/tenants/:id/limits\`), so the request rate limiter is not what is measured.

- **Tenant A** has one assignment of ${n(s.aEssays)} graded essays (${s.essayChars}). Its
  flood: ${s.aConnections} connections reading \`GET /v1/essays?limit=100\` (its ${s.aPages} pages, by
  cursor, in turn) and ${s.aExports} exporting \`GET /v1/assignments/:id/grades.csv\` of that assignment
  (${n(r.setup.gradesCsvBytes)} bytes), each in a closed loop; ${s.on429}. The flood starts 1 s
  before B's loop and stops after it.
- **Tenant B** has one assignment of ${n(s.bEssays)} graded essays. Its teacher reads, in every phase,
  with ${s.bConnections} connections in a closed loop for ${s.seconds} s, each connection alternating
  \`GET /v1/essays?assignmentId=…&limit=20\` and \`GET /v1/assignments/:id\` (in a worker thread of the
  load generator, apart from A's loops).
- **The same traffic in both flood phases**; the only difference is A's \`readsInFlight\`:
  ${n(100_000)} (set by the operator: effectively no bound, as before the bound existed), or \`null\`
  (the default, ${def}: more wait, 64 at most, then \`429\`; while B reads too, A is held to its
  share, ${def} ÷ 2 tenants reading = ${Math.max(1, Math.floor(def / 2))}). B keeps the default throughout.
- Phases, each after a quiet gap of ${s.gapSeconds} s (then until none of A's reads was still running on the
  service, \`GET /v1/limits\`: at most ${Math.max(...r.phases.map((p) => p.quietExtraMs))} ms more): B alone, then ${s.rounds} round${s.rounds === 1 ? '' : 's'} of (unbounded,
  bounded), then B alone again, after a 3 s warm-up of both.

Percentiles: ${s.percentiles}. The load generator, the service and PostgreSQL share the machine's
${r.machine.cpus} cores. CPU per process is % of one core over B's ${s.seconds} s (PostgreSQL: this database's
backends); "machine busy" is % of all cores, in brackets what is left after this run's processes (other
work on the shared machine; before the run it was ${r.machineBefore.busyPct}% busy, load average ${r.machineBefore.loadAvg1}).

| | |
|---|---|
| command | \`${r.command}\` |
| date | ${r.date} |
| commit | \`${r.commit}\`${r.srcChanged ? ` (${r.srcChanged} files of src/ or migrations/ changed in the working tree)` : ''} |
| machine | ${r.machine.cpus} vCPU (${r.machine.cpuModel}), ${r.machine.memoryGiB} GiB, Node.js ${r.machine.node} |

**B's reads, ms**:

| phase | A's \`readsInFlight\` | B's reads | p50 | p95 | p99 | max | p95 list / assignment | B's statuses | CPU: service / PostgreSQL / load generator | machine busy (others) |
|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|
${bRows}

**B under A's flood ÷ B alone** (alone: p50 ${alone.b.p50Ms} ms, p95 ${alone.b.p95Ms} ms, p99 ${alone.b.p99Ms} ms${again ? `; alone again at the end: p50 ${again.b.p50Ms} ms, p95 ${again.b.p95Ms} ms, p99 ${again.b.p99Ms} ms` : ''}):

| phase | B's p50 | ÷ alone | B's p95 | ÷ alone | B's p99 | ÷ alone |
|---|---:|---:|---:|---:|---:|---:|
${ratioRows}

**A's flood** (answers while B's loop ran; latency of A's \`200\` answers, ms):

| phase | lists answered | lists' statuses | lists p50 / p99 | exports answered | exports' statuses | exports p50 / p99 | no answer |
|---|---:|---|---:|---:|---|---:|---:|
${floods.map((p) => aRow(p, p.a!)).join('\n')}

${verdict} Median of the rounds: p95 ${median(unbP95).toFixed(2)}× unbounded, ${median(bndP95).toFixed(2)}× bounded;
p99 ${median(unbP99).toFixed(2)}× unbounded, ${median(bndP99).toFixed(2)}× bounded.
${r.passed ? "Every one of B's reads alone and under the bounded flood was answered 200." : "NOT every one of B's reads alone or under the bounded flood was answered 200."}${few.length ? ` B made fewer than 100 reads in ${few.map(label).join('; ')}: there its p99 is its slowest read or close to it.` : ''}${stillSlow}

${aSentence}
`;
}
