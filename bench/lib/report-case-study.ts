/** The reference case in BENCHMARKS.md, from bench/case-study.ts's results. */

const LEVERS: Array<[string, string]> = [
  ['cacheAndReuse', 'exact cache and resubmission reuse (jobs answered with no provider call)'],
  ['routing', "routing: the standard model instead of the premium one, on naive's own tokens"],
  ['compression', 'compression: prompt tokens not sent, measured (provider-reported counts on both sides; the sentence numbers Inkstone adds count against it)'],
  ['prefixCache', "provider prefix cache: more of Inkstone's input served cached than of naive's"],
  ['batchAndOffPeak', 'batch price / off-peak: real-time price of the same usage minus what was billed'],
  ['output', "shorter answers: sentences pointed at by number instead of copied, paragraph analyses placed in order instead of numbered (naive's output tokens − Inkstone's, at the output price)"],
  ['other', 'other: repairs, retries and rounding (the rest, so the rows add up)'],
];

const RUNS: Array<[string, string]> = [
  ['realtimeDeepReviews', 'deep reviews in real time'],
  ['batchDeepReviews', 'deep reviews through the Batch API (the default)'],
  ['offPeakClassSets', 'class sets due next day, deep reviews batched'],
];

export function renderCaseStudy(cs: any): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const n = cs.naive;
  const b = cs.tightCap;
  const run = (k: string) => cs.runs[k];
  const head = `| | ${RUNS.map(([, label]) => label).join(' | ')} | naive |`;
  const sep = `|---|${RUNS.map(() => '---').join('|')}|---|`;
  const row = (what: string, f: (r: any) => string, naive: string) => `| ${what} | ${RUNS.map(([k]) => f(run(k))).join(' | ')} | ${naive} |`;
  const leverRows = LEVERS.map(([k, label]) => row(label, (r) => `${r.levers.cny[k]} CNY (${r.levers.points[k]} pts)`, '—')).join('\n');
  const headline = run('offPeakClassSets').likeForLike;
  const part = (a: string, b: string) => (Number(a) / Number(b)).toFixed(3);
  const off = run('offPeakClassSets');
  return `## The reference case (\`npm run bench:case-study\`)

Run ${cs.at ?? '(date not recorded)'}${cs.commit ? `, commit \`${cs.commit}\`` : ''}.

A month of an essay service with 20,000 users, about 10 essays each, sent through the HTTP API
(\`bench/case-study.ts\`): ${pct(cs.traffic.exactRepeats / cs.essaysSubmitted)} exact repeats,
${pct(cs.traffic.resubmissionsWithEdits / cs.essaysSubmitted)} resubmissions with a word or two
changed, ${pct(cs.traffic.chinese / cs.essaysSubmitted)} Chinese (600–1,000 characters) and the rest
English (250–400 words), ${pct(cs.traffic.deepReviewsBought / cs.essaysSubmitted)} deep reviews
bought (invoice mode). **Scale ${cs.scale}**: ${cs.users} users, ${cs.essaysSubmitted} essays; costs
are as measured at this scale (× ${Math.round(1 / cs.scale)} for the full month). Time is compressed:
the month runs in minutes. Prices are the built-in catalog's; the fake provider counts tokens with
o200k and prices DashScope's implicit prefix cache.

**Both sides do the same jobs.** Each essay gets a rubric grade; each deep review bought gets the
same commentary (paragraph analysis, rewrites, a revision plan) written by the premium model from
the same deep-review prompt. Every class set is an assignment with the same task text on both sides.

- **Naive**: every grading one call to \`${cs.models.naive}\`, every deep review one more call to it, each
  in the natural layout (instructions and the pretty-printed rubric first, the task and the raw
  essay last, so the provider's prefix cache serves the common part: ${pct(n.cachedInputShare)} of its
  input tokens were served cached), at real-time prices, with no cache or reuse of its own.
- **Inkstone**: standard tier \`${cs.models.standard}\`, deep tier \`${cs.models.deep}\`, exact cache, compact prompts
  with the essay's sentences numbered so that annotations and rewrites point at them instead of
  copying them (the server puts the exact words back), resubmissions by the same student reusing
  the earlier grade; run three times on the same traffic.

${head}
${sep}
${row('gradings (essays + deep reviews)', (r) => String(r.likeForLike.gradings), String(n.gradings))}
${row('**cost per grading**', (r) => `**${r.likeForLike.costPerGrading} CNY**`, `${n.costPerGrading} CNY`)}
${row('**ratio to naive, per grading**', (r) => `**${r.likeForLike.ratioPerGrading}**`, '1')}
${row('ratio to naive, total cost of the month', (r) => String(r.likeForLike.ratioOnTotal), '1')}
${row('month at this scale (full scale)', (r) => `${r.spent} (${r.monthlyCostFullScale}) CNY`, `${n.measuredCost} (${n.monthlyCostFullScale}) CNY`)}
${row('cost per standard grading / per deep review', (r) => `${r.costPerStandardGrading} / ${r.costPerDeepReview}`, `${n.costPerStandardGrading} / ${n.costPerDeepReview}`)}
${row('cache hit rate (of model gradings)', (r) => r.cacheHitRate, '0')}
${row('deep reviews answered from the cache / resubmissions given their earlier grade', (r) => `${r.deepReviewsFromCache ?? '—'} / ${r.gradings.reused}`, '0 / 0')}
${row('overspend / lost essays / ledger = spend', (r) => `${r.overspend} / ${r.lostEssays} / ${r.ledgerEqualsSpend}`, '—')}

**Where each point comes from** (naive = 100 points; each lever in CNY at this scale and in points of
the naive total; Inkstone's own cost is what is left):

${head}
${sep}
${leverRows}
${row("**Inkstone's cost**", (r) => `**${r.levers.inkstoneTotal} CNY (${r.levers.inkstoneShareOfNaive} pts)**`, `${n.measuredCost} CNY (100 pts)`)}

Headline (class sets due next day): **${headline.ratioPerGrading}** of naive per grading, target ≤ ${cs.target}:
${headline.ratioPerGrading <= cs.target ? '**met**' : '**not met**'}. By job, in that run: a standard grading costs ${part(off.costPerStandardGrading, n.costPerStandardGrading)} of
naive's, a deep review ${part(off.costPerDeepReview, n.costPerDeepReview)} of naive's — the deep reviews (the same premium model on
both sides, so only the batch price, compression and shorter answers apply) are most of what is left.
${cs.note ? `\n${cs.note}\n` : ''}
**Run B — the cap lowered** (${cs.capNote}): cap ${b.capCny} CNY at this scale. Spent ${b.spent} CNY,
overspend **${b.overspend}**, budget peak ${b.budgetPeakUtilization}; ${b.gradings.offline} essays graded by the
offline grader after exhaustion; of ${b.deepReviews.ordered} deep reviews ordered, ${b.deepReviews.refusedAtOrder} refused at
ordering (402) and ${b.deepReviews.refunded} refunded, ${b.deepReviews.delivered} delivered; lost essays **${b.lostEssays}**; ledger = spend: ${b.ledgerEqualsSpend}.
`;
}

/** Cost per grading and its ratio, in the old results' shape or the new one. */
export function caseHeadline(cs: any): { costPerGrading: string; naive: string; ratio: number } | null {
  if (!cs) return null;
  if (cs.runs) return { costPerGrading: cs.runs.offPeakClassSets.likeForLike.costPerGrading, naive: cs.naive.costPerGrading, ratio: cs.costRatioVsNaive };
  return { costPerGrading: cs.inkstone.costPerGrading, naive: cs.naive.costPerGrading, ratio: cs.costRatioVsNaive };
}
