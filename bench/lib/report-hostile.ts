/**
 * The BENCHMARKS.md section for `npm run bench:hostile` (bench/hostile.ts), from its result
 * (bench/results/hostile.json).
 */
import type { HostileResult, RouteMeasure } from '../hostile';

const ms = (x: number | null) => (x === null ? '—' : x >= 100 ? String(Math.round(x)) : x.toFixed(1));

function answer(m: RouteMeasure, essay: boolean): string {
  const head = `${m.status || 'no answer'} in ${ms(m.requestMs)}`;
  if (!essay) return head;
  if (m.doneMs !== null) return `${head}; ${m.outcome} at ${ms(m.doneMs)}`;
  return m.outcome ? `${head}; ${m.outcome}` : head;
}

const health = (m: RouteMeasure) => `${ms(m.healthMaxMs)} / ${ms(m.healthP99Ms)} (${m.healthSamples})`;

export function renderHostile(r: HostileResult): string {
  const rows = r.rows
    .map(
      (x) =>
        `| ${x.input} | ${x.chars.toLocaleString('en-US')} | ${answer(x.chat, false)} | ${health(x.chat)} | ${ms(x.chat.eventLoopLagMaxMs)} ` +
        `| ${answer(x.essay, true)} | ${health(x.essay)} | ${ms(x.essay.eventLoopLagMaxMs)} |`,
    )
    .join('\n');
  return `## Hostile input (\`npm run bench:hostile\`)

Each input of the hostile corpus (\`test/support/hostile-inputs.ts\`: long runs of whitespace,
\`<essay\` and \`</essay\` look-alikes, \`system\` and newlines, 200,000-character single tokens,
nesting written as text, lone surrogates, NUL, bidi and zero-width runs, combining marks, emoji ZWJ
sequences, 忽略 repeated, base64 and hex blobs…) sent through the built service's HTTP API with a
teacher key: as a chat message (\`POST /v1/chat/completions\`) and as an essay (\`POST /v1/essays\`,
with the first 100 characters as its title, then graded by the service's workers). The provider is
\`bench/lib/quick-provider.ts\`, which answers at once without tokenizing (the fake provider's
tokenizer is itself quadratic on some of these inputs; the subject here is the service). Essays
over 20,000 characters are refused (413): those rows show the refusal.
The first row is an ordinary essay text of 20,000 characters, for reference.

| | |
|---|---|
| command | \`${r.command}\` |
| date | ${r.date} |
| commit | \`${r.commit}\` |
| machine | ${r.machine.cpus} vCPU (${r.machine.cpuModel}), Node.js ${r.machine.node} |

Columns:
- **chat** / **essay**: the HTTP status and the request's own latency in ms; for an essay, also its
  final status and the ms from the request until then (grading included: injection detection,
  near-duplicate shingling, prompt building, the model call to the fake provider, validation).
- **/health max / p99 (n)**: this benchmark asks for \`/health\` every ${r.healthPollMs} ms while the
  request (and the essay's grading) runs; the longest and the 99th-percentile answer in ms, and how
  many answers there were (\`/health\` itself reads the database, so a quick request sees only a few).
  A blocked event loop shows here: nothing else is served meanwhile.
- **loop max**: the service's own measure over the same time, prom-client's
  \`nodejs_eventloop_lag_max_seconds\` read from \`/metrics\` (reset at each read; its resolution is
  10 ms, so about 10 is the floor), in ms.

A row fails the run when /health or the event loop was held ${r.limitMs} ms or more.
**Worst: ${r.worst.input} (${r.worst.route}), /health ${ms(r.worst.healthMaxMs)} ms, event loop ${ms(r.worst.eventLoopLagMaxMs)} ms — ${r.passed ? 'passed' : 'FAILED'}.**

| input | chars | chat | chat /health max / p99 (n) | chat loop max | essay | essay /health max / p99 (n) | essay loop max |
|---|---:|---|---:|---:|---|---:|---:|
${rows}
`;
}
