import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Counter } from 'prom-client';
import { DataSource, EntityManager } from 'typeorm';
import { ApiError } from '../common/errors';
import { UUID } from '../common/ids';
import { formatCny, Nanos, parseCny } from '../common/money';
import { loggableError } from '../common/error-rendering';
import { checkWebhookUrl, DestinationRefusedError, HostResolver, vetHost } from '../common/outbound-webhook';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG } from '../config/app-config';
import { ClusterBus } from '../db/cluster-bus';
import { MetricsService } from '../metrics/metrics.service';
import { AlertsService, IncidentAlert } from './alerts.service';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { BatchedGuard, BatchRef, BooksRepository, GuardedAnswer, ReservedCall, TokenIncident } from './books.repository';
import type { LedgerEntry } from './ledger.service';
import { BudgetView, forecast, IncidentView, incidentView, ratio, WhenExhausted } from './budget-view';
import { BudgetLeases } from './budget-leases';
import type { CacheEntry } from './answer-cache.repository';
import { periodOf } from './periods';
import { TenantSecretsService } from './tenant-secrets.service';

export interface Reservation {
  id: string;
  tenantId: string;
  period: string;
  amount: Nanos;
  /** the guard this reservation's call holds (batched: the call waits in a provider batch, see reserveGuarded) */
  guard?: { key: string; token: string; batched?: boolean };
  /** admitted on this instance's budget lease (in memory, no reservation row) */
  leased?: boolean;
}

/** A paid call's settlement retried in the background (BudgetService.settlePaid). */
export interface Unsettled {
  reservation: Reservation;
  cost: Nanos;
  entry: LedgerEntry;
  opts: SettleOptions;
  /** tries so far */
  tries: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

/** At most this many settlements wait in the background on one instance (each a few hundred bytes). */
const UNSETTLED_MAX = 10_000;

export type { BudgetView, IncidentView, WhenExhausted } from './budget-view';
export { forecast, ratio } from './budget-view';

/**
 * Makes one paid request at most once. The guard is taken (in flight) in the statement that
 * reserves the budget, only while the job's lease is held; it is answered, with the answer, in the
 * statement that settles the call. A retry of the same request reuses the answer; while the first
 * call is in flight (until `inFlightMs` after it started), a retry is told to wait.
 */
export interface CallGuard {
  /** sha-256 hex of what makes the request the same (see GatewayService) */
  key: string;
  /** the call may start only while this worker holds this job's lease */
  lease?: { jobId: string; holder: string };
  /** how long an unanswered call blocks retries: its deadline */
  inFlightMs: number;
  /** sent in a provider batch, where a retry may take it over (settled only while the guard is still the caller's) */
  batched?: boolean;
}

export type { BatchedGuard, BatchRef, GuardedAnswer, ReservedCall, TokenIncident } from './books.repository';

export interface SettleOptions {
  /** a guarded call's answer, kept for retries */
  answer?: GuardedAnswer;
  /** the call's answer to keep in the answer cache, written by the statement that settles it */
  cache?: CacheEntry;
  /** the usage broke the bound: booked as an incident, and the tenant's admission paused */
  incident?: TokenIncident;
  /** a cache hit (no cost): with leases, its row is written behind its answer (BudgetLeases.recordBehind) */
  behind?: boolean;
}

export type GuardedReservation =
  | { kind: 'reserved'; reservation: Reservation }
  | { kind: 'budget' }
  | { kind: 'answered'; answer: GuardedAnswer }
  | { kind: 'in_flight'; retryAfterMs: number }
  /** the call waits in a provider batch whose sender stopped: taken over, with its reservation, to wait for that batch */
  | { kind: 'adopted'; reservation: Reservation; batch: BatchRef }
  | { kind: 'lease_lost' };

export interface BudgetSettings {
  timezone: string;
  monthlyCap: Nanos;
  whenExhausted: WhenExhausted;
  alertThresholds: string[];
  alertWebhookUrl: string | null;
}

/** A change is announced on the bus (and everything is dropped when the bus reconnects): held a minute. */
const SETTINGS_TTL_MS = 60_000;
/** How long PUT /v1/budget waits for DNS when it checks an alert URL's host. */
const URL_CHECK_DNS_MS = 2_000;

/** How long a call that did not fit waits, each time, before it is tried again once other instances were asked for their unpromised slices. */
const LEASES_BACK_WAITS_MS = [50, 150, 300];

/**
 * The monthly budget of each tenant, and the only way money is spent: a call first reserves its
 * worst-case cost with one conditional UPDATE (it succeeds only while spent + reserved + amount
 * stays within the cap, and row locking makes concurrent reservations take turns, across any
 * number of instances), then settles the actual cost and writes its ledger row in one transaction.
 * Reservations of a crashed process expire and are swept back.
 */
@Injectable()
export class BudgetService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(BudgetService.name);
  private readonly settingsCache = new TtlCache<string, BudgetSettings>(SETTINGS_TTL_MS, 100_000);
  private readonly remainingCache = new TtlCache<string, Nanos>(1_000, 100_000);
  /** Tenants whose leases elsewhere this instance asked back within the last second (reserve). */
  private readonly askedLeasesBack = new TtlCache<string, true>(1_000, 100_000);
  /**
   * each tenant's latest period whose row exists, by tenant id: bounded (a forgotten one is only
   * checked again). Keyed by the id alone, so a call builds and hashes no new key string.
   */
  private readonly knownPeriods = new TtlCache<string, string>(86_400_000, 50_000);
  private sweepTimer?: NodeJS.Timeout;
  /** paid calls whose settlement failed its tries, retried in the background (settlePaid) */
  private readonly unsettled = new Set<Unsettled>();
  private closing = false;
  /** this instance's budget leases, when they are on (BUDGET_LEASES) */
  readonly leases: BudgetLeases | null;

  constructor(
    private readonly ds: DataSource,
    private readonly books: BooksRepository,
    private readonly tenants: TenantsRepository,
    private readonly alerts: AlertsService,
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly secrets: TenantSecretsService,
    private readonly resolver: HostResolver,
    private readonly bus: ClusterBus,
    metrics: MetricsService,
  ) {
    const hitRowsLost = new Counter({
      name: 'inkstone_ledger_hit_rows_lost_total',
      help: "Cache hits' ledger rows given up after their answers had left (each a hit and what it saved in the reports; never spend)",
      registers: [metrics.registry],
    });
    this.leases = config.llm.budgetLeases
      ? new BudgetLeases(books, { ttlMs: config.llm.leaseTtlMs, rateWindowMs: 2_000, flushRows: 64, idleMs: config.llm.leaseIdleMs, maxBehind: 1_024, maxBehindPerTenant: 128 }, (entry, reservationId) =>
          // As a classic settlement (of a reservation gone, without one): charged within the cap, any excess an incident.
          this.books.settle(this.ds.manager, { reservationId: reservationId ?? randomUUID(), cost: entry.costNanos, entry: { ...entry, tenantId: entry.tenantId }, cache: entry.cache }).then((s) => {
            if (!s) throw new Error('the budget period is missing');
            return { charged: s.charged, spent: s.spent, cap: s.cap };
          }),
          () => hitRowsLost.inc(),
        )
      : null;
    // A change made on any instance drops the cached settings everywhere; a lease stops admitting
    // (a pause, a new cap) until the database says again what may be taken.
    bus.on<{ tenantId: string }>('budget', ({ tenantId }) => {
      this.settingsCache.delete(tenantId);
      this.remainingCache.delete(tenantId);
      this.leases?.revoke(tenantId);
    });
    // Another instance could not fit a call: what this one holds of the tenant unpromised goes back.
    bus.on<{ tenantId: string }>('leases-back', ({ tenantId }) => this.leases?.giveBackNow(tenantId));
    // Back after the bus was down: a change may have been missed.
    bus.on('resync', () => {
      this.settingsCache.clear();
      this.remainingCache.clear();
      this.leases?.revokeAll();
    });
  }

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: Error) => this.logger.warn({ msg: 'reservation sweep failed', err: loggableError(err) }));
    }, this.config.llm.sweepIntervalMs);
    this.sweepTimer.unref();
    this.leases?.start();
  }

  /**
   * Before the database goes: the settlements waiting in the background tried once more, pending
   * settlements written, leases given back.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    const left = await this.settleWaiting();
    for (const u of left) {
      this.logger.error({ msg: 'a paid model call was never settled: its worst case stays held until the sweeper books it', tenantId: u.entry.tenantId, reservationId: u.reservation.id, cost: u.cost.toString(), tries: u.tries });
    }
    await this.leases?.close();
  }

  onApplicationShutdown(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  settings(tenantId: string): Promise<BudgetSettings> {
    return this.settingsCache.getOrLoad(tenantId, () => this.loadSettings(tenantId));
  }

  private async loadSettings(tenantId: string): Promise<BudgetSettings> {
    const s = await this.tenants.budget(tenantId);
    return { timezone: s.timezone, monthlyCap: s.cap, whenExhausted: s.whenExhausted, alertThresholds: s.alertThresholds, alertWebhookUrl: s.alertWebhookUrl };
  }

  /** Waits until every ledger row this instance has submitted so far is written (cache hits' included). */
  async ledgerWritten(): Promise<void> {
    await this.leases?.written();
  }

  /** The current period of a tenant, its row created on first use from the tenant's monthly cap. */
  async currentPeriod(tenantId: string, at = new Date()): Promise<string> {
    const { timezone } = await this.settings(tenantId);
    const period = periodOf(at, timezone);
    if (this.knownPeriods.get(tenantId) !== period) {
      await this.books.openPeriod(tenantId, period);
      this.knownPeriods.set(tenantId, period);
    }
    return period;
  }

  /**
   * Holds `amount` against the tenant's cap, or returns null when it does not fit (or the tenant's
   * admission is paused).
   */
  async reserve(tenantId: string, amount: Nanos, ttlMs = this.config.llm.reservationTtlMs, call?: ReservedCall): Promise<Reservation | null> {
    if (amount < 0n) throw new RangeError('a reservation cannot be negative');
    const period = await this.currentPeriod(tenantId);
    const id = randomUUID();
    if (this.leases) {
      if (await this.leases.admit(tenantId, period, amount)) return { id, tenantId, period, amount, leased: true };
      // Near the cap, slices held here would strand budget a call could use: give them back and
      // reserve this call exactly, as without leases.
      await this.leases.release(tenantId, period);
    }
    // Other instances may hold slices of the budget no call of theirs uses (up to a quarter of what
    // was free each): asked to give them back, this call is tried again a few times as they do
    // (B refused a call that fitted what A held idle, while A took it).
    const reserved = await this.withLeasesBack(tenantId, period, () => this.books.reserve(tenantId, period, id, amount, ttlMs, call), (ok) => ok);
    return reserved ? { id, tenantId, period, amount } : null;
  }

  /**
   * `attempt` until `fits` says it did; after a first that did not, once the other instances were
   * asked for the tenant's unpromised slices (askLeasesBack), again after each of
   * LEASES_BACK_WAITS_MS. Returns the last attempt's result.
   */
  private async withLeasesBack<R>(tenantId: string, period: string, attempt: () => Promise<R>, fits: (r: R) => boolean): Promise<R> {
    let r = await attempt();
    if (fits(r) || !(await this.askLeasesBack(tenantId, period))) return r;
    for (const ms of LEASES_BACK_WAITS_MS) {
      await sleep(ms);
      r = await attempt();
      if (fits(r)) return r;
    }
    return r;
  }

  /** Asks the other instances to give back the tenant's unpromised slices (the bus), when they hold any; false when it did not ask. */
  private async askLeasesBack(tenantId: string, period: string): Promise<boolean> {
    if (!this.leases || this.askedLeasesBack.get(tenantId)) return false;
    this.askedLeasesBack.set(tenantId, true);
    if ((await this.books.leasedElsewhere(tenantId, period, this.leases.instanceId)) === 0n) return false;
    this.bus.publish('leases-back', { tenantId });
    return true;
  }

  /**
   * reserve(), for a call that must be paid at most once (see CallGuard). One statement takes the
   * guard (only with the lease held, and only if no answer exists and no other call is in flight)
   * and reserves the budget; when nothing was reserved, a second look says why.
   */
  async reserveGuarded(tenantId: string, amount: Nanos, guard: CallGuard, ttlMs = this.config.llm.reservationTtlMs, call?: ReservedCall): Promise<GuardedReservation> {
    // As reserve(): other instances' unpromised slices asked back, tried again as they come.
    return this.withLeasesBack(
      tenantId,
      await this.currentPeriod(tenantId),
      () => this.reserveGuardedOnce(tenantId, amount, guard, ttlMs, call),
      (got) => got.kind !== 'budget',
    );
  }

  private async reserveGuardedOnce(tenantId: string, amount: Nanos, guard: CallGuard, ttlMs: number, call?: ReservedCall): Promise<GuardedReservation> {
    if (amount < 0n) throw new RangeError('a reservation cannot be negative');
    const period = await this.currentPeriod(tenantId);
    const id = randomUUID();
    const token = randomUUID();
    const took = await this.books.reserveGuarded(tenantId, period, { id, amount, ttlMs, key: guard.key, token, inFlightMs: guard.inFlightMs, lease: guard.lease, call });
    if (took.stale) {
      // The guard was taken over from a call that died (or stalled) mid-way: its reservation goes
      // back now (as lost in flight), not minutes later at its expiry — a retry near the cap was
      // refused for it, and the essay got an offline estimate or failed.
      await this.books.returnLostReservation(tenantId, took.stale);
      if (!took.reserved) {
        await this.books.releaseGuard(tenantId, guard.key, token);
        return this.reserveGuardedOnce(tenantId, amount, guard, ttlMs, call);
      }
    }
    if (took.reserved) {
      return { kind: 'reserved', reservation: { id, tenantId, period, amount, guard: { key: guard.key, token, batched: guard.batched } } };
    }
    // Nothing reserved: why?
    const why = await this.books.guardState(tenantId, guard.key, guard.lease);
    if (why.answer) return { kind: 'answered', answer: why.answer };
    if (!why.leaseHeld) return { kind: 'lease_lost' };
    if (why.state === 'in_flight' && why.token !== token) {
      if (why.batch && why.token) {
        // Sent in a provider batch by a process that no longer holds the job (this worker does):
        // take the call over and wait for the same batch, rather than pay for the call again.
        const adopted = await this.books.adoptBatched(tenantId, guard.key, why.token, token, guard.lease);
        if (adopted) {
          const reservation = { id: adopted.reservationId, tenantId, period: adopted.period, amount: adopted.amount, guard: { key: guard.key, token, batched: true } };
          return { kind: 'adopted', reservation, batch: adopted.batch };
        }
        // Settled or taken meanwhile: the next try sees which.
        return { kind: 'in_flight', retryAfterMs: 0 };
      }
      return { kind: 'in_flight', retryAfterMs: why.leftMs };
    }
    // Our own guard, taken for a call the budget cannot cover: give it back.
    await this.books.releaseGuard(tenantId, guard.key, token);
    return { kind: 'budget' };
  }

  /** Of these guards' keys, one whose call is answered or waits in a provider batch (BooksRepository.guardWithCall). */
  guardWithCall(tenantId: string, keys: string[]): Promise<string | null> {
    return this.books.guardWithCall(tenantId, keys);
  }

  /**
   * Names a provider batch's upload on the guards of the calls in it, before the batch is created
   * (BooksRepository.markUploaded); their guards and reservations now last as long as the batch may
   * (LLM_BATCH_MAX_WAIT_MS, and the reservation TTL on top).
   */
  markUploaded(provider: string, fileId: string, guards: BatchedGuard[]): Promise<number> {
    return this.books.markUploaded(provider, fileId, guards, this.batchHoldMs());
  }

  /** Names a provider batch on the guards of the calls sent in it (BooksRepository.markBatched). */
  markBatched(provider: string, batchId: string, guards: BatchedGuard[]): Promise<number> {
    return this.books.markBatched(provider, batchId, guards, this.batchHoldMs());
  }

  private batchHoldMs(): number {
    return this.config.llm.batchMaxWaitMs + this.config.llm.reservationTtlMs;
  }

  /** How many calls besides those with `tokens` still wait for a batch's answers (BooksRepository.othersAwaitingBatch). */
  othersAwaitingBatch(batchId: string, fileId: string | null, tokens: string[]): Promise<number> {
    return this.books.othersAwaitingBatch(batchId, fileId, tokens);
  }

  /** Is the tenant's admission paused by an incident no admin has acknowledged yet? */
  isPaused(tenantId: string): Promise<boolean> {
    return this.tenants.isAdmissionPaused(tenantId);
  }

  /** The tenant's incidents, newest first: every open one and the last closed ones. */
  async incidents(tenantId: string): Promise<IncidentView[]> {
    return (await this.books.incidents(tenantId)).map(incidentView);
  }

  /**
   * An admin has looked at an incident. When no open incident pauses admission any more, calls are
   * admitted again. Acknowledging twice is harmless; another tenant's incident is not found.
   */
  async acknowledge(tenantId: string, keyId: string, incidentId: string): Promise<IncidentView> {
    if (!UUID.test(incidentId)) throw ApiError.notFound('Incident');
    const row = await this.ds.transaction(async (tx) => {
      // The tenant's row is locked first: two incidents acknowledged at once see each other's acknowledgement.
      await this.tenants.lockForAdmission(tx, tenantId);
      const acked = await this.books.acknowledge(tx, tenantId, incidentId, keyId);
      if (acked && !(await this.books.anyPausing(tx, tenantId))) await this.tenants.setAdmissionPaused(tx, tenantId, false);
      return acked;
    });
    if (!row) throw ApiError.notFound('Incident');
    this.bus.publish('budget', { tenantId });
    this.logger.log({ msg: 'budget incident acknowledged', tenantId, incidentId, keyId });
    return incidentView(row);
  }

  /**
   * A call the budget could not take on any of its models (the gateway says so once it has tried
   * them all: a refusal of the first model, the call then served by a cheaper one, is no refused
   * call); `needed` is the least it could have cost. Alerted once a period.
   */
  async callRefused(tenantId: string, needed: Nanos): Promise<void> {
    try {
      const period = await this.currentPeriod(tenantId);
      // Refused because admission is paused (an incident), not because of the budget: the incident alerted.
      if (await this.tenants.isAdmissionPaused(tenantId)) return;
      const row = await this.books.period(tenantId, period);
      if (row) await this.alerts.onRefused(tenantId, period, { ...row, needed });
      // A threshold the spend reached whose alert was not written at its settlement (a failed
      // statement, a stop) is fired now: once the cap is reached no settlement charges more, and
      // "the cap is reached" would otherwise never come.
      if (row) await this.checkAlerts(tenantId, period, row.spent, row.cap);
    } catch (err) {
      this.logger.warn({ msg: 'could not record a budget alert', tenantId, err: loggableError(err) });
    }
  }

  /**
   * Settles a call a provider was paid for (BudgetService.settle): tried three times, 100 and 200 ms
   * apart. When those fail too (the database away), the caller gets the error and the settlement
   * goes on in the background — 1 s, 2 s, 4 s … at most a minute apart, until it is written, and
   * once more when the instance stops (`UNSETTLED_MAX` at most waiting; past that, logged). Every
   * try after the first looks for the row an earlier one may have written (the entry's id): the
   * call is charged once. Before, a call that failed its three tries kept its worst case held (on
   * its lease, written as in flight) and had no ledger row until the instance ended and the
   * sweeper booked it as lost in flight: the school's room shrank by it meanwhile.
   */
  async settlePaid(reservation: Reservation, cost: Nanos, entry: LedgerEntry, opts: SettleOptions = {}): Promise<Nanos> {
    for (let i = 0; ; i++) {
      try {
        return await this.settle(reservation, cost, i > 0 ? { ...entry, retried: true } : entry, opts);
      } catch (err) {
        if (i < 2) {
          await sleep(100 * (i + 1));
          continue;
        }
        this.settleLater({ reservation, cost, entry: { ...entry, retried: true }, opts, tries: i + 1 }, err);
        throw err;
      }
    }
  }

  /** How many settlements wait in the background. */
  waitingSettlements(): number {
    return this.unsettled.size;
  }

  /**
   * Tries every settlement waiting in the background once more, now (a try already under way is
   * waited for, not doubled); returns those still unsettled. Shutdown calls it; so can tests.
   */
  async settleWaiting(): Promise<Unsettled[]> {
    await Promise.all([...this.unsettled].map((u) => u.running ?? this.retrySettlement(u)));
    return [...this.unsettled];
  }

  private settleLater(u: Unsettled, err: unknown): void {
    const log = { tenantId: u.entry.tenantId, reservationId: u.reservation.id, cost: u.cost.toString(), err: loggableError(err) };
    if (this.closing || this.unsettled.size >= UNSETTLED_MAX) {
      this.logger.error({ msg: 'could not settle a model call: its worst case stays held until the sweeper books it', ...log });
      return;
    }
    this.logger.error({ msg: 'could not settle a model call: retrying in the background', ...log });
    this.unsettled.add(u);
    this.retryLater(u);
  }

  private retryLater(u: Unsettled): void {
    u.timer = setTimeout(() => void this.retrySettlement(u), Math.min(1_000 * 2 ** (u.tries - 3), 60_000));
    u.timer.unref();
  }

  private retrySettlement(u: Unsettled): Promise<void> {
    clearTimeout(u.timer);
    u.running = (async () => {
      u.tries++;
      try {
        await this.settle(u.reservation, u.cost, u.entry, u.opts);
        this.unsettled.delete(u);
        this.logger.warn({ msg: 'settled a model call in the background', tenantId: u.entry.tenantId, reservationId: u.reservation.id, tries: u.tries });
      } catch (err) {
        if (!this.closing) this.retryLater(u);
        this.logger.warn({ msg: 'a background settlement failed again', tenantId: u.entry.tenantId, reservationId: u.reservation.id, tries: u.tries, err: loggableError(err) });
      } finally {
        u.running = undefined;
      }
    })();
    return u.running;
  }

  /**
   * Ends a reservation: the actual cost is spent (within the cap), the rest released, and the ledger
   * row written, in one statement (BooksRepository.settle), so the ledger always sums to the spend.
   * A token incident also pauses the tenant's admission, in the same transaction. With no
   * reservation (a cache hit), only the ledger row is written and it must cost nothing.
   */
  async settle(reservation: Reservation | null, cost: Nanos, entry: LedgerEntry, opts: SettleOptions = {}): Promise<Nanos> {
    if (cost < 0n) throw new RangeError('a cost cannot be negative');
    if (!reservation) {
      if (cost !== 0n) throw new Error('a call that costs money must hold a reservation');
      const period = entry.period ?? (await this.currentPeriod(entry.tenantId));
      // With leases, written with the calls due (group commit); the answer waits for its row, unless
      // it is a cache hit's (nothing was spent: it is written behind the answer, before shutdown).
      if (this.leases) await (opts.behind ? this.leases.recordBehind({ ...entry, period }) : this.leases.record({ ...entry, period, costNanos: 0n }));
      else await this.books.record({ ...entry, period });
      return 0n;
    }
    const { tenantId, period } = reservation;
    if (reservation.leased && this.leases) {
      // (A leased call is never guarded: an answer kept for a guard's retries does not apply to it.)
      if (!opts.incident && cost <= reservation.amount) {
        // The common case: written with the other calls due (group commit) before the answer leaves.
        const after = await this.leases.settle(reservation, cost, { ...entry, tenantId, period, cache: opts.cache });
        if (after.charged > 0n) await this.checkAlerts(tenantId, period, after.spent, after.cap);
        return after.charged;
      }
      // An incident, or a cost beyond the admitted bound: its worst case leaves the lease as a
      // reservation, settled as one. When the lease is gone (swept while this instance stalled),
      // there is no reservation to release: the settlement charges what the cap still holds and
      // books the rest as an incident, as for any reservation swept before its call settled.
      await this.leases.toReservation(reservation, reservation.id, this.config.llm.reservationTtlMs);
      // Now a reservation (or, the lease gone, none): a retry of this settlement settles it the
      // classic way too. (Moved again, it was taken from the lease twice, or failed on its key.)
      reservation.leased = false;
    }
    const i = opts.incident;
    const settle = (m: EntityManager) =>
      this.books.settle(m, { reservationId: reservation.id, guard: reservation.guard, cost, entry: { ...entry, tenantId, period }, answer: opts.answer, incident: i, cache: opts.cache });
    const incident = (charged: Nanos): IncidentAlert => ({
      kind: i ? 'tokens_over_bound' : 'over_reservation',
      provider: entry.provider ?? null,
      model: entry.model ?? null,
      cost: formatCny(cost),
      charged: formatCny(charged),
      excess: formatCny(cost - charged),
      pausesAdmission: !!i,
    });
    // A call that is (or may be) an incident settles in one transaction with the incident's
    // `budget.incident` webhook: both are written, or neither (and the settlement is tried again).
    // Queued after the commit, a failure or a stop in between lost the school's only word that its
    // admission was paused.
    const mayBeIncident = !!i || cost > reservation.amount;
    const after = mayBeIncident
      ? await this.ds.transaction(async (tx) => {
          // One that pauses the tenant locks its row first, as PUT /v1/budget does (the tenant, then
          // the period): locked after the period, at the pause, the two waited on each other and
          // PostgreSQL aborted one (the admin's change answered 500).
          if (i) await this.tenants.lockForAdmission(tx, tenantId);
          const settled = await settle(tx);
          if (settled?.incident) {
            if (i) await this.tenants.setAdmissionPaused(tx, tenantId, true);
            await this.alerts.queueIncident(tx, tenantId, period, incident(settled.charged));
          }
          return settled;
        })
      : await settle(this.ds.manager);
    const charged = after?.charged ?? 0n;
    if (after && charged > 0n) await this.checkAlerts(tenantId, period, after.spent, after.cap);
    if (after?.incident) {
      this.alerts.incidentRaised(tenantId, period, incident(charged));
      // (Within its reservation, a call is an incident only when the sweeper returned that reservation meanwhile.)
      if (!mayBeIncident) {
        await this.alerts
          .queueIncident(this.ds.manager, tenantId, period, incident(charged))
          .catch((err: Error) => this.logger.warn({ msg: 'could not raise a budget incident alert', tenantId, err: loggableError(err) }));
      }
      if (i) this.bus.publish('budget', { tenantId });
    }
    return charged;
  }

  private async checkAlerts(tenantId: string, period: string, spent: Nanos, cap: Nanos): Promise<void> {
    const { alertThresholds, timezone } = await this.settings(tenantId);
    await this.alerts.onSpend(tenantId, period, spent, cap, alertThresholds, timezone).catch((err: Error) =>
      this.logger.warn({ msg: 'could not check budget alerts', tenantId, err: loggableError(err) }),
    );
  }

  /** Returns expired reservations and leases (left by a process that died mid-call) to their budgets. */
  async sweep(): Promise<number> {
    const n = await this.books.sweep();
    if (n > 0) this.logger.warn({ msg: 'expired budget reservations returned', count: n });
    return n;
  }

  async view(tenantId: string, now = new Date()): Promise<BudgetView> {
    const settings = await this.settings(tenantId);
    const period = await this.currentPeriod(tenantId, now);
    const row = await this.books.period(tenantId, period);
    if (!row) throw ApiError.notFound('Tenant');
    const { cap, spent, reserved } = row;
    const remaining = cap - spent - reserved > 0n ? cap - spent - reserved : 0n;
    return {
      period,
      timezone: settings.timezone,
      monthlyCap: formatCny(cap),
      spent: formatCny(spent),
      reserved: formatCny(reserved),
      remaining: formatCny(remaining),
      utilization: ratio(spent, cap),
      whenExhausted: settings.whenExhausted,
      alertThresholds: settings.alertThresholds.map(Number),
      alertWebhookUrl: settings.alertWebhookUrl,
      forecast: forecast(period, settings.timezone, spent, cap, now),
      admissionPaused: await this.isPaused(tenantId),
      incidents: await this.incidents(tenantId),
    };
  }

  /** What is left of this month's budget (cap − spent − reserved), cached for a second. */
  remaining(tenantId: string): Promise<Nanos> {
    return this.remainingCache.getOrLoad(tenantId, () => this.loadRemaining(tenantId));
  }

  private async loadRemaining(tenantId: string): Promise<Nanos> {
    const row = await this.books.period(tenantId, await this.currentPeriod(tenantId));
    if (!row) return 0n;
    const left = row.cap - row.spent - row.reserved;
    return left > 0n ? left : 0n;
  }

  /**
   * Sets the cap (for the current period too), the exhaustion policy, the alert thresholds, and the
   * alert webhook: its URL checked (checkAlertUrl), its secret stored sealed.
   */
  async update(
    tenantId: string,
    dto: { monthlyCap: string; whenExhausted?: WhenExhausted; alertThresholds?: number[]; alertWebhookUrl?: string | null; alertWebhookSecret?: string },
  ): Promise<BudgetView> {
    const cap = parseCny(dto.monthlyCap);
    if (typeof dto.alertWebhookUrl === 'string') await this.checkAlertUrl(dto.alertWebhookUrl);
    // Every event is signed (a receiver that returns money on `order.refunded` must be able to tell a
    // forged one): a URL set or changed needs a secret, given now or kept from before. (One set
    // before this rule does not block the rest of the settings: its events wait for a secret.)
    const settingUrl = typeof dto.alertWebhookUrl === 'string' && dto.alertWebhookUrl !== (await this.tenants.budget(tenantId)).alertWebhookUrl;
    if (settingUrl && !dto.alertWebhookSecret) {
      const kept = await this.tenants.secret(tenantId, 'alert');
      if (!kept?.sealed && !kept?.legacy) {
        throw ApiError.validation([{ field: 'alertWebhookSecret', message: 'alertWebhookSecret is needed with an alertWebhookUrl (every event is signed with it)' }]);
      }
    }
    const period = await this.currentPeriod(tenantId);
    // A new secret is stored sealed (and a legacy plaintext one dropped); without one, the stored one stays.
    const sealedSecret = dto.alertWebhookSecret === undefined ? null : this.secrets.seal('alert', tenantId, dto.alertWebhookSecret);
    const capChanged = await this.ds.transaction(async (tx) => {
      await this.tenants.setBudget(tx, tenantId, {
        cap,
        whenExhausted: dto.whenExhausted,
        alertThresholds: dto.alertThresholds,
        alertWebhookUrl: dto.alertWebhookUrl,
        sealedAlertSecret: sealedSecret,
      });
      const before = await this.books.setPeriodCap(tx, tenantId, period, cap);
      if (before !== null) await this.alerts.rearm(tx, tenantId, period, before !== cap);
      return before !== cap;
    });
    // (Thresholds or the webhook changed with the same cap: the ratios shown stay right.)
    this.bus.publish('budget', { tenantId, capChanged });
    this.logger.log({ msg: 'budget updated', tenantId, period });
    // The new cap (or thresholds) may be reached already: a cap lowered below what was spent says so
    // now, not at a settlement that will never come (nothing more fits).
    // (the settings are saved: a failure here leaves the alerts to the next settlement, not a 500)
    const now = await this.books.period(tenantId, period).catch((err: Error) => {
      this.logger.warn({ msg: 'could not check budget alerts after a budget change', tenantId, err: loggableError(err) });
      return null;
    });
    if (now) await this.checkAlerts(tenantId, period, now.spent, now.cap);
    return this.view(tenantId);
  }

  /**
   * An alert URL must lead to a public https address: refused here with a field message when it
   * does not, by its form and, for a host name, by every address it resolves to now. A name that
   * does not resolve yet is accepted; every delivery resolves and checks it again.
   */
  private async checkAlertUrl(url: string): Promise<void> {
    const refuse = (problem: string) => ApiError.validation([{ field: 'alertWebhookUrl', message: `alertWebhookUrl ${problem}` }]);
    const { allowPrivate } = this.config.webhooks;
    const checked = checkWebhookUrl(url, allowPrivate);
    if (!checked.ok) throw refuse(checked.problem);
    if (checked.literal || allowPrivate) return;
    try {
      await vetHost(checked.host, allowPrivate, this.resolver, AbortSignal.timeout(URL_CHECK_DNS_MS));
    } catch (err) {
      if (err instanceof DestinationRefusedError) throw refuse(`must point to a public address: ${err.message}`);
    }
  }
}
