import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { AnswerKey, answerKeyHorizon, answerKeysSince, countLiveAnswers, KeyHorizon, liveAnswerKeys } from '../billing/answer-cache.repository';
import { loggableError } from '../common/error-rendering';
import { KeyFilter } from './key-filter';

export interface CacheIndexOptions {
  /** how often the keys other instances stored are read (0: no index; every miss asks the database) */
  pollMs: number;
  /** at most this many keys; past it, no index (every miss asks the database) */
  maxKeys: number;
  /** a build reads the live keys this many at a time */
  pageSize?: number;
  now?: () => number;
}

/**
 * Which keys the PostgreSQL answer cache may hold, kept in each instance: a cache miss of a key no
 * instance stored is answered without a database lookup. On the miss path that lookup was one
 * statement a call, and the statement a call that most loads the database and wakes it.
 *
 * - A filter (key-filter.ts) of every live key: built at start from the table, and added to from
 *   every answer this instance stores, and from the rows other instances store, read every
 *   `pollMs` (one statement for all tenants, whatever the traffic). The read is exact: it misses no
 *   row committed since the last one, whatever order transactions commit in (answerKeysSince).
 * - It never says "not there" of a key stored here, or stored elsewhere before the last read. A key
 *   another instance stored since the last read (at most `pollMs` ago) may be missed: that call
 *   is paid again, as two identical calls at the same moment are.
 * - The filter says "maybe" of about 1% of absent keys, and of keys since deleted or expired: those
 *   go to the database as before.
 * - It is trusted only while a read has succeeded lately (four polls, at least 2 s). Before the
 *   first build, when the database does not answer, or past `maxKeys`, every miss asks the
 *   database, as without an index. A build that failed is tried again after ten polls (5 s at least).
 * - Rebuilt when full (twice the size; at most once a minute) and every hour (forgetting expired and
 *   deleted keys). A build reads the table a page at a time and the old filter serves meanwhile.
 */
export class CacheIndex {
  private readonly logger = new Logger(CacheIndex.name);
  private readonly now: () => number;
  private filter: KeyFilter | null = null;
  private horizon: KeyHorizon | null = null;
  /** when the last successful read (poll or build) took its snapshot */
  private readAt = -Infinity;
  private timer?: NodeJS.Timeout;
  /** the read under way, if any (one at a time) */
  private reading: Promise<void> | null = null;
  private building: Promise<void> | null = null;
  /** when the last build started, and when the next is due (hourly; soon after one that failed) */
  private builtAt = -Infinity;
  private nextBuildAt = -Infinity;
  /** the reads are failing (warned once, until one succeeds) */
  private failing = false;
  /** keys added while a build runs: they go into the new filter too */
  private addedDuringBuild: AnswerKey[] | null = null;

  constructor(
    private readonly ds: DataSource,
    private readonly opts: CacheIndexOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.opts.pollMs > 0;
  }

  /** How long a read stays good: past it, the index answers "maybe" to everything. */
  private get staleMs(): number {
    return Math.max(4 * this.opts.pollMs, 2_000);
  }

  /** The filter is up to date (built, and read lately). */
  get trusted(): boolean {
    return this.filter !== null && this.now() - this.readAt <= this.staleMs;
  }

  /** False only when the table holds no live row of this key (as of the last read). */
  mayHold(tenantId: string, key: string): boolean {
    if (!this.trusted) return true;
    return this.filter!.mayHold(tenantId, key);
  }

  /** A key this instance stored. */
  add(tenantId: string, key: string): void {
    this.filter?.add(tenantId, key);
    this.addedDuringBuild?.push({ tenantId, key });
    if (this.filter?.full) this.rebuildWhenFull();
  }

  /** A full filter answers "maybe" more often; a bigger one is built, at most once a minute. */
  private rebuildWhenFull(): void {
    if (this.now() - this.builtAt >= 60_000) void this.rebuild();
  }

  /** Builds the index, then reads every `pollMs`. */
  start(): void {
    if (!this.enabled || this.timer) return;
    void this.rebuild();
    this.timer = setInterval(() => void this.refresh(), this.opts.pollMs);
    this.timer.unref();
  }

  /** Stops reading; resolves once the read and the build under way are done (before the pool closes). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all([this.reading, this.building]);
  }

  /** One round of upkeep (every `pollMs`): the build when one is due, and a read; resolves when both are done. */
  async refresh(): Promise<void> {
    const build = this.now() >= this.nextBuildAt ? this.rebuild() : undefined;
    await this.read();
    await build;
  }

  private read(): Promise<void> {
    this.reading ??= this.poll()
      .then(() => {
        if (this.failing) this.logger.log({ msg: 'cache index reads again' });
        this.failing = false;
      })
      .catch((err: Error) => {
        if (!this.failing) this.logger.warn({ msg: 'cache index read failed: misses ask the database until one succeeds', err: loggableError(err) });
        this.failing = true;
      })
      .finally(() => {
        this.reading = null;
      });
    return this.reading;
  }

  /** Reads the keys stored since the last read (by any instance) into the filter. */
  async poll(): Promise<void> {
    const filter = this.filter;
    const since = this.horizon;
    if (!filter || !since) return;
    const startedAt = this.now();
    const { keys, horizon } = await answerKeysSince(this.ds.manager, since);
    if (this.filter !== filter) return; // a build replaced the filter meanwhile: it reads from its own horizon
    for (const k of keys) filter.add(k.tenantId, k.key);
    this.horizon = horizon;
    this.readAt = startedAt;
    if (filter.full) this.rebuildWhenFull();
  }

  /** Starts a build unless one runs; resolves when it is done. */
  rebuild(): Promise<void> {
    this.building ??= this.build()
      .catch((err: Error) => {
        this.nextBuildAt = this.now() + Math.max(10 * this.opts.pollMs, 5_000);
        this.logger.warn({ msg: 'cache index build failed: misses ask the database until one succeeds', err: loggableError(err) });
      })
      .finally(() => {
        this.building = null;
        this.addedDuringBuild = null;
      });
    return this.building;
  }

  private async build(): Promise<void> {
    this.builtAt = this.now();
    this.nextBuildAt = this.builtAt + 3_600_000;
    const startedAt = this.now();
    // The horizon first: every row committed after it is read by the polls that follow.
    const horizon = await answerKeyHorizon(this.ds.manager);
    const live = await countLiveAnswers(this.ds.manager);
    if (live > this.opts.maxKeys) {
      this.filter = null;
      this.logger.warn({ msg: 'cache index off: more live answers than LLM_CACHE_INDEX_MAX_KEYS; misses ask the database', live, maxKeys: this.opts.maxKeys });
      return;
    }
    const next = new KeyFilter(Math.min(this.opts.maxKeys, Math.max(2 * live, 100_000)));
    this.addedDuringBuild = [];
    const pageSize = this.opts.pageSize ?? 10_000;
    for (let after: AnswerKey | null = null; ; ) {
      const page = await liveAnswerKeys(this.ds.manager, after, pageSize);
      for (const k of page) next.add(k.tenantId, k.key);
      if (page.length < pageSize) break;
      after = page[page.length - 1];
    }
    for (const k of this.addedDuringBuild) next.add(k.tenantId, k.key);
    this.filter = next;
    this.horizon = horizon;
    this.readAt = startedAt;
    this.logger.log({ msg: 'cache index built', keys: next.count, bytes: next.bytes });
  }
}
