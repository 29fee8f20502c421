/**
 * Runs a test file again and again with every core kept busy, to prove that concurrency tests
 * hold on a loaded machine (the lease of a starved worker runs out, timers fire late).
 *
 *   npm run test:under-load -- [--runs N] [--busy N] <jest args…>
 *   e.g. npm run test:under-load -- --runs 10 test/workers.e2e-spec.ts -t "exactly once"
 *
 * Busy children: one per core by default (a plain `for (;;) {}` loop each). Prints one line per
 * run and a summary; exits 1 if any run failed.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as os from 'node:os';

function option(name: string, def: number, args: string[]): number {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} needs a whole number`);
  return v;
}

function main(): void {
  const args = process.argv.slice(2);
  const runs = option('--runs', 5, args);
  const busy = option('--busy', os.cpus().length, args);
  if (!args.length) throw new Error('name the test file (and any jest options) to run');
  const hogs = Array.from({ length: busy }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  let failed = 0;
  try {
    for (let i = 1; i <= runs; i++) {
      const t0 = Date.now();
      const r = spawnSync('npx', ['jest', '--forceExit', ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: process.env });
      const ok = r.status === 0;
      if (!ok) failed++;
      const summary = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /^Tests:/.test(l)).pop() ?? '';
      process.stdout.write(`run ${i}/${runs}: ${ok ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - t0) / 1000)} s  ${summary}\n`);
      if (!ok) process.stdout.write(`${r.stderr.split('\n').filter((l) => /●|Expected|Received/.test(l)).slice(0, 12).join('\n')}\n`);
    }
  } finally {
    for (const h of hogs) h.kill('SIGKILL');
  }
  process.stdout.write(`${runs - failed}/${runs} runs passed with ${busy} busy loop${busy === 1 ? '' : 's'} on ${os.cpus().length} cores\n`);
  if (failed) process.exit(1);
}

main();
