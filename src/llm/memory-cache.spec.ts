import { MemoryCache } from './memory-cache';

describe('the in-process answer cache', () => {
  let clock = 0;
  const cache = () => new MemoryCache<string>({ maxBytes: 100, maxBytesPerTenant: 40, now: () => clock });
  beforeEach(() => (clock = 1_000));

  it('answers what it holds, per tenant, until it expires', () => {
    const c = cache();
    c.set('t1', 'k', 'answer', 10, 5_000);
    expect(c.get('t1', 'k')).toBe('answer');
    expect(c.get('t2', 'k')).toBeUndefined(); // another tenant's same key is not this answer
    clock += 5_000;
    expect(c.get('t1', 'k')).toBeUndefined();
    expect(c.size()).toEqual({ entries: 0, bytes: 0 });
  });

  it("keeps each tenant within its share: a tenant's new answers push out its own oldest, not another tenant's", () => {
    const c = cache();
    c.set('quiet', 'q', 'q', 30, 60_000);
    for (let i = 0; i < 10; i++) c.set('loud', `k${i}`, 'v', 10, 60_000);
    expect(c.size('loud')).toEqual({ entries: 4, bytes: 40 });
    expect(c.get('quiet', 'q')).toBe('q');
    expect(c.get('loud', 'k9')).toBe('v');
    expect(c.get('loud', 'k5')).toBeUndefined();
  });

  it('evicts the least recently used across tenants when the whole is full, and refuses what cannot fit', () => {
    const c = cache();
    c.set('a', '1', 'a1', 40, 60_000);
    c.set('b', '1', 'b1', 40, 60_000);
    c.get('a', '1'); // a1 is now the most recently used
    c.set('c', '1', 'c1', 30, 60_000); // 110 > 100: b1 (least recently used) goes
    expect(c.get('b', '1')).toBeUndefined();
    expect(c.get('a', '1')).toBe('a1');
    expect(c.get('c', '1')).toBe('c1');
    expect(c.size()).toEqual({ entries: 2, bytes: 70 });
    c.set('a', 'huge', 'x', 41, 60_000); // over a tenant's share: not kept, and nothing else is lost
    expect(c.get('a', 'huge')).toBeUndefined();
    expect(c.size()).toEqual({ entries: 2, bytes: 70 });
  });

  it('replaces an entry and forgets a deleted one', () => {
    const c = cache();
    c.set('a', 'k', 'old', 10, 60_000);
    c.set('a', 'k', 'new', 20, 60_000);
    expect(c.get('a', 'k')).toBe('new');
    expect(c.size('a')).toEqual({ entries: 1, bytes: 20 });
    c.delete('a', 'k');
    expect(c.get('a', 'k')).toBeUndefined();
    expect(c.size()).toEqual({ entries: 0, bytes: 0 });
  });
});
