/**
 * What a V8 heap snapshot holds: self size by kind (strings, code, objects…), objects by their
 * constructor and property names (a cache's entries, a tenant's state), strings by their pattern
 * (UUIDs, hex keys and numbers folded) and the largest strings (mostly modules' source text).
 * For the snapshots bench/probe-tail.ts writes with HEAP_SNAP=1 and
 * BENCH_NODE_ARGS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR".
 *
 *   node --max-old-space-size=8000 bench/heap-summary.js DIR/Heap.*.heapsnapshot [rows]
 */
const fs = require('node:fs');
const [file, rowsArg] = process.argv.slice(2);
const rows = Number(rowsArg ?? 25);
const snap = JSON.parse(fs.readFileSync(file, 'utf8'));
const meta = snap.snapshot.meta;
const nf = meta.node_fields.length;
const ef = meta.edge_fields.length;
const nodeTypes = meta.node_types[0];
const edgeTypes = meta.edge_types[0];
const [iType, iName, iSelf, iEdges] = ['type', 'name', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f));
const [eType, eName] = ['type', 'name_or_index'].map((f) => meta.edge_fields.indexOf(f));
const { nodes, edges, strings } = snap;

const byKind = new Map();
const byShape = new Map();
const byPattern = new Map();
const large = [];
const add = (m, k, size) => {
  const a = m.get(k) ?? { n: 0, bytes: 0 };
  a.n++;
  a.bytes += size;
  m.set(k, a);
};
const pattern = (s) =>
  s
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'UUID')
    .replace(/[0-9a-f]{32,}/g, 'HEX')
    .replace(/\d+/g, 'N')
    .slice(0, 70);
let total = 0;
let edge = 0;
for (let i = 0; i < nodes.length; i += nf) {
  const type = nodeTypes[nodes[i + iType]];
  const name = strings[nodes[i + iName]];
  const size = nodes[i + iSelf];
  const edgeCount = nodes[i + iEdges];
  total += size;
  const isString = type === 'string' || type === 'concatenated string' || type === 'sliced string';
  add(byKind, isString ? 'strings' : type === 'code' ? 'code' : `${type} ${name.slice(0, 50)}`, size);
  if (type === 'object') {
    const props = [];
    for (let j = 0; j < edgeCount; j++) {
      const b = (edge + j) * ef;
      if (edgeTypes[edges[b + eType]] === 'property') props.push(strings[edges[b + eName]]);
    }
    add(byShape, `${name}{${props.slice(0, 8).join(',')}}`.slice(0, 140), size);
  }
  if (type === 'string') {
    if (size >= 100_000) large.push([size, name.slice(0, 100).replace(/\s+/g, ' ')]);
    else add(byPattern, name.length > 200 ? '(over 200 characters)' : JSON.stringify(pattern(name)), size);
  }
  edge += edgeCount;
}
const mb = (b) => (b / 1e6).toFixed(2).padStart(7);
const top = (title, m) => {
  console.log(`\n${title} (MB, count)`);
  for (const [k, a] of [...m].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, rows)) console.log(mb(a.bytes), String(a.n).padStart(8), k);
};
console.log(`self size ${mb(total)} MB over ${nodes.length / nf} nodes`);
top('by kind', byKind);
top('objects by constructor{properties}', byShape);
top('strings under 100 KB by pattern', byPattern);
large.sort((a, b) => b[0] - a[0]);
console.log(`\nstrings of 100 KB or more: ${large.length}, ${mb(large.reduce((s, l) => s + l[0], 0))} MB`);
for (const [size, head] of large.slice(0, rows)) console.log(mb(size), head);
