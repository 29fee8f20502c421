/**
 * A bounded in-process tier in front of the PostgreSQL answer cache: the answers this instance
 * served or stored lately, answered without a database round trip. Bounded twice: by bytes in all
 * (LLM_CACHE_MEMORY_MB), and by bytes per tenant (LLM_CACHE_MEMORY_TENANT_MB), so one tenant's
 * traffic cannot push every other tenant's answers out. Least recently used goes first. An entry
 * lives no longer than its database row.
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
}

export class MemoryCache<V> {
  /** every entry, least recently used first (a Map keeps insertion order; a hit moves it to the end) */
  private readonly entries = new Map<string, Entry<V>>();
  /** each tenant's keys, least recently used first, and its bytes */
  private readonly tenants = new Map<string, { keys: Set<string>; bytes: number }>();
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
    // most recently used: to the end of both orders
    this.entries.delete(id);
    this.entries.set(id, e);
    const t = this.tenants.get(tenantId)!;
    t.keys.delete(id);
    t.keys.add(id);
    return e.value;
  }

  /** Keeps `value` (of about `bytes`) until `ttlMs` from now; one bigger than a tenant's share is not kept. */
  set(tenantId: string, key: string, value: V, bytes: number, ttlMs: number): void {
    const id = this.id(tenantId, key);
    this.remove(id);
    if (bytes > this.opts.maxBytesPerTenant || bytes > this.opts.maxBytes || ttlMs <= 0) return;
    let t = this.tenants.get(tenantId);
    if (!t) this.tenants.set(tenantId, (t = { keys: new Set(), bytes: 0 }));
    while (t.bytes + bytes > this.opts.maxBytesPerTenant) this.remove(t.keys.values().next().value as string);
    while (this.bytes + bytes > this.opts.maxBytes) this.remove(this.entries.keys().next().value as string);
    // (removing the tenant's last entry forgets the tenant: take it again)
    if (!this.tenants.has(tenantId)) this.tenants.set(tenantId, t);
    this.entries.set(id, { tenantId, value, bytes, expiresAt: this.now() + ttlMs });
    t.keys.add(id);
    t.bytes += bytes;
    this.bytes += bytes;
  }

  delete(tenantId: string, key: string): void {
    this.remove(this.id(tenantId, key));
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
