/**
 * Every benchmark, one after the other, then bench/results/latest.json and BENCHMARKS.md.
 *
 *   npm run bench
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCaseStudy } from './case-study';
import { runDrill } from './drill';
import { runFairness } from './fairness';
import { runHostile } from './hostile';
import { runInjection } from './injection';
import { runGateway } from './gateway';
import { runGradingThroughput } from './grading-throughput';
import { commit, ensureBuilt, machine, ROOT, writeResult } from './lib/harness';
import { renderBenchmarks, withSeparateRuns } from './lib/report';
import { runQuality } from './quality';
import { runSubmissions } from './submissions';

/** The last run's figures, to show in BENCHMARKS.md how they moved (with BENCH_CHANGE_NOTE saying why). */
function previousRun(): unknown {
  try {
    const last = JSON.parse(fs.readFileSync(path.join(ROOT, 'bench/results/latest.json'), 'utf8'));
    return {
      commit: last.commit,
      date: last.date,
      caseStudy: last.caseStudy,
      submissions: last.submissions,
      grading: last.grading,
      gateway: last.gateway,
      note: process.env.BENCH_CHANGE_NOTE,
    };
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  ensureBuilt();
  const previous = previousRun();
  process.env.BENCH_SKIP_BUILD = '1';
  const started = new Date();
  // The build measured is the commit checked out now (later commits are not in it).
  const builtFrom = commit();
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    process.stdout.write(`bench: ${name}…\n`);
    const r = await fn();
    process.stdout.write(`bench: ${name} done in ${Math.round((Date.now() - t0) / 1000)} s\n`);
    writeResult(`${name}.json`, { at: new Date().toISOString(), ...(r as object) });
    return r;
  };
  const submissions = await step('submissions', () => runSubmissions());
  const grading = await step('grading-throughput', () => runGradingThroughput());
  const gateway = await step('gateway', () => runGateway());
  const caseStudy = await step('case-study', () => runCaseStudy());
  const drill = await step('drill', () => runDrill());
  const fairness = await step('fairness', () => runFairness());
  const hostile = await step('hostile', () => runHostile());
  const injection = await step('injection', () => runInjection());
  const quality = await step('quality', () => runQuality());
  const results = {
    command: 'npm run bench',
    date: started.toISOString().slice(0, 10),
    startedAt: started.toISOString(),
    commit: builtFrom,
    machine: machine(),
    database: 'PostgreSQL 15, default settings',
    submissions,
    grading,
    gateway,
    caseStudy,
    drill,
    fairness,
    hostile,
    injection,
    quality,
    previous,
  };
  writeResult('latest.json', results);
  fs.writeFileSync(path.join(ROOT, 'BENCHMARKS.md'), renderBenchmarks(withSeparateRuns({ ...results }, ROOT)));
  process.stdout.write(`bench: wrote bench/results/latest.json and BENCHMARKS.md\n`);
  if (!drill.passed || caseStudy.overspend !== 0 || caseStudy.lostEssays !== 0 || !fairness.passed || !hostile.passed || !injection.passed) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
