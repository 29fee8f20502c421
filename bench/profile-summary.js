/**
 * Where a V8 CPU profile's busy time went, within a window: self time by package or file and by
 * function, and (with a filter) inclusive time of the functions whose name or file contains it.
 * For the profiles the benches write with BENCH_CPU_PROF=DIR; bench/probe-miss.ts prints the
 * measured window as {"measuredMsAfterStart":[from,to]}.
 *
 *   node bench/profile-summary.js DIR/CPU.*.cpuprofile [fromMs toMs] [filter]
 */
const fs = require('node:fs');
const [file, fromArg, toArg, filter] = process.argv.slice(2);
const p = JSON.parse(fs.readFileSync(file, 'utf8'));
const from = fromArg === undefined ? -Infinity : Number(fromArg);
const to = toArg === undefined ? Infinity : Number(toArg);
const nodes = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
// Samples in the window, by node.
const count = new Map();
let t = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i] / 1000;
  if (t >= from && t <= to) count.set(p.samples[i], (count.get(p.samples[i]) ?? 0) + 1);
}
/** node_modules/<package>, our dist file, a node: module, or V8's own (GC, idle, program). */
const where = (n) => {
  const url = n.callFrame.url || '';
  if (url.includes('node_modules/')) {
    const rest = url.split('node_modules/').pop();
    return rest.split('/').slice(0, rest.startsWith('@') ? 2 : 1).join('/');
  }
  if (url.includes('/dist/')) return `ours:${url.split('/dist/').pop()}`;
  return url || n.callFrame.functionName;
};
const fn = (n) => `${n.callFrame.functionName || '(anonymous)'} ${where(n)}:${n.callFrame.lineNumber}`;
const self = new Map();
const byWhere = new Map();
const inclusive = new Map();
let busy = 0;
const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
for (const [id, c] of count) {
  const n = nodes.get(id);
  if (n.callFrame.functionName === '(idle)') continue;
  busy += c;
  add(self, fn(n), c);
  add(byWhere, where(n), c);
  const seen = new Set();
  for (let x = id; x !== undefined; x = parent.get(x)) {
    const k = fn(nodes.get(x));
    if (!seen.has(k)) (seen.add(k), add(inclusive, k, c));
  }
}
const top = (m, k) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, v]) => `${((100 * v) / busy).toFixed(1).padStart(5)}%  ${name}`).join('\n');
console.log(`busy samples ${busy} (percentages below are of these)`);
console.log('--- self, by package or file\n' + top(byWhere, 25));
console.log('--- self, by function\n' + top(self, 40));
if (filter) console.log(`--- inclusive, functions matching "${filter}"\n` + top(new Map([...inclusive].filter(([k]) => k.includes(filter))), 40));
