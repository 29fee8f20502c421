import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Logger } from '@nestjs/common';
import type { Nanos } from '../common/money';
import { loggableError } from '../common/error-rendering';
import type { BooksRepository } from './books.repository';
import type { LedgerEntry } from './ledger.service';

/** A call admitted on this instance's lease: its worst case, held in memory, not in the database. */
export interface LeaseTicket {
  tenantId: string;
  period: string;
  amount: Nanos;
}

export interface LeaseOptions {
  /** a lease lives this long without renewal (it is renewed every third of it) */
  ttlMs: number;
  /** the window whose admissions size the next slice */
  rateWindowMs: number;
  /** a group commit waits at most this long for company */
  flushMs: number;
  /** and writes at most this many calls in one statement */
  flushRows: number;
  /** an unused lease is given back after this long */
  idleMs: number;
}

interface Lease {
  tenantId: string;
  period: string;
  /** not promised to any call in flight */
  available: Nanos;
  /** what the database's lease row holds (available + in flight + settled but not yet written) */
  held: Nanos;
  /** the refill under way: what it took (0n: the budget had no room for the call that asked) */
  refill: Promise<Nanos> | null;
  /** the worst cases of the calls waiting for a refill */
  waiting: Nanos;
  /** what was admitted in the current rate window and in the one before (two counters, however many calls) */
  rate: { since: number; current: Nanos; previous: Nanos };
  lastUsed: number;
  /** no more admissions (the tenant was paused, its cap changed): what is left goes back */
  revoked: boolean;
}

interface Pending {
  entry: LedgerEntry & { period: string };
  /** the part of the call's admitted worst case it did not cost: back to `available` once written */
  unused: Nanos;
  resolve(v: { spent: Nanos; cap: Nanos }): void;
  reject(err: unknown): void;
}

/**
 * Budget leases and group commit (SPEC §5): admission and accounting of model calls that cost
 * microseconds, not round trips, without weakening the invariant spent + reserved ≤ cap.
 *
 * - An instance takes a slice of a tenant's free budget in one statement (BooksRepository.takeLease:
 *   counted in reserved_nanos, so every instance sees it) and admits calls against it in memory.
 *   A slice is sized from what the instance admitted for the tenant over the last few seconds
 *   (at least 8 calls' worth), never more than a quarter of what is free beyond the call, so
 *   instances share what is left; when the budget is nearly used up, each call takes exactly its need.
 * - Settlements are written together (one statement per tenant and period every few milliseconds,
 *   or every `flushRows` calls): the ledger rows, and what they cost moved from the lease into the
 *   spend. A call's answer leaves only after its ledger row is written.
 * - A lease is renewed while the instance lives, given back when unused, when the tenant is paused
 *   and on shutdown; the sweeper returns the lease of an instance that died.
 */
export class BudgetLeases {
  private readonly logger = new Logger(BudgetLeases.name);
  readonly instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly leases = new Map<string, Lease>();
  private readonly queues = new Map<string, Pending[]>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly flushing = new Set<Promise<void>>();
  private renewTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly books: BooksRepository,
    private readonly opts: LeaseOptions,
    /** settles one call whose lease is gone (swept while this instance was stalled): within the cap, the rest an incident */
    private readonly settleWithoutLease: (entry: LedgerEntry & { period: string }) => Promise<{ spent: Nanos; cap: Nanos }>,
  ) {}

  start(): void {
    this.renewTimer = setInterval(() => void this.housekeeping(), Math.max(50, Math.floor(this.opts.ttlMs / 3)));
    this.renewTimer.unref();
  }

  /** Admits a call of worst case `amount`, or null when the budget cannot take it. */
  async admit(tenantId: string, period: string, amount: Nanos): Promise<LeaseTicket | null> {
    if (this.closed) return null;
    const key = `${tenantId}:${period}`;
    let l = this.leases.get(key);
    if (!l) {
      l = { tenantId, period, available: 0n, held: 0n, refill: null, waiting: 0n, rate: { since: Date.now(), current: 0n, previous: 0n }, lastUsed: Date.now(), revoked: false };
      this.leases.set(key, l);
    }
    if (l.revoked) {
      // What was leased before the revocation goes back; the database says what may be taken now.
      l.revoked = false;
      await this.giveBack(l);
    }
    // Until admitted, or a refill finds no room (each refill takes enough for the calls waiting).
    for (;;) {
      if (l.available >= amount) {
        l.available -= amount;
        const now = Date.now();
        l.lastUsed = now;
        this.rotate(l, now);
        l.rate.current += amount;
        return { tenantId, period, amount };
      }
      // One refill at a time per lease; the others wait for it and look again.
      let refill = l.refill;
      if (!refill) {
        const lease = l;
        refill = lease.refill = this.refill(lease, amount).finally(() => (lease.refill = null));
      }
      l.waiting += amount;
      let taken: Nanos;
      try {
        taken = await refill;
      } finally {
        l.waiting -= amount;
      }
      if (taken === 0n && l.available < amount) return null;
    }
  }

  /** Starts a new rate window when the current one is over (the one before is forgotten). */
  private rotate(l: Lease, now: number): void {
    const elapsed = now - l.rate.since;
    if (elapsed < this.opts.rateWindowMs) return;
    l.rate = { since: now, current: 0n, previous: elapsed < 2 * this.opts.rateWindowMs ? l.rate.current : 0n };
  }

  private async refill(l: Lease, amount: Nanos): Promise<Nanos> {
    const now = Date.now();
    this.rotate(l, now);
    // about one window's admissions: the whole previous window, or the current one if busier
    const rate = l.rate.current > l.rate.previous ? l.rate.current : l.rate.previous;
    const need = amount - l.available;
    // A yield first, so the calls that arrive together are counted in this refill.
    await new Promise((r) => setImmediate(r));
    const want = [need, amount * 8n, rate, l.waiting + amount].reduce((a, b) => (b > a ? b : a));
    const taken = await this.books.takeLease(l.tenantId, l.period, this.instanceId, need, want, this.opts.ttlMs);
    l.available += taken;
    l.held += taken;
    return taken;
  }

  /** A call admitted on a lease is over: its ledger row written (with the others due) and its cost spent. */
  settle(ticket: LeaseTicket, cost: Nanos, entry: LedgerEntry & { period: string }): Promise<{ spent: Nanos; cap: Nanos }> {
    if (cost > ticket.amount) throw new RangeError('a leased call costs at most what it was admitted for');
    // Once written: what it cost leaves the lease, what it did not use is free for the next call. (A
    // settlement retried after a failed write credits nothing twice: nothing was credited.)
    return this.enqueue(`${ticket.tenantId}:${ticket.period}`, { ...entry, costNanos: cost }, ticket.amount - cost);
  }

  private enqueue(key: string, entry: LedgerEntry & { period: string }, unused: Nanos): Promise<{ spent: Nanos; cap: Nanos }> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(key) ?? [];
      this.queues.set(key, queue);
      queue.push({ entry, unused, resolve, reject });
      if (queue.length >= this.opts.flushRows) this.flush(key);
      else if (!this.timers.has(key)) this.timers.set(key, setTimeout(() => this.flush(key), this.opts.flushMs));
    });
  }

  /** A ledger row that costs nothing (a cache hit, a refused call), written with the calls due. */
  async record(entry: LedgerEntry & { period: string }): Promise<void> {
    await this.enqueue(`${entry.tenantId}:${entry.period}`, { ...entry, costNanos: 0n }, 0n);
  }

  /** The ticket's worst case leaves the lease (it settles the classic way: incident, guarded answer). */
  async toReservation(ticket: LeaseTicket, reservationId: string, ttlMs: number): Promise<boolean> {
    const moved = await this.books.leaseToReservation(ticket.tenantId, ticket.period, this.instanceId, reservationId, ticket.amount, ttlMs);
    const l = this.leases.get(`${ticket.tenantId}:${ticket.period}`);
    if (moved && l) l.held -= ticket.amount;
    return moved;
  }

  private flush(key: string): void {
    const timer = this.timers.get(key);
    if (timer) clearTimeout(timer);
    this.timers.delete(key);
    const batch = (this.queues.get(key) ?? []).splice(0, this.opts.flushRows);
    if ((this.queues.get(key)?.length ?? 0) > 0) this.timers.set(key, setTimeout(() => this.flush(key), 0));
    else this.queues.delete(key);
    if (!batch.length) return;
    const [tenantId, period] = [batch[0].entry.tenantId, batch[0].entry.period];
    const total = batch.reduce((a, p) => a + p.entry.costNanos, 0n);
    const run = this.books
      .settleLeased(tenantId, period, this.instanceId, batch.map((p) => p.entry))
      .then(async (after) => {
        const l = this.leases.get(key);
        if (after) {
          if (l) {
            l.held -= total;
            for (const p of batch) l.available += p.unused;
          }
          for (const p of batch) p.resolve(after);
          return;
        }
        // The lease was swept (this instance stalled past its expiry): it holds nothing any more.
        this.logger.error({ msg: 'a budget lease was swept while its instance lived: its calls are settled without it', tenantId, calls: batch.length });
        if (l) ((l.available = 0n), (l.held = 0n));
        for (const p of batch) await this.settleWithoutLease(p.entry).then(p.resolve, p.reject);
      })
      .catch((err: unknown) => {
        this.logger.error({ msg: 'a group commit of leased calls failed', tenantId, calls: batch.length, err: loggableError(err) });
        for (const p of batch) p.reject(err);
      });
    const tracked = run.finally(() => this.flushing.delete(tracked));
    this.flushing.add(tracked);
  }

  /** Gives back what this instance's lease for the period holds unpromised (a refill found too little). */
  async release(tenantId: string, period: string): Promise<void> {
    const l = this.leases.get(`${tenantId}:${period}`);
    if (l && !l.refill) await this.giveBack(l);
  }

  /** Stops admitting for a tenant (paused, cap changed): what its leases hold unpromised goes back. */
  revoke(tenantId: string): void {
    for (const l of this.leases.values()) if (l.tenantId === tenantId) l.revoked = true;
  }

  /** revoke() for every tenant (the bus reconnected: a pause or a new cap may have been missed). */
  revokeAll(): void {
    for (const l of this.leases.values()) l.revoked = true;
  }

  private async giveBack(l: Lease): Promise<void> {
    const amount = l.available;
    if (amount <= 0n) return;
    l.available = 0n;
    try {
      await this.books.returnLease(l.tenantId, l.period, this.instanceId, amount);
      l.held -= amount;
    } catch (err) {
      l.available += amount;
      this.logger.warn({ msg: 'could not give a budget lease back', tenantId: l.tenantId, err: loggableError(err) });
    }
  }

  /** Renews this instance's leases; gives back the unused and the revoked. */
  private async housekeeping(): Promise<void> {
    try {
      if (this.leases.size) await this.books.renewLeases(this.instanceId, this.opts.ttlMs);
      const now = Date.now();
      for (const [key, l] of this.leases) {
        if (l.refill) continue;
        if (l.revoked || now - l.lastUsed > this.opts.idleMs) {
          await this.giveBack(l);
          if (l.held === 0n) this.leases.delete(key);
        }
      }
    } catch (err) {
      this.logger.warn({ msg: 'budget lease housekeeping failed', err: loggableError(err) });
    }
  }

  /** Shutdown: every pending settlement written, every lease given back. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    for (const key of [...this.queues.keys()]) this.flush(key);
    while (this.flushing.size) await Promise.allSettled([...this.flushing]);
    for (const l of this.leases.values()) await this.giveBack(l);
  }

  /** For tests and /metrics: what this instance holds for a tenant. */
  holding(tenantId: string): { available: Nanos; held: Nanos } {
    let available = 0n;
    let held = 0n;
    for (const l of this.leases.values()) if (l.tenantId === tenantId) ((available += l.available), (held += l.held));
    return { available, held };
  }
}
