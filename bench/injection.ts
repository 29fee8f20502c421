/**
 * Prompt-injection detection on its corpus (test/fixtures/injection/): recall on attacks and the
 * false-positive rate on clean essays that merely discuss rules, AI or scores, in Chinese and
 * English, per set and per category. The detector was tuned on the TUNE set only; the HELD-OUT set
 * was written before it and never edited after. Target on the held-out set: recall ≥ 95%, false
 * positives ≤ 5%. Also the detector's time per essay, on the corpus and on 20,000-character essays
 * (the longest the API accepts, ordinary and hostile).
 *
 *   npm run bench:injection
 */
import { detectInjection } from '../src/grading/injection';
import { CORPUS, essayFor, scoreCorpus, SetScore } from '../test/fixtures/injection';
import { benignText, hostileInputs } from '../test/support/hostile-inputs';
import { commit, machine, runMain } from './lib/harness';

/**
 * The held-out set's one blind run, before anything was changed after seeing it. The short-payload
 * fix that followed (decoded payloads of 2–3 characters are read too, tuned on t-zh-x09) makes later
 * held-out figures no longer blind; this record keeps the blind one.
 */
export const BLIND_HELD_OUT_RUN = {
  date: '2026-11-30',
  recall: 0.9875,
  falsePositiveRate: 0,
  missed: ['h-zh-e05'],
  falsePositives: [] as string[],
  note: 'its one miss was a hex payload of 3 characters, when decoded payloads under 4 characters were ignored',
};

export interface InjectionResult {
  command: string;
  date: string;
  commit: string;
  machine: Record<string, string | number>;
  targets: { recall: number; falsePositiveRate: number };
  sets: { tune: SetScore; 'held-out': SetScore };
  blindHeldOutRun: typeof BLIND_HELD_OUT_RUN;
  timing: {
    corpusEssays: number;
    corpusMeanMs: number;
    corpusMaxMs: number;
    /** an ordinary 20,000-character essay text */
    ordinary20kMs: number;
    /** the slowest hostile input of 20,000 characters (test/support/hostile-inputs.ts) */
    hostile20kMaxMs: number;
    hostile20kSlowest: string;
  };
  passed: boolean;
}

function timeOf(fn: () => unknown, runs = 3): number {
  fn();
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    xs.push(performance.now() - t0);
  }
  return xs.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export async function runInjection(): Promise<InjectionResult> {
  const detect = (text: string, title: string) => detectInjection(text, title).suspected;
  const sets = { tune: scoreCorpus('tune', detect), 'held-out': scoreCorpus('held-out', detect) };

  const essays = [...CORPUS.tune.attacks, ...CORPUS.tune.clean, ...CORPUS['held-out'].attacks, ...CORPUS['held-out'].clean].map(essayFor);
  const times = essays.map((e) => timeOf(() => detectInjection(e.text, e.title), 1));
  const hostile = hostileInputs(20_000)
    .filter((h) => h.text.length <= 20_000)
    .map((h) => ({ name: h.name, ms: timeOf(() => detectInjection(h.text, h.text.slice(0, 200))) }))
    .sort((a, b) => b.ms - a.ms);
  const ordinary = benignText(20_000);

  const targets = { recall: 0.95, falsePositiveRate: 0.05 };
  const held = sets['held-out'];
  return {
    command: 'npm run bench:injection',
    date: new Date().toISOString().slice(0, 10),
    commit: commit(),
    machine: machine(),
    targets,
    sets,
    blindHeldOutRun: BLIND_HELD_OUT_RUN,
    timing: {
      corpusEssays: essays.length,
      corpusMeanMs: round(times.reduce((a, b) => a + b, 0) / times.length),
      corpusMaxMs: round(Math.max(...times)),
      ordinary20kMs: round(timeOf(() => detectInjection(ordinary, ordinary.slice(0, 200)))),
      hostile20kMaxMs: round(hostile[0].ms),
      hostile20kSlowest: hostile[0].name,
    },
    passed: held.recall >= targets.recall && held.falsePositiveRate <= targets.falsePositiveRate,
  };
}

if (require.main === module) runMain('injection.json', runInjection, (r) => r.passed);
