import { BatchLoader, KeyedBatcher } from './keyed-batcher';

describe('KeyedBatcher: group commit per key, with no fixed window', () => {
  it('sends a lone item at once, and what arrives while a batch runs in the next one', async () => {
    const batches: Array<[string, number[]]> = [];
    let release: () => void = () => undefined;
    const b = new KeyedBatcher<number, number>(async (key, items) => {
      batches.push([key, items]);
      if (batches.length === 1) await new Promise<void>((r) => (release = r));
      return items.map((i) => i * 10);
    });
    const first = b.submit('a', 1);
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([['a', [1]]]); // alone: no wait for company
    const more = [b.submit('a', 2), b.submit('a', 3), b.submit('a', 4)];
    const other = b.submit('b', 9); // another key does not wait for this one
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([
      ['a', [1]],
      ['b', [9]],
    ]);
    release();
    expect(await first).toBe(10);
    expect(await Promise.all(more)).toEqual([20, 30, 40]);
    expect(await other).toBe(90);
    expect(batches[2]).toEqual(['a', [2, 3, 4]]); // one statement for the three
  });

  it('keeps batches within the maximum and answers every item', async () => {
    const sizes: number[] = [];
    const b = new KeyedBatcher<number, number>(async (_k, items) => {
      sizes.push(items.length);
      return items;
    }, 3);
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit('t', i)));
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3);
    expect(sizes.reduce((a, n) => a + n, 0)).toBe(10);
  });

  it("fails every item of a batch whose statement fails, and the next batch runs", async () => {
    let calls = 0;
    const b = new KeyedBatcher<string, string>(async (_k, items) => {
      if (++calls === 1) throw new Error('database down');
      return items.map((i) => i.toUpperCase());
    });
    const failed = [b.submit('t', 'x'), b.submit('t', 'y')];
    await expect(Promise.all(failed)).rejects.toThrow('database down');
    await Promise.allSettled(failed);
    expect(await b.submit('t', 'z')).toBe('Z');
    await b.drain();
  });
});

describe('BatchLoader: reads of one moment in one statement', () => {
  it('reads the ids asked for together once each, answers undefined for one not found, and a later read reads again', async () => {
    const reads: string[][] = [];
    const rows = new Map([
      ['a', 1],
      ['b', 2],
    ]);
    const loader = new BatchLoader<number>(async (ids) => {
      reads.push(ids);
      return new Map(ids.filter((id) => rows.has(id)).map((id) => [id, rows.get(id)!]));
    });
    expect(await Promise.all([loader.get('a'), loader.get('b'), loader.get('a'), loader.get('zz')])).toEqual([1, 2, 1, undefined]);
    expect(reads).toEqual([['a', 'b', 'zz']]);
    rows.set('a', 10);
    expect(await loader.get('a')).toBe(10); // not a cache: what was written since is read
    expect(reads).toHaveLength(2);
  });

  it('fails every read of a statement that fails, and reads again after', async () => {
    let fail = true;
    const loader = new BatchLoader<number>(async (ids) => {
      if (fail) throw new Error('down');
      return new Map(ids.map((id) => [id, 1]));
    });
    await expect(Promise.all([loader.get('a'), loader.get('b')])).rejects.toThrow('down');
    fail = false;
    expect(await loader.get('a')).toBe(1);
  });
});
