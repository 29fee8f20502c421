import { SWEEP_EVERY_MS, TtlCache, keepSweeping, sweepExpiredCaches } from './ttl-cache';

describe('TtlCache', () => {
  afterEach(() => jest.useRealTimers());

  it('serves an entry until its TTL has passed, then loads again', async () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const cache = new TtlCache<string, number>(5_000);
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.getOrLoad('a', load)).toBe(1);
    jest.setSystemTime(1_004_999);
    expect(await cache.getOrLoad('a', load)).toBe(1);
    jest.setSystemTime(1_005_000);
    expect(cache.get('a')).toBeUndefined();
    expect(await cache.getOrLoad('a', load)).toBe(2);
    expect(loads).toBe(2);
  });

  it('forgets what is deleted, one key or every matching value', () => {
    const cache = new TtlCache<string, { keyId: string }>(60_000);
    cache.set('h1', { keyId: 'k1' });
    cache.set('h2', { keyId: 'k1' });
    cache.set('h3', { keyId: 'k2' });
    cache.deleteWhere((v) => v.keyId === 'k1');
    expect([cache.get('h1'), cache.get('h2'), cache.get('h3')]).toEqual([undefined, undefined, { keyId: 'k2' }]);
    cache.delete('h3');
    expect(cache.get('h3')).toBeUndefined();
  });

  it('holds at most maxEntries, dropping the oldest not used since', () => {
    const cache = new TtlCache<number, number>(60_000, 3);
    for (let i = 0; i < 5; i++) cache.set(i, i * 10);
    expect(cache.size).toBe(3);
    expect([0, 1, 2, 3, 4].map((k) => cache.get(k))).toEqual([undefined, undefined, 20, 30, 40]);
  });

  it('never drops an entry that is read between stores, however many other keys pass through', () => {
    const cache = new TtlCache<string, number>(60_000, 3);
    cache.set('hot', 1);
    for (let i = 0; i < 1_000; i++) {
      cache.set(`cold-${i}`, i);
      expect(cache.get('hot')).toBe(1);
    }
    expect(cache.size).toBe(3);
    // Storing a key again also makes it the most recently used.
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('a', 10);
    cache.set('c', 3);
    expect([cache.get('hot'), cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([undefined, 10, 2, 3]);
  });

  it('evicts through one kept iterator, not a new one a store (each would walk the deleted slots at the front of the table)', () => {
    const n = 1_000;
    const full = new TtlCache<number, number>(60_000, n);
    for (let i = 0; i < n; i++) full.set(-1 - i, i);
    const iterators = [jest.spyOn(Map.prototype, 'keys'), jest.spyOn(Map.prototype, 'entries')];
    try {
      for (let i = 0; i < n; i++) {
        full.set(i, i); // every store evicts one
        full.get(i - 1);
      }
      expect(iterators.reduce((k, s) => k + s.mock.calls.length, 0)).toBeLessThanOrEqual(1);
    } finally {
      for (const s of iterators) s.mockRestore();
    }
    expect(full.size).toBe(n);
    expect(full.get(-1)).toBeUndefined();
    expect(full.get(n - 1)).toBe(n - 1);
    expect(full.get(n - 2)).toBe(n - 2); // read after its store: kept
  });

  it('keeps entries with an infinite TTL until they are evicted, and refuses a bound that is not one', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const cache = new TtlCache<string, number>(Number.POSITIVE_INFINITY, 2);
    cache.set('a', 1);
    jest.setSystemTime(1_000_000 + 10 * 365 * 86_400_000);
    expect(cache.get('a')).toBe(1);
    cache.set('b', 2);
    cache.set('c', 3); // a was read since it was stored: b goes instead
    expect(cache.get('b')).toBeUndefined();
    cache.set('d', 4); // a has been passed over once since: now it goes
    expect(cache.get('a')).toBeUndefined();
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => new TtlCache(1_000, bad)).toThrow(RangeError);
  });

  it('drops an expired entry when it is read, so it neither answers nor takes room', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const cache = new TtlCache<string, number>(1_000, 10);
    cache.set('a', 1);
    jest.setSystemTime(1_001_000);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('sweeps expired entries that are never read again, a chunk at a time, keeping the fresh ones', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const cache = new TtlCache<string, number>(1_000, 100);
    for (let i = 0; i < 10; i++) cache.set(`old-${i}`, i);
    jest.setSystemTime(1_000_600);
    for (let i = 0; i < 5; i++) cache.set(`new-${i}`, i);
    cache.set('old-3', 33); // stored again: fresh until 1_001_600
    jest.setSystemTime(1_001_000);
    // At most 4 looked at a sweep, each going on where the last stopped.
    const dropped = [cache.sweepExpired(4), cache.sweepExpired(4), cache.sweepExpired(4), cache.sweepExpired(4), cache.sweepExpired(4)];
    expect(dropped).toEqual([3, 4, 2, 0, 0]); // old-0…3 (old-3 fresh), old-4…7, old-8, old-9 and two new, the rest
    expect(cache.size).toBe(6);
    expect(cache.get('old-3')).toBe(33);
    expect([0, 1, 2, 3, 4].map((i) => cache.get(`new-${i}`))).toEqual([0, 1, 2, 3, 4]);
    expect(cache.get('old-0')).toBeUndefined();
  });

  it('keeps an entry stored with its own TTL that long, even in a cache whose TTL is infinite, and sweeps it after', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const cache = new TtlCache<string, number>(Number.POSITIVE_INFINITY, 10);
    cache.set('bucket', 1, 3_000);
    cache.set('forever', 2);
    jest.setSystemTime(1_002_000);
    cache.set('bucket', 3, 3_000); // used again: three seconds from now
    jest.setSystemTime(1_004_999);
    expect(cache.get('bucket')).toBe(3);
    jest.setSystemTime(1_005_000);
    expect(cache.sweepExpired(10)).toBe(1);
    expect([cache.get('bucket'), cache.get('forever'), cache.size]).toEqual([undefined, 2, 1]);
  });

  it('is swept by a timer while an app holds it, with no read: the entries of callers that never come back go', async () => {
    const release = keepSweeping();
    const cache = new TtlCache<number, { tenant: number }>(20, 10_000);
    const forever = new TtlCache<number, number>(Number.POSITIVE_INFINITY, 10_000);
    for (let i = 0; i < 5_000; i++) {
      cache.set(i, { tenant: i });
      forever.set(i, i);
    }
    const deadline = Date.now() + 5 * SWEEP_EVERY_MS;
    while (cache.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(cache.size).toBe(0);
    expect(forever.size).toBe(5_000); // nothing of an infinite TTL expires
    // Called directly as well (what the timer runs): nothing left to drop.
    expect(sweepExpiredCaches()).toBe(0);
    release();
  });

  it('stops sweeping when the last holder lets go (a timer left running kept every cache it swept)', async () => {
    const [first, second] = [keepSweeping(), keepSweeping()];
    const cache = new TtlCache<number, number>(20, 100);
    first();
    first(); // twice is once
    cache.set(1, 1);
    await waitUntil(() => cache.size === 0); // still swept: the second holds it
    second();
    cache.set(2, 2);
    await new Promise((r) => setTimeout(r, 3 * SWEEP_EVERY_MS));
    expect(cache.size).toBe(1); // expired, but no timer swept it
    expect(sweepExpiredCaches()).toBe(1);
  });

  it('caches nothing with a TTL of 0', async () => {
    const cache = new TtlCache<string, number>(0);
    let loads = 0;
    await cache.getOrLoad('a', async () => ++loads);
    await cache.getOrLoad('a', async () => ++loads);
    expect(loads).toBe(2);
    expect(cache.size).toBe(0);
  });
});

describe('TtlCache.clear', () => {
  it('drops every entry, and a value loaded before it is not stored after it', async () => {
    const cache = new TtlCache<string, number>(60_000);
    cache.set('a', 1);
    cache.set('b', 2);
    let finish: (n: number) => void = () => undefined;
    const loading = cache.getOrLoad('c', () => new Promise<number>((r) => (finish = r)));
    cache.clear();
    expect([cache.get('a'), cache.get('b'), cache.size]).toEqual([undefined, undefined, 0]);
    finish(3);
    expect(await loading).toBe(3);
    expect(cache.get('c')).toBeUndefined();
  });
});

async function waitUntil(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5 * SWEEP_EVERY_MS;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(done()).toBe(true);
}
