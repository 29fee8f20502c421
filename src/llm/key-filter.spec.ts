import { randomUUID } from 'node:crypto';
import { KeyFilter } from './key-filter';

describe('KeyFilter', () => {
  const tenants = [randomUUID(), randomUUID(), randomUUID()];
  const key = (i: number) => `${i.toString(16).padStart(8, '0')}-answer`;

  it('never forgets a pair it was given, and says "maybe" of about 1% of the others at capacity', () => {
    const f = new KeyFilter(200_000);
    for (let i = 0; i < 200_000; i++) f.add(tenants[i % 3], key(i));
    let forgotten = 0;
    for (let i = 0; i < 200_000; i++) if (!f.mayHold(tenants[i % 3], key(i))) forgotten++;
    expect(forgotten).toBe(0);
    let maybe = 0;
    for (let i = 200_000; i < 300_000; i++) if (f.mayHold(tenants[i % 3], key(i))) maybe++;
    expect(maybe / 100_000).toBeLessThan(0.02);
    expect(f.full).toBe(false);
    // Every pair counted but the few whose bits were all set already (false positives while filling).
    expect(f.count).toBeLessThanOrEqual(200_000);
    expect(f.count).toBeGreaterThan(199_000);
    // Full once more different pairs than its capacity went in.
    let more = 0;
    while (!f.full) f.add(tenants[0], `more-${more++}`);
    expect(f.count).toBe(200_001);
    expect(more).toBeLessThan(2_000);
  });

  it('counts a pair added again once (own stores are added at once, then read back from the table)', () => {
    const f = new KeyFilter(10);
    f.add(tenants[0], key(1));
    f.add(tenants[0], key(1));
    f.add(tenants[1], key(1));
    expect(f.count).toBe(2);
    expect(f.mayHold(tenants[0], key(1))).toBe(true);
  });

  it("keeps one tenant's key apart from another's (and from a split of the same text)", () => {
    const f = new KeyFilter(1_000);
    for (let i = 0; i < 1_000; i++) f.add(tenants[0], key(i));
    let crossed = 0;
    for (let i = 0; i < 1_000; i++) if (f.mayHold(tenants[1], key(i))) crossed++;
    expect(crossed).toBeLessThan(20);
    const g = new KeyFilter(10);
    g.add('ab', 'c');
    expect(g.mayHold('ab', 'c')).toBe(true);
    expect(g.mayHold('a', 'bc')).toBe(false);
  });

  it('takes at least 128 KiB, and 10 bits a pair past that', () => {
    expect(new KeyFilter(0).bytes).toBe(2 ** 17);
    expect(new KeyFilter(10_000_000).bytes).toBe(12_500_000);
  });
});
