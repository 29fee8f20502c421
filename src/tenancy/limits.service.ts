import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { OldestFirst } from '../common/oldest-first';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG, LIMIT_NAMES, TenantLimits } from '../config/app-config';
import { ClusterBus } from '../db/cluster-bus';
import { JobQueue } from '../jobs/job-queue';
import { ApiError } from '../common/errors';
import { TenancyError } from './tenancy-errors';
import { CountedLimit, TenantsRepository } from './tenants.repository';

export type LimitName = (typeof LIMIT_NAMES)[number];

/** What a tenant may use and what it uses now, as GET /v1/limits shows it. */
export interface LimitsView {
  limits: TenantLimits;
  usage: { apiKeys: number; rubricVersions: number; assignments: number; essaysQueued: number; chatInFlight: number; eventStreams: number; providerCalls: number; reportsInFlight: number; readsInFlight: number };
  /**
   * The part of each shared limit the tenant has on this instance now (what its next read would be
   * held to): all of it while no other tenant reads here, its limit divided by the tenants reading
   * (itself counted), rounded up, while others do.
   */
  shares: { readsInFlight: number; reportsInFlight: number };
  scope: Record<LimitName, 'per key, per instance' | 'per tenant' | 'per tenant, per instance'>;
}

/** Headers of a rate-limited answer (draft-ietf-httpapi-ratelimit-headers). */
export interface RateLimitHeaders {
  'ratelimit-limit': string;
  'ratelimit-remaining': string;
  'ratelimit-reset': string;
}

/** A held slot of a per-instance concurrency limit; release it once. */
export type Release = () => void;

/** Where each limit is counted. */
export const LIMIT_SCOPES: Record<LimitName, 'per key, per instance' | 'per tenant' | 'per tenant, per instance'> = {
  // (each instance keeps its own buckets, as the tenant's request rate)
  requestsPerSecondPerKey: 'per key, per instance',
  requestBurstPerKey: 'per key, per instance',
  requestsPerSecondPerTenant: 'per tenant, per instance',
  requestBurstPerTenant: 'per tenant, per instance',
  apiKeys: 'per tenant',
  rubricVersions: 'per tenant',
  assignments: 'per tenant',
  essaysQueued: 'per tenant',
  essaysGrading: 'per tenant',
  chatInFlight: 'per tenant, per instance',
  eventStreams: 'per tenant, per instance',
  providerCalls: 'per tenant, per instance',
  reportsInFlight: 'per tenant, per instance',
  readsInFlight: 'per tenant, per instance',
};

/** What each limit bounds, as the API guide says it. */
export const LIMIT_MEANINGS: Record<LimitName, string> = {
  requestsPerSecondPerKey: "requests per second per API key: a token bucket's refill rate (its state is in every answer's RateLimit-* headers)",
  requestBurstPerKey: "the most requests one key may send at once: the token bucket's size",
  requestsPerSecondPerTenant: "requests per second of all the tenant's keys together: a second token bucket, so a tenant's share of a server does not grow with the keys it makes",
  requestBurstPerTenant: "the most requests all the tenant's keys together may send at once: that bucket's size",
  apiKeys: 'active (not revoked) API keys; past it, making one is refused (429) until one is revoked',
  assignments: 'assignments kept; past it, making one is refused (429)',
  rubricVersions: "rubric versions kept: each rubric made and each edit of one (PUT) is a version, kept for the grades made with it; past it, making or editing a rubric is refused (429)",
  essaysQueued:
    "essays waiting to be graded; a class set larger than the limit is refused with 413 `PAYLOAD_TOO_LARGE` (it will never fit: send it in parts), one that does not fit now with 429 and `RateLimit-Remaining` the room left. The queue's count is read at most once a second per instance, plus the essays that instance admitted since (those still being written included), so several instances admitting within the same second may together pass it by what each admitted in that second",
  essaysGrading: 'essays being graded at once, across instances, each kind of job counted apart (gradings, gradings with a deadline, deep reviews, shadow gradings; enforced in the queue’s claim)',
  chatInFlight: 'chat completions in flight',
  eventStreams: 'open event streams (SSE)',
  providerCalls: 'model calls at providers at once, all purposes; more wait their turn (a chat call whose client closes the connection while it waits is never sent, and charged nothing)',
  reportsInFlight: 'ledger reports (usage, stats, the monthly report, a measured cost estimate) read at once; more wait their turn, 32 at most, then 429 (one whose client closes the connection leaves the queue unread); while other tenants read reports on the same instance too, each is held to an equal share of its own limit, as for readsInFlight',
  readsInFlight: "lists, exports and essays read at once (the essay list and one essay's view, assignments and an assignment's counts, grades.csv, orders, agreement, quality, a calibration's fit and a regrade); more wait their turn, 64 at most, then 429 (one whose client closes the connection leaves the queue unread); while other tenants read on the same instance too (a read in flight, or one taken or given back within the last 0.2 s), each is held to an equal share of its own limit: the limit divided by the number of tenants reading, rounded up; reads that wait keep their order",
};

const BUCKETS_MAX = 100_000;

/** One waiting for a slot: its place in line (first come, first served), and how to wake it. */
interface Waiter {
  turn: number;
  wake: () => void;
  /** the tenant's own limit when it asked (a read's share is computed from it) */
  own: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket brought up to `now` (a new one starts full). It is kept until it would be full
 * again (size / rate from its last use), so one that expired is the same as a new one: the buckets
 * of keys that stopped calling leave the cache (TtlCache's sweep) without giving anyone a token.
 * (A bucket stored before the operator lowered the rate or raised the burst may come back full
 * once, sooner than the new limits would have filled it.)
 */
function refill(buckets: TtlCache<string, Bucket>, id: string, rate: number, size: number, now: number): Bucket {
  let b = buckets.get(id);
  if (!b) {
    b = { tokens: size, at: now };
  } else {
    b.tokens = Math.min(size, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
  }
  buckets.set(id, b, rate > 0 ? Math.ceil((size / rate) * 1000) : Number.POSITIVE_INFINITY);
  return b;
}
/** Reports of one tenant that may wait for a slot on an instance; more are refused (a flood holds no memory). */
const REPORTS_WAITING_MAX = 32;
/** Lists and exports of one tenant that may wait for a slot on an instance (a console opens several at once). */
const READS_WAITING_MAX = 64;
const QUEUED_CACHE_MS = 1_000;
/** How long the limits view's counts (keys, rubric versions, assignments, essays queued) are kept for a tenant. */
const VIEW_COUNTS_MS = 1_000;
/**
 * How long a tenant counts as reading after it last took or gave back a read slot: a client's next
 * read comes right after its last, so a tenant reading in a loop counts between its reads too; a
 * console that polls counts only while its reads run.
 */
const READER_LINGER_MS = 200;
/** The limits each tenant has a share of while other tenants use them too (reads of the database that hold a connection). */
const SHARED_LIMITS = ['readsInFlight', 'reportsInFlight'] as const;
type SharedLimit = (typeof SHARED_LIMITS)[number];
const isShared = (name: string): name is SharedLimit => (SHARED_LIMITS as readonly string[]).includes(name);
/** How often the tenants who stopped reading are forgotten, and reads held to a share that grew woken. */
const READERS_PRUNE_MS = 50;

/**
 * Fair use of the shared service (SPEC §10): per-tenant limits (env defaults, overridden per tenant
 * by the operator), enforced where each resource is spent. Requests per second per key (a token
 * bucket, per instance), essays queued (counted in PostgreSQL, cached for a second), essays
 * grading at once (in the queue's claim, across instances), chat calls in flight, open event
 * streams and provider calls (counted per instance). Over a limit: 429 RATE_LIMITED with
 * Retry-After and RateLimit-* headers, before anything is stored.
 */
@Injectable()
export class LimitsService implements OnModuleDestroy {
  /** the operator's limits per tenant: a change is announced on the bus, so they are held a minute */
  private readonly overrides = new TtlCache<string, Partial<TenantLimits>>(60_000, 100_000);
  /** Times each tenant's limits changed on the cluster (the operator's PUT; few tenants): a waiting request sees it changed under it. */
  private readonly limitsVersion = new Map<string, number>();
  /** token buckets by API key id, and by tenant; bounded (an evicted one starts again full); each kept until it would be full again (see refill) */
  private readonly buckets = new TtlCache<string, Bucket>(Number.POSITIVE_INFINITY, BUCKETS_MAX);
  private readonly tenantBuckets = new TtlCache<string, Bucket>(Number.POSITIVE_INFINITY, BUCKETS_MAX);
  private readonly inUse = {
    chatInFlight: new Map<string, number>(),
    eventStreams: new Map<string, number>(),
    providerCalls: new Map<string, number>(),
    reportsInFlight: new Map<string, number>(),
    readsInFlight: new Map<string, number>(),
  };
  /** who waits for a slot of the limits that queue (by tenant, first come first served: in order of their turns) */
  private readonly waiters = {
    providerCalls: new Map<string, Waiter[]>(),
    reportsInFlight: new Map<string, Waiter[]>(),
    readsInFlight: new Map<string, Waiter[]>(),
  };
  /**
   * The tenants using each shared limit on this instance (reading lists and exports, reading
   * reports): when each last took or gave back a slot of it (performance.now()).
   */
  private readonly users: Record<SharedLimit, Map<string, number>> = { readsInFlight: new Map(), reportsInFlight: new Map() };
  private readonly usersPrunedAt: Record<SharedLimit, number> = { readsInFlight: 0, reportsInFlight: 0 };
  /** while some tenant's reads wait at a share below its limit: wakes them when the share grows */
  private shareWatch: NodeJS.Timeout | undefined;
  /** the last place in line given to a waiter */
  private turns = 0;
  private readonly queued = new Map<string, { count: number; at: number }>();
  /**
   * Essays this instance admitted whose write has not ended yet, by tenant: a count read from the
   * queue meanwhile does not see them (not committed), so they are added to it. (Forgotten on a
   * re-read, a class set still being written let another through: 19 queued under a limit of 10.)
   */
  private readonly queuedPending = new Map<string, number>();
  /** A tenant's count of queued essays being read: the requests that find it stale meanwhile wait for the same read. */
  private readonly queuedReads = new Map<string, Promise<{ count: number; at: number }>>();
  /**
   * The limits view's counts by tenant, read at most once a second (and once for views asked at
   * once): each counts up to its limit's rows (20,001 queued essays by default), so a tenant polling
   * its limits in a loop would otherwise cost the database four such counts a request. Forgotten when
   * this instance makes or revokes something counted, or the operator changes the tenant's limits.
   */
  private readonly viewCounts = new TtlCache<string, Promise<ViewCounts>>(VIEW_COUNTS_MS, 100_000);
  private readonly oldestQueued = new OldestFirst(this.queued);

  constructor(
    private readonly jobs: JobQueue,
    private readonly tenants: TenantsRepository,
    private readonly bus: ClusterBus,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {
    bus.on<{ tenantId: string }>('limits', ({ tenantId }) => this.limitsChanged(tenantId));
    bus.on('resync', () => {
      this.overrides.clear();
      for (const q of Object.values(this.waiters)) for (const tenantId of [...q.keys()]) this.limitsChanged(tenantId);
    });
  }

  /** The tenant's limits: the env defaults with the operator's values for this tenant over them. */
  async of(tenantId: string): Promise<TenantLimits> {
    const own = await this.overrides.getOrLoad(tenantId, () => this.tenants.limits<TenantLimits>(tenantId));
    return { ...this.config.limits, ...own };
  }

  /** Sets (or, with null, clears) some of a tenant's limits; every instance sees it at once. */
  async set(tenantId: string, change: Partial<Record<LimitName, number | null>>): Promise<TenantLimits> {
    tenantId = tenantId.toLowerCase(); // the caches are keyed by the id as stored, not as typed in a path
    const set = Object.fromEntries(Object.entries(change).filter((e): e is [string, number] => typeof e[1] === 'number'));
    const cleared = Object.entries(change).filter(([, v]) => v === null).map(([k]) => k);
    await this.tenants.setLimits(tenantId, set, cleared); // 404 for an unknown tenant
    this.limitsChanged(tenantId);
    this.bus.publish('limits', { tenantId });
    return this.of(tenantId);
  }

  /**
   * The tenant's limits changed (here, or on another instance: the bus): they and its counts are
   * read again, and so do its requests waiting for a slot (a raise lets them in now, not once as
   * many of its slots as the old limit allowed are given back). Each waiter's first is woken; it
   * reads the new limit and, with room, takes its slot and wakes the next.
   */
  private limitsChanged(tenantId: string): void {
    this.overrides.delete(tenantId);
    this.countsChanged(tenantId);
    this.limitsVersion.set(tenantId, (this.limitsVersion.get(tenantId) ?? 0) + 1);
    for (const name of Object.keys(this.waiters) as Array<keyof LimitsService['waiters']>) this.wakeNext(name, tenantId);
  }

  /**
   * One request of a key of the tenant, as every authenticated request takes it (and a console
   * sign-in or sign-out, which need no key to reach): takeRequest with the tenant's limits; the
   * headers for the answer, and the RATE_LIMITED error when a bucket was empty.
   */
  async admitRequest(keyId: string, tenantId: string): Promise<{ headers: RateLimitHeaders; refused?: TenancyError }> {
    const own = await this.of(tenantId);
    const taken = this.takeRequest(keyId, tenantId, own);
    if (!taken.refusedBy) return { headers: taken.headers };
    const [who, burst] = taken.refusedBy === 'tenant' ? ["This tenant's keys together", own.requestBurstPerTenant] : ['This key', own.requestBurstPerKey];
    return { headers: taken.headers, refused: rateLimited(`${who} sent more than ${burst} requests in a burst to this server; slow down`, taken.retryAfterS, burst) };
  }

  /**
   * One request of an API key: a token from its bucket and one from its tenant's (all its keys
   * together, so making more keys does not buy a larger share of the server), or RATE_LIMITED,
   * taking neither. The headers, on every answer, are the bucket nearer to refusing, so a client
   * can slow down before it is refused.
   */
  takeRequest(keyId: string, tenantId: string, limits: TenantLimits, now = Date.now()): { ok: boolean; headers: RateLimitHeaders; retryAfterS: number; refusedBy: 'key' | 'tenant' | null } {
    const key = refill(this.buckets, keyId, limits.requestsPerSecondPerKey, limits.requestBurstPerKey, now);
    const tenant = refill(this.tenantBuckets, tenantId, limits.requestsPerSecondPerTenant, limits.requestBurstPerTenant, now);
    const refusedBy = key.tokens < 1 ? 'key' : tenant.tokens < 1 ? 'tenant' : null;
    if (!refusedBy) {
      key.tokens -= 1;
      tenant.tokens -= 1;
    }
    const shown =
      tenant.tokens < key.tokens ? { b: tenant, rate: limits.requestsPerSecondPerTenant, size: limits.requestBurstPerTenant } : { b: key, rate: limits.requestsPerSecondPerKey, size: limits.requestBurstPerKey };
    const wait = (b: Bucket, rate: number) => (b.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / rate)));
    const retryAfterS = refusedBy ? Math.max(wait(key, limits.requestsPerSecondPerKey), wait(tenant, limits.requestsPerSecondPerTenant)) : 0;
    return {
      ok: !refusedBy,
      retryAfterS,
      refusedBy,
      headers: {
        'ratelimit-limit': String(shown.size),
        'ratelimit-remaining': String(Math.floor(shown.b.tokens)),
        'ratelimit-reset': String(Math.max(retryAfterS, Math.ceil((shown.size - shown.b.tokens) / shown.rate))),
      },
    };
  }

  /** A slot of a per-instance limit (chat calls in flight, event streams), or RATE_LIMITED at once. */
  async acquire(tenantId: string, name: 'chatInFlight' | 'eventStreams'): Promise<Release> {
    const limit = (await this.of(tenantId))[name];
    const used = this.inUse[name].get(tenantId) ?? 0;
    if (used >= limit) {
      throw rateLimited(`This tenant already has ${limit} ${name === 'chatInFlight' ? 'chat completions in flight' : 'event streams open'} on this server`, 1, limit);
    }
    return this.hold(name, tenantId);
  }

  /**
   * A provider-call slot of the tenant: waits (first come, first served) while the tenant has
   * `providerCalls` calls at providers on this instance, so one tenant's flood cannot take every
   * connection, or trip the providers' rate limits and breakers for everyone. Not shared between
   * the tenants calling at once, as reads are: no capacity of the instance is divided here (each
   * call waits on a provider, not on this instance's database or cores), so a share would slow
   * every school's grading while many grade at once, with nothing gained by any of them.
   */
  providerSlot(tenantId: string, signal?: AbortSignal | (() => AbortSignal)): Promise<Release> {
    return this.slot('providerCalls', tenantId, signal);
  }

  /**
   * A slot to read the tenant's ledger reports (usage, stats, the monthly report): waits while the
   * tenant has `reportsInFlight` of them reading on this instance, so one tenant's reports (a part
   * day read from the ledger can be a busy day's rows) never hold more than that many of the
   * instance's database connections.
   */
  reportSlot(tenantId: string, signal?: AbortSignal): Promise<Release> {
    return this.slot('reportsInFlight', tenantId, signal, REPORTS_WAITING_MAX);
  }

  /**
   * Reads a ledger report within the tenant's reportSlot. With `signal` (the client went away),
   * a report still waiting for its slot leaves the queue and is not read.
   */
  report<T>(tenantId: string, read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.within(this.reportSlot(tenantId, signal), read, signal);
  }

  /**
   * A slot to read one of the tenant's lists or exports (essays, assignments, grades.csv,
   * agreement and quality, a calibration's fit or a regrade): waits while the tenant has
   * `readsInFlight` of them on this instance, so that one tenant's flood of in-limit reads holds at
   * most that many of the instance's database connections and other tenants' reads do not queue
   * behind it.
   */
  readSlot(tenantId: string, signal?: AbortSignal): Promise<Release> {
    return this.slot('readsInFlight', tenantId, signal, READS_WAITING_MAX);
  }

  /** Runs a list or export read within the tenant's readSlot (as `report` does for reports). */
  read<T>(tenantId: string, read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.within(this.readSlot(tenantId, signal), read, signal);
  }

  private async within<T>(slot: Promise<Release>, read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await slot;
    if (signal?.aborted) {
      // Gone while its turn came: the slot passes to the next.
      release();
      signal.throwIfAborted();
    }
    try {
      return await read();
    } finally {
      release();
    }
  }

  /**
   * A slot of a limit that queues; with `maxWaiting`, RATE_LIMITED when that many of the tenant's
   * already wait. A waiter whose `signal` aborts leaves the queue at once, with the signal's reason.
   * A `signal` given as a function is made only if the slot must be waited for.
   */
  private async slot(
    name: keyof LimitsService['waiters'],
    tenantId: string,
    lazySignal?: AbortSignal | (() => AbortSignal),
    maxWaiting = Number.POSITIVE_INFINITY,
  ): Promise<Release> {
    // (Read again when the operator changes the tenant's limits while it waits: the version is taken
    // before the limits are read, so that a change landing during that read is seen as one.)
    let version = this.limitsVersion.get(tenantId);
    let own = (await this.of(tenantId))[name];
    const limit = () => (isShared(name) ? this.share(name, tenantId, own) : own);
    let turn: number | undefined;
    // A new request goes behind the tenant's requests already waiting, even when there is room
    // (the share grew and they are being woken): first come, first served.
    while ((this.inUse[name].get(tenantId) ?? 0) >= limit() || (turn === undefined && this.waiters[name].has(tenantId))) {
      if (this.limitsVersion.get(tenantId) !== version) {
        version = this.limitsVersion.get(tenantId);
        own = (await this.of(tenantId))[name];
        continue;
      }
      const signal = typeof lazySignal === 'function' ? (lazySignal = lazySignal()) : lazySignal;
      signal?.throwIfAborted();
      if (turn === undefined && (this.waiters[name].get(tenantId)?.length ?? 0) >= maxWaiting) {
        // RateLimit-Limit is what the tenant is held to now: its share while other tenants read here.
        const share = limit();
        const held = share < own ? ` (held to ${share} of its ${own} at once while other tenants read on this server too)` : '';
        throw rateLimited(`This tenant already has ${maxWaiting} requests waiting for a slot of ${name} on this server${held}`, 1, share);
      }
      if (turn === undefined && (this.inUse[name].get(tenantId) ?? 0) < limit()) this.wakeNext(name, tenantId);
      // One woken but still over its share (another tenant began reading meanwhile) waits again in
      // its own place in line, before the tenant's requests that came after it.
      turn ??= ++this.turns;
      if (isShared(name)) this.watchShares();
      await this.waitTurn(this.waiters[name], tenantId, turn, own, signal);
    }
    const release = this.hold(name, tenantId);
    // Room for more (the share grew: another tenant stopped reading): the next waiter tries too.
    if ((this.inUse[name].get(tenantId) ?? 0) < limit()) this.wakeNext(name, tenantId);
    return release;
  }

  /**
   * A tenant's share of a shared limit (`readsInFlight`, `reportsInFlight`) on this instance: all of
   * it while it reads alone; while other tenants read too (a slot of the same limit in flight, or
   * one taken or given back within READER_LINGER_MS), its limit divided by the number of tenants
   * reading, rounded up. A flood's reads in flight share the service's event loop, the database
   * and the cores with every other tenant's, so the flood is held to half its slots while another
   * school reads too (BENCHMARKS.md, one tenant's read flood: the other school's p95 less than half,
   * the flood's pages a tenth fewer meanwhile). Reports are shared the same way: each is a read of
   * the ledger that holds a database connection while it runs.
   */
  private share(name: SharedLimit, tenantId: string, own: number): number {
    this.pruneUsers(name, performance.now());
    const users = this.users[name];
    const reading = users.size + (users.has(tenantId) ? 0 : 1);
    return reading <= 1 ? own : Math.ceil(own / reading);
  }

  /** Forgets the tenants that stopped using a shared limit (at most every READERS_PRUNE_MS). */
  private pruneUsers(name: SharedLimit, now: number): void {
    if (now - this.usersPrunedAt[name] < READERS_PRUNE_MS) return;
    this.usersPrunedAt[name] = now;
    for (const [id, at] of this.users[name]) {
      if (now - at >= READER_LINGER_MS && !this.inUse[name].has(id)) this.users[name].delete(id);
    }
  }

  /**
   * While reads wait at a share below their tenant's limit, looks every READERS_PRUNE_MS for a share
   * that grew (the other tenants stopped reading) and wakes the first of each such tenant's reads;
   * it takes its slot and wakes the next while there is room. Without it they would wait for one
   * of the tenant's own reads to end, which for an export or a report can be long.
   */
  private watchShares(): void {
    if (this.shareWatch) return;
    this.shareWatch = setInterval(() => {
      let held = false;
      for (const name of SHARED_LIMITS) {
        for (const [tenantId, q] of this.waiters[name]) {
          const share = this.share(name, tenantId, q[0].own);
          if ((this.inUse[name].get(tenantId) ?? 0) < share) this.wakeNext(name, tenantId);
          else if (share < q[0].own) held = true;
        }
      }
      if (!held) this.stopWatchingShares();
    }, READERS_PRUNE_MS);
    this.shareWatch.unref();
  }

  private stopWatchingShares(): void {
    clearInterval(this.shareWatch);
    this.shareWatch = undefined;
  }

  onModuleDestroy(): void {
    this.stopWatchingShares();
  }

  /**
   * Waits to be woken by a release of the tenant's slot. An abort takes the waiter out of the
   * queue (a woken waiter is out of it already: it goes on to take the slot, so no wake is lost).
   */
  private waitTurn(waiters: Map<string, Waiter[]>, tenantId: string, turn: number, own: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const q = waiters.get(tenantId);
        const at = q ? q.indexOf(waiter) : -1;
        if (at < 0) return; // woken already
        q!.splice(at, 1);
        if (!q!.length) waiters.delete(tenantId);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        turn,
        own,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const q = waiters.get(tenantId) ?? [];
      // In order of turns: a new waiter goes last, one waiting again goes back to its place.
      let at = q.length;
      while (at > 0 && q[at - 1].turn > turn) at--;
      q.splice(at, 0, waiter);
      waiters.set(tenantId, q);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private hold(name: keyof LimitsService['inUse'], tenantId: string): Release {
    const counts = this.inUse[name];
    counts.set(tenantId, (counts.get(tenantId) ?? 0) + 1);
    if (isShared(name)) this.users[name].set(tenantId, performance.now());
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (counts.get(tenantId) ?? 1) - 1;
      if (left > 0) counts.set(tenantId, left);
      else counts.delete(tenantId);
      if (isShared(name)) this.users[name].set(tenantId, performance.now());
      // The limits that queue wake the tenant's next waiter.
      if (name in this.waiters) this.wakeNext(name as keyof LimitsService['waiters'], tenantId);
    };
  }

  /** Wakes the tenant's first waiter for a slot of `name`, if any (it checks its turn again). */
  private wakeNext(name: keyof LimitsService['waiters'], tenantId: string): void {
    const waiting = this.waiters[name];
    const q = waiting.get(tenantId);
    const next = q?.shift();
    if (q && !q.length) waiting.delete(tenantId);
    next?.wake();
  }

  /**
   * Room for `n` more queued essays, or RATE_LIMITED. The count is read from the queue at most
   * once a second per tenant (bounded by the limit), plus what this instance queued since. The
   * requests that find it stale together wait for one read and then take their room from it one
   * after another (each its own read, they all checked against the same count and all passed: six
   * class sets of 50 sent at once queued 300 under a limit of 50).
   */
  async admitQueued(tenantId: string, n: number): Promise<(stored: boolean) => void> {
    const limit = (await this.of(tenantId)).essaysQueued;
    if (n > limit) {
      // It will never fit: 413, as a batch over MAX_BATCH (a 429 told the client to try again, for ever).
      throw new ApiError('PAYLOAD_TOO_LARGE', `A class set of ${n} essays is more than this tenant may have waiting to be graded (limit ${limit}): send it in parts of at most ${limit}`);
    }
    let c = this.queued.get(tenantId);
    if (!c || Date.now() - c.at > QUEUED_CACHE_MS) c = await this.readQueued(tenantId, limit);
    // From here to the count's update nothing waits: no other request of this instance comes between.
    if (c.count + n > limit) {
      const room = Math.max(0, limit - c.count);
      throw rateLimited(`This tenant already has ${c.count} essays waiting to be graded (limit ${limit}, room for ${room} more); try again when some are done`, 5, limit, room);
    }
    c.count += n;
    this.queuedPending.set(tenantId, (this.queuedPending.get(tenantId) ?? 0) + n);
    let ended = false;
    // The write ended: its essays are in the queue's count from now on; not stored, their room is given back.
    return (stored) => {
      if (ended) return;
      ended = true;
      const left = (this.queuedPending.get(tenantId) ?? n) - n;
      if (left > 0) this.queuedPending.set(tenantId, left);
      else this.queuedPending.delete(tenantId);
      const now = this.queued.get(tenantId);
      if (!stored && now) now.count = Math.max(0, now.count - n);
    };
  }

  private readQueued(tenantId: string, limit: number): Promise<{ count: number; at: number }> {
    let read = this.queuedReads.get(tenantId);
    if (!read) {
      const at = Date.now();
      // The writes still going when the read begins, as they are then: one that ends while the read
      // is in flight may be in its snapshot or not, and counts here either way (at worst twice, for a
      // second). Taken when the read ended, one that ended meanwhile was counted nowhere.
      const pending = this.queuedPending.get(tenantId) ?? 0;
      read = this.countQueued(tenantId, limit + 1)
        .then((count) => {
          const c = { count: count + pending, at };
          if (!this.queued.has(tenantId) && this.queued.size >= BUCKETS_MAX) this.queued.delete(this.oldestQueued.next()!);
          this.queued.set(tenantId, c);
          return c;
        })
        .finally(() => this.queuedReads.delete(tenantId));
      this.queuedReads.set(tenantId, read);
    }
    return read;
  }

  private countQueued(tenantId: string, cap: number): Promise<number> {
    return this.jobs.queuedGradings(tenantId, cap);
  }

  async view(tenantId: string): Promise<LimitsView> {
    const limits = await this.of(tenantId);
    return {
      limits,
      usage: {
        ...(await this.counts(tenantId, limits)),
        chatInFlight: this.inUse.chatInFlight.get(tenantId) ?? 0,
        eventStreams: this.inUse.eventStreams.get(tenantId) ?? 0,
        providerCalls: this.inUse.providerCalls.get(tenantId) ?? 0,
        reportsInFlight: this.inUse.reportsInFlight.get(tenantId) ?? 0,
        readsInFlight: this.inUse.readsInFlight.get(tenantId) ?? 0,
      },
      shares: { readsInFlight: this.share('readsInFlight', tenantId, limits.readsInFlight), reportsInFlight: this.share('reportsInFlight', tenantId, limits.reportsInFlight) },
      scope: LIMIT_SCOPES,
    };
  }

  /** The view's counts of the tenant: at most a second old (VIEW_COUNTS_MS), one read for views asked at once. */
  private counts(tenantId: string, limits: TenantLimits): Promise<ViewCounts> {
    const key = tenantId.toLowerCase();
    let counts = this.viewCounts.get(key);
    if (!counts) {
      counts = (async () => ({
        apiKeys: await this.tenants.countUpTo(tenantId, 'apiKeys', limits.apiKeys),
        rubricVersions: await this.tenants.countUpTo(tenantId, 'rubricVersions', limits.rubricVersions),
        assignments: await this.tenants.countUpTo(tenantId, 'assignments', limits.assignments),
        essaysQueued: await this.countQueued(tenantId, limits.essaysQueued + 1),
      }))();
      this.viewCounts.set(key, counts);
      // A failed read is not kept: the next view reads again.
      counts.catch(() => {
        if (this.viewCounts.get(key) === counts) this.viewCounts.delete(key);
      });
    }
    return counts;
  }

  /** Something counted changed (made or revoked here, or the limits changed): the view counts again. */
  countsChanged(tenantId: string): void {
    this.viewCounts.delete(tenantId.toLowerCase());
  }

  /**
   * Makes one thing counted against a per-tenant limit (API keys, rubric versions, assignments):
   * counted with the tenant's row locked, so that things made at once are counted in turn; past
   * the limit, 429 RATE_LIMITED (SPEC §10) and nothing made.
   */
  async withinCount<T>(
    tenantId: string,
    limit: CountedLimit,
    refusal: (max: number) => string,
    make: (tx: EntityManager) => Promise<T>,
  ): Promise<T> {
    const max = (await this.of(tenantId))[limit];
    return this.tenants.inTurn(tenantId, async (tx) => {
      const n = await this.tenants.countUpTo(tenantId, limit, max, tx);
      if (n >= max) throw rateLimited(refusal(max), 60, max);
      return make(tx);
    }).finally(() => this.countsChanged(tenantId));
  }
}

type ViewCounts = Pick<LimitsView['usage'], 'apiKeys' | 'rubricVersions' | 'assignments' | 'essaysQueued'>;

export function rateLimited(message: string, retryAfterS: number, limit: number, remaining = 0): TenancyError {
  return new TenancyError('RATE_LIMITED', message, undefined, {
    'retry-after': String(retryAfterS),
    'ratelimit-limit': String(limit),
    'ratelimit-remaining': String(remaining),
    'ratelimit-reset': String(retryAfterS),
  });
}
