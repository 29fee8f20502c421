import { clearInterval, setInterval } from 'node:timers';
import { OldestFirst } from './oldest-first';

/** How often every cache is swept of expired entries, and at most how many entries of each a sweep looks at. */
export const SWEEP_EVERY_MS = 1_000;
export const SWEEP_CHUNK = 2_000;

/** The caches that have stored an entry that expires (weakly: a cache no one holds goes, with its entries). */
const sweepable = new Set<WeakRef<TtlCache<unknown, unknown>>>();
let sweepTimer: NodeJS.Timeout | null = null;

/**
 * Drops expired entries from every cache, at most `chunk` looked at in each (each cache goes on
 * where its last sweep stopped). Run by a timer every SWEEP_EVERY_MS while an app holds it
 * (keepSweeping), off the request path (unref'd: it never keeps a process alive); exported for tests.
 */
export function sweepExpiredCaches(chunk = SWEEP_CHUNK): number {
  let dropped = 0;
  for (const ref of sweepable) {
    const cache = ref.deref();
    if (cache) dropped += cache.sweepExpired(chunk);
    else sweepable.delete(ref);
  }
  return dropped;
}

let sweepHolders = 0;

/**
 * Sweeps every cache each SWEEP_EVERY_MS until the returned release is called (by every holder:
 * each app holds it from its start to its close, CacheSweep). The timer stops with the last app,
 * not when the caches are gone: a timer keeps what its callback reaches and the async context it was
 * made in (a test's hook, and the test's app with it), so the caches it waited to see go never went —
 * in the tests, each test file's whole app stayed in memory after the file ended.
 */
export function keepSweeping(): () => void {
  sweepHolders++;
  sweepTimer ??= setInterval(() => sweepExpiredCaches(), SWEEP_EVERY_MS).unref();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--sweepHolders > 0 || !sweepTimer) return;
    clearInterval(sweepTimer);
    sweepTimer = null;
  };
}

function register(cache: TtlCache<unknown, unknown>): void {
  sweepable.add(new WeakRef(cache));
}

/**
 * A small per-process cache whose entries expire a fixed time after they were stored. It holds at
 * most `maxEntries`; storing one more drops one by "second chance" (the clock algorithm, close to
 * least recently used): the oldest stored entry goes, unless it was read or stored again since it
 * was last passed over, in which case it goes to the back, unmarked, and the next oldest is
 * considered. So a hot entry is never the one dropped, and reading, storing and evicting are O(1)
 * (amortized; the oldest is found through one kept iterator, OldestFirst). A read only marks its
 * entry: the Map is not reordered on every hit, because V8 rebuilds a Map's hash table as keys are deleted and added, and in a long-lived Map the tables
 * left behind are promoted with what they held (bench/probe-map-churn.js) — a delete and re-insert per
 * read made a small table of garbage for the old generation on every cached lookup.
 * A TTL of 0 or less caches nothing; `Infinity` keeps entries until they are evicted or deleted
 * (values that never change). Callers invalidate what they change; other processes see a change
 * within the TTL.
 * An expired entry is dropped when its key is read, or by the sweep (sweepExpiredCaches, every
 * second, a chunk of each cache): without it the entries of tenants that called once and never
 * again stayed until `maxEntries` pushed them out — after 10,000 tenants' calls and 70 s of quiet,
 * a live heap of 63 MB against 49 MB with it and the rate buckets' own TTL (bench/probe-tail.ts,
 * WARM_TENANTS=10000 IDLE_S=70; BENCHMARKS.md, bench:peers' note).
 */
export class TtlCache<K, V> {
  private readonly entries = new Map<K, { value: V; until: number; used: boolean }>();
  /** the oldest entry, through one kept iterator (see OldestFirst) */
  private readonly oldest = new OldestFirst(this.entries);
  /** Bumped by every invalidation: a value loaded before one must not be stored after it. */
  private invalidations = 0;
  /** where the sweep goes on, round the entries (its own kept iterator: eviction's is `oldest`) */
  private readonly sweepFrom = new OldestFirst(this.entries);
  /** in the sweep's registry: from the first entry stored with a finite TTL (a cache of values that never change is never swept) */
  private inSweep = false;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer (got ${maxEntries})`);
  }

  /**
   * Drops the expired entries among the next `max` (from where the last sweep stopped, round to
   * the front; at most one pass); returns how many it dropped. Entries are in the order first stored, not of expiry,
   * so it looks at each rather than stopping at the first still fresh.
   */
  sweepExpired(max: number): number {
    const now = Date.now();
    let dropped = 0;
    for (let seen = 0, n = Math.min(max, this.entries.size); seen < n; seen++) {
      const key = this.sweepFrom.next()!;
      if (this.entries.get(key)!.until <= now) {
        this.entries.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    entry.used = true;
    return entry.value;
  }

  /** Stores `value` until `ttlMs` from now (the cache's TTL unless given for this entry). */
  set(key: K, value: V, ttlMs = this.ttlMs): void {
    if (ttlMs <= 0) return;
    const until = Date.now() + ttlMs;
    if (!this.inSweep && until !== Number.POSITIVE_INFINITY) {
      this.inSweep = true;
      register(this as TtlCache<unknown, unknown>);
    }
    const entry = this.entries.get(key);
    if (entry) {
      entry.value = value;
      entry.until = until;
      entry.used = true;
      return;
    }
    if (this.entries.size >= this.maxEntries) this.evictOne();
    this.entries.set(key, { value, until, used: false });
  }

  /** The oldest entry not used since it was last passed over; the used ones it passes go to the back, unmarked. */
  private evictOne(): void {
    for (;;) {
      const key = this.oldest.next()!;
      const entry = this.entries.get(key)!;
      this.entries.delete(key);
      if (!entry.used) return;
      entry.used = false;
      this.entries.set(key, entry);
    }
  }

  /**
   * The cached value, or what `load` returns — then cached, unless the cache was invalidated while
   * it loaded (the value may be older than the change that invalidated it: a revoked key, a setting).
   */
  async getOrLoad(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) return hit;
    const mark = this.invalidations;
    const value = await load();
    this.setIfUnchangedSince(mark, key, value);
    return value;
  }

  /** A mark to pass to setIfUnchangedSince, taken before loading a value. */
  get mark(): number {
    return this.invalidations;
  }

  /** Stores the value only if nothing was invalidated since `mark` was taken; says whether nothing was. */
  setIfUnchangedSince(mark: number, key: K, value: V): boolean {
    if (mark !== this.invalidations) return false;
    this.set(key, value);
    return true;
  }

  delete(key: K): void {
    this.invalidations++;
    this.entries.delete(key);
  }

  /** Drops every entry whose value matches (a revoked key cached under several hashes). */
  deleteWhere(matches: (value: V) => boolean): void {
    this.invalidations++;
    for (const [key, entry] of this.entries) if (matches(entry.value)) this.entries.delete(key);
  }

  /** Drops everything (the cluster bus reconnected: invalidations may have been missed). */
  clear(): void {
    this.invalidations++;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
