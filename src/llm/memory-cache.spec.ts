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

  it('gives an entry read since it was last passed over a second chance, in the tenant order as in the whole', () => {
    const c = cache();
    for (const k of ['k0', 'k1', 'k2', 'k3']) c.set('t', k, k, 10, 60_000);
    c.get('t', 'k0');
    c.set('t', 'k4', 'k4', 10, 60_000); // k0 was read: it goes to the back, k1 goes
    expect(c.get('t', 'k1')).toBeUndefined();
    expect(c.get('t', 'k0')).toBe('k0'); // (read again: marked again)
    c.set('t', 'k5', 'k5', 10, 60_000); // k2 (never read) goes, then k3
    c.set('t', 'k6', 'k6', 10, 60_000);
    expect([c.get('t', 'k2'), c.get('t', 'k3')]).toEqual([undefined, undefined]);
    expect(c.size('t')).toEqual({ entries: 4, bytes: 40 });
    expect(['k0', 'k4', 'k5', 'k6'].map((k) => c.get('t', k))).toEqual(['k0', 'k4', 'k5', 'k6']);
  });

  it('moves nothing on a hit or a second store of the same key (a hot key must not grow a hash chain)', () => {
    const c = cache();
    c.set('a', 'hot', 'v1', 10, 60_000);
    c.set('a', 'cold', 'c', 10, 60_000);
    const deletes = [jest.spyOn(Map.prototype, 'delete'), jest.spyOn(Set.prototype, 'delete')];
    try {
      for (let i = 0; i < 3; i++) expect(c.get('a', 'hot')).toBe('v1');
      c.set('a', 'hot', 'v2', 12, 60_000);
      for (const d of deletes) expect(d).not.toHaveBeenCalled();
    } finally {
      for (const d of deletes) d.mockRestore();
    }
    expect(c.get('a', 'hot')).toBe('v2');
    expect(c.size('a')).toEqual({ entries: 2, bytes: 22 });
    expect(c.size()).toEqual({ entries: 2, bytes: 22 });
  });

  it('makes room when an entry stored again grows: the others go, not the one just stored', () => {
    const c = cache();
    for (const k of ['k0', 'k1', 'k2']) c.set('t', k, k, 10, 60_000);
    c.set('t', 'k0', 'bigger', 25, 60_000); // 45 > 40: k1 goes (k0 is passed over, it was just stored)
    expect(c.get('t', 'k0')).toBe('bigger');
    expect(c.get('t', 'k1')).toBeUndefined();
    expect(c.get('t', 'k2')).toBe('k2');
    expect(c.size('t')).toEqual({ entries: 2, bytes: 35 });
    c.set('t', 'k0', 'too big', 41, 60_000); // over the share: not kept (and not left stale)
    expect(c.get('t', 'k0')).toBeUndefined();
    expect(c.size()).toEqual({ entries: 1, bytes: 10 });
  });

  it('evicts through one kept iterator per order, not a new one each time (each would walk the deleted slots at the front)', () => {
    const c = new MemoryCache<string>({ maxBytes: 1_000, maxBytesPerTenant: 500, now: () => clock });
    for (let i = 0; i < 100; i++) c.set(`t${i % 2}`, `k${i}`, 'v', 10, 60_000); // 50 a tenant: each tenant's share is full
    const iterators = [jest.spyOn(Map.prototype, 'keys'), jest.spyOn(Set.prototype, 'keys'), jest.spyOn(Set.prototype, 'values')];
    try {
      for (let i = 100; i < 300; i++) c.set(`t${i % 2}`, `k${i}`, 'v', 10, 60_000); // each evicts its tenant's oldest
      expect(iterators.reduce((n, s) => n + s.mock.calls.length, 0)).toBeLessThanOrEqual(2);
    } finally {
      for (const s of iterators) s.mockRestore();
    }
    expect(c.size()).toEqual({ entries: 100, bytes: 1_000 });
    // each tenant keeps its newest 50
    expect([c.get('t0', 'k200'), c.get('t0', 'k298'), c.get('t1', 'k201'), c.get('t1', 'k299')]).toEqual(['v', 'v', 'v', 'v']);
    expect([c.get('t0', 'k198'), c.get('t1', 'k199')]).toEqual([undefined, undefined]);
  });
});
