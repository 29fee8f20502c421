import { TransientMap } from './transient-map';

describe('TransientMap', () => {
  it('answers like a Map, and empties the box of a deleted or replaced entry', () => {
    const m = new TransientMap<string, { payload: string }>();
    const first = { payload: 'a' };
    m.set('k', first);
    const box = (m as unknown as { boxes: Map<string, { value: unknown }> }).boxes.get('k')!;
    expect([m.get('k'), m.has('k'), m.size]).toEqual([first, true, 1]);
    const second = { payload: 'b' };
    m.set('k', second);
    expect(box.value).toBe(second); // the same box, now holding only the new value
    expect(m.delete('k')).toBe(true);
    expect(box.value).toBeUndefined(); // a hash table V8 left behind that still points at the box holds nothing
    expect([m.get('k'), m.has('k'), m.size, m.delete('k')]).toEqual([undefined, false, 0, false]);
  });
});
