/**
 * Writes BENCHMARKS.md again from bench/results/latest.json, with the latest result of
 * `npm run bench:quality`, `bench:ledger` and `bench:peers` (bench/results/{quality,ledger,peers}.json)
 * in it: for a report change, or one of those runs, without running every benchmark again.
 *
 *   npm run bench:report
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './lib/harness';
import { renderBenchmarks, withSeparateRuns } from './lib/report';

const results = JSON.parse(fs.readFileSync(path.join(ROOT, 'bench/results/latest.json'), 'utf8'));
const qualityFile = path.join(ROOT, 'bench/results/quality.json');
if (fs.existsSync(qualityFile)) results.quality = JSON.parse(fs.readFileSync(qualityFile, 'utf8'));
// bench:ledger and bench:peers run on their own (each needs the machine to itself)
withSeparateRuns(results, ROOT);
fs.writeFileSync(path.join(ROOT, 'BENCHMARKS.md'), renderBenchmarks(results));
process.stdout.write('bench: wrote BENCHMARKS.md from bench/results/latest.json\n');
