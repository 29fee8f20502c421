import { OldestFirst } from './oldest-first';

describe('OldestFirst', () => {
  it('hands out the oldest key while the oldest are deleted or moved to the back, across emptying and refilling', () => {
    const m = new Map<string, number>([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    const o = new OldestFirst(m);
    expect(o.next()).toBe('a');
    m.delete('a');
    expect(o.next()).toBe('b');
    m.delete('b');
    m.set('b', 2); // a second chance: to the back
    m.set('d', 4);
    expect(o.next()).toBe('c');
    m.delete('c');
    expect(o.next()).toBe('b');
    m.delete('b');
    m.delete('d'); // deleted elsewhere, not through it
    expect(o.next()).toBeUndefined();
    m.set('e', 5); // refilled after it found none
    expect(o.next()).toBe('e');
    m.delete('e');
    expect(o.next()).toBeUndefined();
    m.set('f', 6);
    m.set('g', 7);
    expect(o.next()).toBe('f');
    m.clear(); // (TtlCache.clear) what comes after is the oldest
    m.set('h', 8);
    expect(o.next()).toBe('h');
  });

  it('works on a Set, and asks the collection for one iterator while it is not exhausted', () => {
    const s = new Set(Array.from({ length: 1_000 }, (_, i) => i));
    const o = new OldestFirst(s);
    const iterators = jest.spyOn(s, 'keys');
    for (let i = 0; i < 1_000; i++) {
      const k = o.next()!;
      s.delete(k);
      s.add(k + 1_000); // a full queue: one out, one in
      expect(k).toBe(i);
    }
    expect(iterators).toHaveBeenCalledTimes(1);
  });
});
