import { OldestFirst } from '../common/oldest-first';

/**
 * A bounded in-process tier in front of the PostgreSQL answer cache: the answers this instance
 * read from the table lately (ResponseCache takes an answer on its first read, not its store),
 * answered again without a database round trip. Bounded twice: by bytes in all
 * (LLM_CACHE_MEMORY_MB), and by bytes per tenant (LLM_CACHE_MEMORY_TENANT_MB), so one tenant's
 * traffic cannot push every other tenant's answers out. An entry lives no longer than its database
 * row.
 *
 * What goes first is chosen by "second chance" (the clock algorithm, close to least recently used,
 * as in TtlCache): the oldest entry goes unless it was read or stored again since it was last
 * passed over; then it goes to the back, unmarked, and the next oldest is considered. A hit only
 * marks its entry. It must not move the entry in the Maps: V8 leaves a deleted key's slot in its
 * hash bucket's chain until the table is rebuilt, so deleting and re-adding one hot key on every
 * hit grows that key's chain, and each lookup walks it: 28 µs a hit in a Map of 10,000 entries and
 * 84 µs of 60,000, where a hit that marks its entry takes under 0.1 µs (`node bench/probe-map-holes.js`,
 * 2026-12-01; `get` itself, the id built and looked up, about 0.6 µs at any size).
 */
export interface MemoryCacheOptions {
  maxBytes: number;
  maxBytesPerTenant: number;
  now?: () => number;
}

interface Entry<V> {
  tenantId: string;
  value: V;
  bytes: number;
  expiresAt: number;
  /** read or stored again since eviction last passed over it */
  used: boolean;
}

/** One tenant's keys, oldest first, and its bytes. */
interface TenantEntries {
  keys: Set<string>;
  oldest: OldestFirst<string>;
  bytes: number;
}

export class MemoryCache<V> {
  /** every entry, oldest first (insertion order, and the back for one given a second chance) */
  private readonly entries = new Map<string, Entry<V>>();
  private readonly oldest = new OldestFirst(this.entries);
  /** each tenant's keys in the same order, and its bytes */
  private readonly tenants = new Map<string, TenantEntries>();
  private bytes = 0;
  private readonly now: () => number;

  constructor(private readonly opts: MemoryCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  private id(tenantId: string, key: string): string {
    return `${tenantId}\u0000${key}`;
  }

  get(tenantId: string, key: string): V | undefined {
    const id = this.id(tenantId, key);
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (e.expiresAt <= this.now()) {
      this.remove(id);
      return undefined;
    }
    e.used = true;
    return e.value;
  }

  /** Keeps `value` (of about `bytes`) until `ttlMs` from now; one bigger than a tenant's share is not kept. */
  set(tenantId: string, key: string, value: V, bytes: number, ttlMs: number): void {
    const id = this.id(tenantId, key);
    if (bytes > this.opts.maxBytesPerTenant || bytes > this.opts.maxBytes || ttlMs <= 0) {
      this.remove(id);
      return;
    }
    const old = this.entries.get(id);
    if (old) {
      // Stored again: changed in place and marked, not moved (see the class comment); if it grew,
      // others make room, and it is passed over once like any entry read lately.
      const t = this.tenants.get(tenantId)!;
      const grew = bytes - old.bytes;
      Object.assign(old, { value, bytes, expiresAt: this.now() + ttlMs, used: true });
      t.bytes += grew;
      this.bytes += grew;
      this.makeRoom(t, 0);
      return;
    }
    let t = this.tenants.get(tenantId);
    if (!t) {
      const keys = new Set<string>();
      this.tenants.set(tenantId, (t = { keys, oldest: new OldestFirst(keys), bytes: 0 }));
    }
    this.makeRoom(t, bytes);
    // (removing the tenant's last entry forgets the tenant: take it again)
    if (!this.tenants.has(tenantId)) this.tenants.set(tenantId, t);
    this.entries.set(id, { tenantId, value, bytes, expiresAt: this.now() + ttlMs, used: false });
    t.keys.add(id);
    t.bytes += bytes;
    this.bytes += bytes;
  }

  /** Evicts until `more` bytes fit in the tenant's share and in the whole. */
  private makeRoom(t: TenantEntries, more: number): void {
    while (t.bytes + more > this.opts.maxBytesPerTenant) this.evictFrom(t.oldest);
    while (this.bytes + more > this.opts.maxBytes) this.evictFrom(this.oldest);
  }

  /**
   * Removes the oldest entry of an order (all entries, or one tenant's) not used since it was last
   * passed over; the used ones it passes go to the back of both orders, unmarked. At most one pass:
   * each entry passed over is unmarked.
   */
  private evictFrom(order: OldestFirst<string>): void {
    const now = this.now();
    for (;;) {
      const id = order.next()!;
      const e = this.entries.get(id)!;
      if (!e.used || e.expiresAt <= now) return this.remove(id);
      e.used = false;
      this.entries.delete(id);
      this.entries.set(id, e);
      const keys = this.tenants.get(e.tenantId)!.keys;
      keys.delete(id);
      keys.add(id);
    }
  }

  delete(tenantId: string, key: string): void {
    this.remove(this.id(tenantId, key));
  }

  /** Forgets every entry (what an instance does when it may have missed an erasure). */
  clear(): void {
    this.entries.clear();
    this.tenants.clear();
    this.bytes = 0;
  }

  private remove(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    const t = this.tenants.get(e.tenantId)!;
    t.keys.delete(id);
    t.bytes -= e.bytes;
    if (t.keys.size === 0) this.tenants.delete(e.tenantId);
  }

  /** What is held: entries and bytes, in all and for one tenant. */
  size(tenantId?: string): { entries: number; bytes: number } {
    if (tenantId === undefined) return { entries: this.entries.size, bytes: this.bytes };
    const t = this.tenants.get(tenantId);
    return { entries: t?.keys.size ?? 0, bytes: t?.bytes ?? 0 };
  }
}
