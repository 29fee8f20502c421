/**
 * What one hot key costs in a big Map when each hit deletes and re-adds it (a least-recently-used
 * order kept by insertion order) against a hit that only marks its entry: V8 leaves a deleted key's
 * slot in its bucket's chain until the table is rebuilt, so the hot key's chain grows with every
 * hit and each lookup walks it. Then src/llm/memory-cache.ts itself (the build), the same hot key
 * read with N answers held. Nanoseconds a hit, at each N.
 *
 *   node bench/probe-map-holes.js            (needs the build for the last column: npm run build)
 */
const path = require('node:path');

const HITS = 200_000;
const key = (i) => `${'t'.repeat(36)}\u0000${i.toString(16).padStart(64, '0')}`;

function perHit(fn) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < HITS; i++) fn();
  return Math.round(Number(process.hrtime.bigint() - t0) / HITS);
}

function moveOnHit(n) {
  const m = new Map();
  for (let i = 0; i < n; i++) m.set(key(i), { i, used: false });
  const hot = key(n >> 1);
  return perHit(() => {
    const e = m.get(hot);
    m.delete(hot);
    m.set(hot, e);
  });
}

function markOnHit(n) {
  const m = new Map();
  for (let i = 0; i < n; i++) m.set(key(i), { i, used: false });
  const hot = key(n >> 1);
  return perHit(() => {
    m.get(hot).used = true;
  });
}

function memoryCache(n) {
  let MemoryCache;
  try {
    ({ MemoryCache } = require(path.join(__dirname, '../dist/src/llm/memory-cache.js')));
  } catch {
    return null;
  }
  const c = new MemoryCache({ maxBytes: 2 ** 40, maxBytesPerTenant: 2 ** 40 });
  for (let i = 0; i < n; i++) c.set('t'.repeat(36), i.toString(16).padStart(64, '0'), { i }, 100, 3_600_000);
  const hot = (n >> 1).toString(16).padStart(64, '0');
  return perHit(() => c.get('t'.repeat(36), hot));
}

function queue(n, kept) {
  const m = new Map();
  let k = 0;
  for (; k < n; k++) m.set(key(k), k);
  const it = kept ? m.keys() : null;
  return perHit(() => {
    m.delete(kept ? it.next().value : m.keys().next().value);
    m.set(key(k), k++);
  });
}

const rows = [10, 1_000, 10_000, 30_000, 60_000, 100_000].map((n) => ({ entries: n, moveOnHitNs: moveOnHit(n), markOnHitNs: markOnHit(n), memoryCacheGetNs: memoryCache(n), evictNewIteratorNs: queue(n, false), evictKeptIteratorNs: queue(n, true) }));
console.log(JSON.stringify({ node: process.version, hits: HITS, rows }, null, 2));
