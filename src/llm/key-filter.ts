/**
 * A Bloom filter of (tenant, key) pairs: `mayHold` answers false only for a pair never added, and
 * true for about 1% of the pairs never added (10 bits and 7 probes a pair at capacity). The answer
 * cache's index (cache-index.ts) keeps one to skip the database lookup of a key no instance stored.
 *
 * Sized once, for `capacity` pairs: past it, the false positives grow (`full` says so) and the
 * owner builds a bigger one. Nothing can be taken out; a rebuild forgets what is gone.
 */
const BITS_PER_KEY = 10;
const PROBES = 7;
/** never smaller than this many bits (128 KiB): small enough to keep, big enough to rarely rebuild */
const MIN_BITS = 2 ** 20;

export class KeyFilter {
  private readonly words: Uint32Array;
  private readonly bits: number;
  private added = 0;

  constructor(readonly capacity: number) {
    this.bits = Math.max(MIN_BITS, Math.ceil((Math.max(1, capacity) * BITS_PER_KEY) / 32) * 32);
    this.words = new Uint32Array(this.bits / 32);
  }

  /**
   * How many different pairs were added. A pair added again does not count: this instance adds its
   * own stores at once and reads them back from the table later. (Nor does a new pair whose bits
   * were all set already, a false positive: about 1% at capacity.)
   */
  get count(): number {
    return this.added;
  }

  /** More pairs than it was sized for: false positives above the 1% it was built for. */
  get full(): boolean {
    return this.added > this.capacity;
  }

  /** Bytes the filter holds. */
  get bytes(): number {
    return this.words.byteLength;
  }

  add(tenantId: string, key: string): void {
    if (this.probe(tenantId, key, true)) this.added++;
  }

  mayHold(tenantId: string, key: string): boolean {
    return !this.probe(tenantId, key, false);
  }

  /** Whether any of the pair's bits was clear; with `set`, sets them all. */
  private probe(tenantId: string, key: string, set: boolean): boolean {
    const h1 = hashPair(tenantId, key, 0x9747b28c);
    const h2 = hashPair(tenantId, key, 0x5bd1e995) | 1;
    let clear = false;
    for (let i = 0, bit = h1; i < PROBES; i++, bit = (bit + h2) >>> 0) {
      const at = bit % this.bits;
      const mask = 1 << (at & 31);
      if ((this.words[at >>> 5] & mask) === 0) {
        if (!set) return true;
        clear = true;
        this.words[at >>> 5] |= mask;
      }
    }
    return clear;
  }
}

/**
 * A 32-bit hash of `a`, a separator and `b` (FNV-1a over the UTF-16 units, then murmur3's
 * finalizer so that every input bit moves every output bit), without building the joined string.
 * FNV's multiply is written as its shifts and adds: Math.imul is slow under jest's sandbox.
 */
function hashPair(a: string, b: string, seed: number): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < a.length; i++) h = fnvStep(h, a.charCodeAt(i));
  h = fnvStep(h, 0x3a); // ':' between them; a tenant id is a UUID, so no pair reads as another
  for (let i = 0; i < b.length; i++) h = fnvStep(h, b.charCodeAt(i));
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** One FNV-1a step: xor the unit in, multiply by the 32-bit FNV prime 16777619 (2^24 + 2^8 + 0x93). */
function fnvStep(h: number, unit: number): number {
  h ^= unit;
  return (h + (h << 1) + (h << 4) + (h << 7) + (h << 8) + (h << 24)) >>> 0;
}
