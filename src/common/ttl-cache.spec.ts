import { TtlCache } from './ttl-cache';

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

  it('holds at most maxEntries, dropping the oldest', () => {
    const cache = new TtlCache<number, number>(60_000, 3);
    for (let i = 0; i < 5; i++) cache.set(i, i * 10);
    expect(cache.size).toBe(3);
    expect([0, 1, 2, 3, 4].map((k) => cache.get(k))).toEqual([undefined, undefined, 20, 30, 40]);
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
