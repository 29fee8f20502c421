import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import type { Nanos } from '../common/money';
import { loggableError } from '../common/error-rendering';
import { RENEWALS_A_STATEMENT, type BooksRepository, type SettlingCall } from './books.repository';
import type { LedgerEntry } from './ledger.service';
import { KeyedBatcher } from '../common/keyed-batcher';
import { derivedUuid } from '../common/ids';

/** A call admitted on this instance's lease: its worst case, held in memory, not in the database. */
export interface LeaseTicket {
  tenantId: string;
  period: string;
  amount: Nanos;
}

export interface LeaseOptions {
  /** a lease lives this long without renewal (housekeeping renews it once a third of it has passed with no statement renewing it) */
  ttlMs: number;
  /** the window whose admissions size the next slice */
  rateWindowMs: number;
  /** a group commit writes at most this many calls in one statement */
  flushRows: number;
  /**
   * an unused lease is given back after this long (at the next housekeeping tick) instead of being
   * renewed again (BUDGET_LEASE_IDLE_MS, 15 s). Renewing idle leases is work for nothing: at 60 s,
   * the leases of 10,000 tenants gone quiet were renewed five times each, in bursts of statements
   * every 10 s that the calls of the tenants still working waited behind (bench/probe-tail.ts with
   * WARM_TENANTS=10000). A tenant whose calls come further apart takes a new slice with its next
   * call (one statement, shared with the other tenants' takes of that moment).
   */
  idleMs: number;
  /** at most this many cache hits' rows waiting to be written behind their answers (then a hit waits for its row) */
  maxBehind: number;
  /** of those, at most this many of one tenant's (a tenant's flood of hits waits for its own rows, not everyone's) */
  maxBehindPerTenant: number;
  /**
   * Idle leases go back at most this many a statement (default 100), with `returnPauseMs` (default
   * 25) between statements: when thousands of tenants go idle together, giving their leases back
   * never holds the database for long at a stretch (the calls of the tenants still working wait
   * behind it). An instance closing gives every lease back at once. The renewals (500 a statement)
   * take the same pause, less if the pauses would pass a sixth of the time to live.
   */
  returnChunk?: number;
  returnPauseMs?: number;
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
  /**
   * when a statement that set the lease's expiry to at least then + ttl was sent (a take, a
   * settlement of calls that cost something, a renewal): housekeeping renews only the leases no
   * statement renewed lately
   */
  renewedAt: number;
  /** no more admissions (the tenant was paused, its cap changed): what is left goes back */
  revoked: boolean;
}

/** A call's settlement: what it was charged (its cost, or within a cap lowered since), and the period's spend and cap after. */
export interface LeasedSettlement {
  charged: Nanos;
  spent: Nanos;
  cap: Nanos;
}

interface Pending {
  entry: SettlingCall;
  /** the part of the call's admitted worst case it did not cost: back to `available` once written */
  unused: Nanos;
}

/**
 * What a lease still promises to calls in flight once `settling` are written: admitted and not yet
 * written (those queued behind a statement included: the provider has billed them too). Its row
 * keeps it, written by the statements that touch it, so the sweeper can book it if the instance dies
 * (BooksRepository.sweep).
 */
function inFlightAfter(l: Lease, settling: Pending[] = []): Nanos {
  const left = settling.reduce((a, p) => a - p.entry.costNanos - p.unused, l.held - l.available);
  return left > 0n ? left : 0n;
}

/** The one queue of settlements (each row carries its tenant). */
const SETTLEMENTS = 'all';

/**
 * Budget leases and group commit (SPEC §5): admission and accounting of model calls that cost
 * microseconds, not round trips, without weakening the invariant spent + reserved ≤ cap.
 *
 * - An instance takes a slice of a tenant's free budget in one statement (BooksRepository.takeLease:
 *   counted in reserved_nanos, so every instance sees it) and admits calls against it in memory.
 *   A slice is sized from what the instance admitted for the tenant over the last few seconds
 *   (at least 8 calls' worth), never more than a quarter of what is free beyond the call, so
 *   instances share what is left; when the budget is nearly used up, each call takes exactly its need.
 * - Settlements are written together: the calls that end while a settlement statement runs go in
 *   the next one (at most `flushRows`), whatever their tenants, each row with its own tenant — the
 *   ledger rows, and what they cost moved from each lease into each spend. One statement at a time
 *   per instance. A call's answer leaves only after its ledger row is written — except a cache
 *   hit's, which costs nothing: its row goes with the next statement after the answer has left
 *   (`recordBehind`), at most `maxBehind` of them waiting (`maxBehindPerTenant` of one tenant's),
 *   and is written before shutdown.
 * - A lease is renewed while the instance lives, given back when unused, when the tenant is paused
 *   and on shutdown; the sweeper returns the lease of an instance that died.
 */
export class BudgetLeases {
  private readonly logger = new Logger(BudgetLeases.name);
  readonly instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly leases = new Map<string, Lease>();
  /** each call's settlement, or why it failed (a call settled without its lease may fail alone) */
  private readonly settlements: KeyedBatcher<Pending, LeasedSettlement | { failed: unknown }>;
  private renewTimer?: NodeJS.Timeout;
  private closed = false;
  /** idle leases being given back, a chunk at a time (one such pass at once; renewals go on meanwhile) */
  private returningIdle: Promise<void> | null = null;
  /** a renewal pass under way: a tick that comes during it renews nothing (it would renew the same leases again) */
  private renewing = false;
  /** cache hits' rows submitted behind their answers and not yet written */
  private behind = 0;
  /** the same, by tenant (a tenant with none has no entry) */
  private readonly behindOf = new Map<string, number>();

  constructor(
    private readonly books: BooksRepository,
    private readonly opts: LeaseOptions,
    /**
     * settles one call the classic way, releasing `reservationId` (its worst case moved out of the
     * lease) or, without one (the lease was swept), none: within the cap, the rest an incident
     */
    private readonly settleWithoutLease: (entry: SettlingCall, reservationId?: string) => Promise<LeasedSettlement>,
    /** a cache hit's row written behind its answer was given up (counted for /metrics) */
    private readonly hitRowLost: () => void = () => undefined,
  ) {
    this.settlements = new KeyedBatcher((_, batch) => this.write(batch), opts.flushRows);
  }

  start(): void {
    this.renewTimer = setInterval(() => void this.housekeeping(), Math.max(50, Math.floor(this.opts.ttlMs / 6)));
    this.renewTimer.unref();
  }

  /** Admits a call of worst case `amount`, or null when the budget cannot take it. */
  async admit(tenantId: string, period: string, amount: Nanos): Promise<LeaseTicket | null> {
    if (this.closed) return null;
    const key = `${tenantId}:${period}`;
    let l = this.leases.get(key);
    if (!l) {
      l = { tenantId, period, available: 0n, held: 0n, refill: null, waiting: 0n, rate: { since: Date.now(), current: 0n, previous: 0n }, lastUsed: Date.now(), renewedAt: -Infinity, revoked: false };
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
    const sentAt = Date.now();
    const taken = await this.books.takeLease(l.tenantId, l.period, this.instanceId, need, want, this.opts.ttlMs);
    l.available += taken;
    l.held += taken;
    if (taken > 0n) l.renewedAt = Math.max(l.renewedAt, sentAt);
    return taken;
  }

  /**
   * A call admitted on a lease is over: its ledger row written (with the others due), its cost
   * spent, and its answer (`entry.cache`) kept in the answer cache by the same statement.
   */
  settle(ticket: LeaseTicket, cost: Nanos, entry: SettlingCall): Promise<LeasedSettlement> {
    if (cost > ticket.amount) throw new RangeError('a leased call costs at most what it was admitted for');
    // Once written: what it cost leaves the lease, what it did not use is free for the next call. (A
    // settlement retried after a failed write credits nothing twice: nothing was credited.)
    return this.enqueue({ ...entry, costNanos: cost }, ticket.amount - cost);
  }

  private async enqueue(entry: SettlingCall, unused: Nanos): Promise<LeasedSettlement> {
    const settled = await this.settlements.submit(SETTLEMENTS, { entry, unused });
    if ('failed' in settled) throw settled.failed;
    return settled;
  }

  /** A ledger row that costs nothing (a cache hit, a refused call), written with the calls due. */
  async record(entry: LedgerEntry & { period: string }): Promise<void> {
    await this.enqueue({ ...entry, costNanos: 0n }, 0n);
  }

  /**
   * A cache hit's row (it costs nothing, so no spend depends on it): submitted with the calls due
   * and not waited for, so the answer leaves without a round trip. When `maxBehind` rows are
   * already waiting (the database is slow or away), or `maxBehindPerTenant` of this tenant's (one
   * tenant's flood does not fill the queue for all), or on shutdown, it is written as record()
   * does, and the hit waits: the queue stays bounded. A failed write is tried once more, then the row is
   * lost, logged and counted (`hitRowLost`; what it counts: a hit and what it saved, in the reports).
   */
  recordBehind(entry: LedgerEntry & { period: string }): Promise<void> {
    const { tenantId } = entry;
    const own = this.behindOf.get(tenantId) ?? 0;
    if (this.closed || this.behind >= this.opts.maxBehind || own >= this.opts.maxBehindPerTenant) return this.record(entry);
    this.behind++;
    this.behindOf.set(tenantId, own + 1);
    void this.writeBehind({ ...entry, costNanos: 0n }).finally(() => {
      this.behind--;
      const left = this.behindOf.get(tenantId)! - 1;
      if (left === 0) this.behindOf.delete(tenantId);
      else this.behindOf.set(tenantId, left);
    });
    return Promise.resolve();
  }

  /** recordBehind's write: two tries (one after shutdown began), then the row is given up. */
  private async writeBehind(row: SettlingCall): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        await this.enqueue(tries > 1 ? { ...row, retried: true } : row, 0n);
        return;
      } catch (err) {
        if (tries < 2 && !this.closed) continue;
        this.hitRowLost();
        this.logger.error({ msg: "a cache hit's ledger row could not be written (its answer had left)", tenantId: row.tenantId, callGroup: row.callGroup, err: loggableError(err) });
        return;
      }
    }
  }

  /** Waits until every row submitted so far, written behind or not, is written. */
  async written(): Promise<void> {
    await this.settlements.drain();
  }

  /** The ticket's worst case leaves the lease (it settles the classic way: incident, guarded answer). */
  async toReservation(ticket: LeaseTicket, reservationId: string, ttlMs: number): Promise<boolean> {
    const how = await this.books.leaseToReservation(ticket.tenantId, ticket.period, this.instanceId, reservationId, ticket.amount, ttlMs);
    const l = this.leases.get(`${ticket.tenantId}:${ticket.period}`);
    if (how === 'moved' && l) l.held -= ticket.amount;
    return how !== null;
  }

  /**
   * One settlement statement for a batch of calls of any tenants: each (tenant, period) group's
   * cost leaves its lease; what the calls did not use is free again. A group whose lease was swept
   * (this instance stalled past its expiry) is settled call by call without it.
   */
  private async write(batch: Pending[]): Promise<Array<LeasedSettlement | { failed: unknown }>> {
    const groups = new Map<string, { tenantId: string; period: string; items: Pending[] }>();
    for (const p of batch) {
      const key = `${p.entry.tenantId}:${p.entry.period}`;
      const g = groups.get(key) ?? { tenantId: p.entry.tenantId, period: p.entry.period, items: [] };
      g.items.push(p);
      groups.set(key, g);
    }
    const list = [...groups.entries()];
    let after: Array<{ spent: Nanos; cap: Nanos } | null>;
    const sentAt = Date.now();
    try {
      after = await this.books.settleLeased(
        this.instanceId,
        this.opts.ttlMs,
        list.map(([key, g]) => {
          const l = this.leases.get(key);
          return { tenantId: g.tenantId, period: g.period, calls: g.items.map((p) => p.entry), inFlight: l ? inFlightAfter(l, g.items) : 0n };
        }),
      );
    } catch (err) {
      this.logger.error({ msg: 'a group commit of leased calls failed', calls: batch.length, tenants: list.length, err: loggableError(err) });
      throw err;
    }
    const out = new Map<Pending, LeasedSettlement | { failed: unknown }>();
    for (const [i, [key, g]] of list.entries()) {
      const l = this.leases.get(key);
      const settled = after[i];
      if (settled) {
        if (l) {
          const cost = g.items.reduce((a, p) => a + p.entry.costNanos, 0n);
          l.held -= cost;
          for (const p of g.items) l.available += p.unused;
          // Calls that cost something settle only on the lease's row, which the statement renewed.
          if (cost > 0n) l.renewedAt = Math.max(l.renewedAt, sentAt);
          // A call still in flight when the instance began to stop: what it did not use goes back
          // now, not when the lease expires (close() gave back only what no call had been promised).
          if (this.closed) await this.giveBack(l);
        }
        for (const p of g.items) out.set(p, { ...settled, charged: p.entry.costNanos });
        continue;
      }
      // Not settled on the lease: the cap was lowered below what was reserved, or the lease was swept
      // while this instance stalled. The lease admits no more and what it holds unpromised goes
      // back; each call's admitted worst case leaves the lease as a reservation (when the lease still
      // holds it) and the call settles the classic way: charged within the cap, the rest an incident.
      this.logger.warn({ msg: 'leased calls did not fit the cap or their lease was gone: settled the classic way', tenantId: g.tenantId, calls: g.items.length });
      if (l) {
        l.revoked = true;
        await this.giveBack(l);
      }
      let swept = false;
      for (const p of g.items) {
        const ticket = p.entry.costNanos + p.unused;
        // Named after the call's ledger row: a retry of this settlement (its first try moved the
        // ticket, then failed) finds that reservation and moves nothing again. A new id each try
        // moved another call's promise off the lease, and left the first reservation to the sweeper
        // (booked as a call lost in flight).
        const reservationId = p.entry.id ? derivedUuid('lease-fallback', p.entry.id) : randomUUID();
        const how: 'moved' | 'found' | null = swept ? null : await this.books.leaseToReservation(g.tenantId, g.period, this.instanceId, reservationId, ticket, this.opts.ttlMs, p.entry.retried ? p.entry.id : undefined).catch(() => null);
        const moved: boolean = how !== null;
        if (how === 'moved' && l) l.held -= ticket;
        swept ||= !moved;
        out.set(p, await this.settleWithoutLease(p.entry, moved ? reservationId : undefined).catch((failed: unknown) => ({ failed })));
      }
      if (swept && l) ((l.available = 0n), (l.held = 0n));
    }
    return batch.map((p) => out.get(p)!);
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

  /**
   * Another instance could not fit a call of the tenant and asks for the budget no call here was
   * promised: what the tenant's leases hold unpromised goes back now (not at the next tick), and the
   * next call here reads what may be taken again.
   */
  giveBackNow(tenantId: string): void {
    for (const l of this.leases.values()) {
      if (l.tenantId !== tenantId) continue;
      l.revoked = true;
      if (!l.refill) void this.giveBack(l);
    }
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
      const held = await this.books.returnLease(l.tenantId, l.period, this.instanceId, amount);
      // Not held: the sweeper took the lease (this instance stalled past its TTL) and freed it already.
      if (!held) this.logger.warn({ msg: 'a budget lease to give back was gone (swept)', tenantId: l.tenantId });
      l.held -= amount;
    } catch (err) {
      l.available += amount;
      this.logger.warn({ msg: 'could not give a budget lease back', tenantId: l.tenantId, err: loggableError(err) });
    }
  }

  /**
   * Renews this instance's leases that no take or settlement renewed lately (a busy tenant's lease
   * is renewed by its own settlements, and a renewal never waits on them); gives back the unused
   * and the revoked. Runs every sixth of the time to live; a lease renewed within the last third is
   * left to a later run, so the lease is renewed at most half the time to live after its last
   * renewal (its renewal statement sent within another sixth: see renewDue), and a tenant whose
   * calls come at least every third of it (10 s at the default 30 s) is renewed by its settlements
   * alone. (Run every third with a sixth's grace, the same worst case, a lease settled 5–10 s before
   * a tick was renewed again: with 10,000 tenants each calling every 4–5 s, a sixth of them at each
   * tick: 1.12–1.27 lease rows written a call, 1.02–1.11 now; bench/probe-miss.ts, PROBE_TENANTS=10000.)
   */
  private async housekeeping(): Promise<void> {
    if (!this.renewing) await this.renewDue();
    this.returningIdle ??= this.returnIdle()
      .catch((err: unknown) => this.logger.warn({ msg: 'giving idle budget leases back failed', err: loggableError(err) }))
      .finally(() => (this.returningIdle = null));
  }

  /**
   * One renewal pass. One at a time: when the database is slow (or the leases are very many) a
   * pass can outlast the tick, and the next tick would send the same leases' renewals again, more
   * load on a database already slow; the pass under way renews them (within a sixth of the TTL).
   */
  private async renewDue(): Promise<void> {
    this.renewing = true;
    try {
      const sentAt = Date.now();
      const due = [...this.leases.values()].filter((l) => sentAt - l.renewedAt >= this.opts.ttlMs / 3);
      if (due.length) {
        // Paced as the returns are, within a sixth of the time to live in all (a lease is due a third
        // after its last renewal, found due within a sixth more, and lives a whole one: the pacing
        // never makes one expire).
        const statements = Math.ceil(due.length / RENEWALS_A_STATEMENT);
        const pause = Math.min(this.opts.returnPauseMs ?? 25, Math.floor(this.opts.ttlMs / 6 / statements));
        await this.books.renewLeases(
          this.instanceId,
          this.opts.ttlMs,
          due.map((l) => ({ tenantId: l.tenantId, period: l.period, inFlight: inFlightAfter(l) })),
          pause,
        );
        for (const l of due) l.renewedAt = Math.max(l.renewedAt, sentAt);
      }
    } catch (err) {
      this.logger.warn({ msg: 'budget lease housekeeping failed', err: loggableError(err) });
    } finally {
      this.renewing = false;
    }
  }

  private isIdle(l: Lease, now: number): boolean {
    return !l.refill && (l.revoked || now - l.lastUsed > this.opts.idleMs);
  }

  /** Gives back the idle and the revoked leases, `returnChunk` a statement, paced (see LeaseOptions). */
  private async returnIdle(): Promise<void> {
    const chunk = this.opts.returnChunk ?? 100;
    const pause = this.opts.returnPauseMs ?? 25;
    const idle = [...this.leases].filter(([, l]) => this.isIdle(l, Date.now()));
    for (let i = 0; i < idle.length && !this.closed; i += chunk) {
      if (i > 0) await sleep(pause);
      const now = Date.now();
      // Given back together: the returns of a moment go in one statement. (One used again during
      // the pause stays.)
      await Promise.all(
        idle.slice(i, i + chunk).map(async ([key, l]) => {
          if (!this.isIdle(l, now)) return;
          await this.giveBack(l);
          if (l.held === 0n && !l.refill && this.leases.get(key) === l) this.leases.delete(key);
        }),
      );
    }
  }

  /**
   * Shutdown: every pending settlement written, every lease given back. Calls still in flight
   * settle afterwards, each giving back what it did not use as it settles (see write()).
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    await this.returningIdle; // (it stops after its chunk in hand)
    await this.settlements.drain();
    await Promise.all([...this.leases.values()].map((l) => this.giveBack(l)));
  }

  /** For tests and /metrics: what this instance holds for a tenant. */
  holding(tenantId: string): { available: Nanos; held: Nanos } {
    let available = 0n;
    let held = 0n;
    for (const l of this.leases.values()) if (l.tenantId === tenantId) ((available += l.available), (held += l.held));
    return { available, held };
  }
}
