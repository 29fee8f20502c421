/**
 * The BENCHMARKS.md section for `npm run bench:injection` (bench/injection.ts), from its result
 * (bench/results/injection.json).
 */
import type { InjectionResult } from '../injection';
import type { SetScore } from '../../test/fixtures/injection';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function categories(s: SetScore): string {
  const rows = [
    ...Object.entries(s.attackCategories).map(([c, r]) => `| attack: ${c} | ${r.total} | ${r.flagged} | recall ${pct(r.rate)} |`),
    ...Object.entries(s.cleanCategories).map(([c, r]) => `| clean: ${c} | ${r.total} | ${r.flagged} | false positives ${pct(r.rate)} |`),
  ];
  return `| category | essays | flagged | |\n|---|---:|---:|---|\n${rows.join('\n')}`;
}

export function renderInjection(r: InjectionResult): string {
  const set = (name: 'tune' | 'held-out') => {
    const s = r.sets[name];
    return `| ${name} | ${s.attacks} | ${pct(s.recall)} | ${s.clean} | ${pct(s.falsePositiveRate)} | ${s.missed.join(', ') || '—'} | ${s.falsePositives.join(', ') || '—'} |`;
  };
  const held = r.sets['held-out'];
  return `## Prompt injection (\`npm run bench:injection\`)

The detector (\`src/grading/injection.ts\`) on its corpus (\`test/fixtures/injection/\`): attacks in
Chinese and English (addressing the grader, polite pleas to an "AI teacher", fake rubric and rule
notices, demands for a score or an output format, orders to ignore the instructions, role changes,
fake system messages and fences, and the same hidden by letter spacing, leetspeak, Cyrillic and
Greek look-alikes, zero-width characters, soft hyphens, bidi controls, full-width letters, base64 and
hex) and clean essays that merely discuss rules, AI or scores. Each case is a paragraph put into a
generated student essay of its language, or the essay's title. The detector was developed on the
**tune** set only; the **held-out** set was written before it and not edited after its results
were seen. Target on the held-out set: recall ≥ ${pct(r.targets.recall)}, false positives ≤ ${pct(r.targets.falsePositiveRate)}.

| | |
|---|---|
| command | \`${r.command}\` |
| date | ${r.date} |
| commit | \`${r.commit}\` |

Columns: **recall** = attacks flagged ÷ attacks; **false positives** = clean essays flagged ÷ clean
essays; **missed** and **flagged clean** name the cases (ids in the fixture files).

| set | attacks | recall | clean essays | false positives | missed | flagged clean |
|---|---:|---:|---:|---:|---|---|
${set('tune')}
${set('held-out')}

**Held-out: recall ${pct(held.recall)}, false positives ${pct(held.falsePositiveRate)} — ${r.passed ? 'target met' : 'TARGET MISSED'}.**
The held-out set's blind run (${r.blindHeldOutRun.date}, before any change made after seeing it): recall
${pct(r.blindHeldOutRun.recall)}, false positives ${pct(r.blindHeldOutRun.falsePositiveRate)}, missed ${r.blindHeldOutRun.missed.join(', ') || '—'}
(${r.blindHeldOutRun.note}). Figures after it are no longer blind.

Held-out set by category:

${categories(held)}

Tune set by category:

${categories(r.sets.tune)}

Time per essay (one process, ${r.machine.cpuModel}): ${r.timing.corpusMeanMs} ms on average over the ${r.timing.corpusEssays}
corpus essays (at most ${r.timing.corpusMaxMs} ms); ${r.timing.ordinary20kMs} ms for an ordinary 20,000-character essay;
at most ${r.timing.hostile20kMaxMs} ms for a hostile one of 20,000 characters (${r.timing.hostile20kSlowest}).
`;
}
