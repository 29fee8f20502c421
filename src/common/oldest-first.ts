/**
 * The oldest key of a Map or Set used as a queue: keys are added at the back, and each key this
 * hands out is then deleted, or deleted and added again at the back (a second chance), before the
 * next is asked for. It keeps one iterator instead of making a new one a call: V8 leaves a deleted
 * key's slot in the table until the table is rebuilt, and a new iterator walks every such slot at
 * the front, so evicting the oldest through `keys().next()` costs one step for each key evicted
 * since the last rebuild. A kept iterator passes each slot once: with a full Map of 10,000 keys,
 * one out and one in took 8.7 µs, 2 µs with a kept iterator; of 60,000, 25 µs and 4 µs
 * (`node bench/probe-map-holes.js`, 2026-12-01).
 */
export class OldestFirst<K> {
  private cursor: Iterator<K> | null = null;

  constructor(private readonly keys: { keys(): Iterator<K>; readonly size: number }) {}

  /** The oldest key; undefined when there is none. */
  next(): K | undefined {
    if (this.keys.size === 0) return undefined;
    for (let fresh = false; ; fresh = true) {
      this.cursor ??= this.keys.keys();
      const r = this.cursor.next();
      if (!r.done) return r.value;
      // At the end (everything it passed was deleted or moved behind it): start again from the front.
      this.cursor = null;
      if (fresh) return undefined;
    }
  }
}
