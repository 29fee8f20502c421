/**
 * Why a long-lived Map whose keys come and go should not hold request objects (src/common/ttl-cache.ts,
 * src/common/keyed-batcher.ts):
 * one Map made at start (so it is in the old generation), one short-lived ~30 KB object a request
 * stored in it for 5 ms and deleted ("map"), against the same object held in a variable ("plain").
 * V8 rebuilds the Map's hash table as keys come and go and leaves the old tables linked, with their
 * entries, to the new ones: the objects survive the young-generation collections and are promoted.
 *
 *   node bench/probe-map-churn.js plain     # {"mode":"plain","promotedMB":0.1,…}
 *   node bench/probe-map-churn.js map       # {"mode":"map","promotedMB":124.6,…} (2026-12-01, this machine)
 */
const { spawnSync } = require('node:child_process');
const mode = process.argv[2] ?? 'map';
if (!process.execArgv.includes('--trace-gc-nvp')) {
  // Re-run itself under the GC trace and sum what the scavenges promoted.
  const run = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-nvp', __filename, mode], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const promoted = [...run.stdout.matchAll(/\bgc=s\b.*?\bpromoted=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  const markCompacts = [...run.stdout.matchAll(/\bgc=mc\b/g)].length;
  console.log(JSON.stringify({ mode, promotedMB: Math.round(promoted / 2 ** 20 * 10) / 10, markCompacts }));
  return;
}
const m = new Map();
let holder = null;
global.gc();
global.gc();
let i = 0;
const start = Date.now();
function request() {
  const payload = { parts: Array.from({ length: 1000 }, (_, k) => ({ k })) };
  const key = `k${i++}`;
  if (mode === 'map') m.set(key, payload);
  else holder = payload;
  setTimeout(() => (mode === 'map' ? m.delete(key) : (holder = null)), 5);
  if (Date.now() - start < 8000) setTimeout(request, 2);
}
request();
