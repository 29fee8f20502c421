import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Nanos } from '../common/money';
import { assertTenantId } from '../db/tenant-scope';
import { compactJson } from './compression';
import type { Usage } from './types';
import { AppConfig, CONFIG } from '../config/app-config';
import { MemoryCache } from './memory-cache';
import { CacheIndex } from './cache-index';
import { KeyedBatcher } from '../common/keyed-batcher';
import { ClusterBus } from '../db/cluster-bus';
import { CacheEntry, deleteAnswer, deleteAnswersOfErased, deleteExpiredAnswers, findAnswers, storeAnswers } from '../billing/answer-cache.repository';

/** The one queue of cache statements (each row carries its tenant). */
const BATCH = 'all';

/** A string on V8's heap: a header, then one byte a character when all are Latin-1, else two. */
function heapBytes(s: string): number {
  return 16 + (/[^\u0000-\u00ff]/.test(s) ? 2 : 1) * s.length;
}

/** An answer's bookkeeping in the in-process tier beyond its strings (ResponseCache.heldBytes). */
const HELD_ANSWER_BYTES = 560;

export interface CachedAnswer {
  content: string;
  provider: string;
  model: string;
  finishReason: string;
  usage: Usage;
  /** what the original call cost: a hit saves this much */
  costNanos: Nanos;
  /** the answer came from a repair (the model's first answer was invalid) */
  repaired?: boolean;
}

/**
 * Exact-match response cache in PostgreSQL, always scoped to one tenant. Keys are SHA-256 of what
 * the caller says makes two requests the same (grading: rubric version, prompt version, tier and
 * the normalized essay; chat: the normalized request). Only successful, valid answers are stored.
 * Never a semantic cache: similar-looking essays must not share a grade.
 *
 * In front of the table, a bounded in-process tier (memory-cache.ts) answers again the answers
 * this instance read lately without a round trip; it is filled on a database hit (not on a store:
 * see stored()), emptied of a key on delete. A hit from memory is not counted in llm_cache.hits (the ledger
 * counts every hit). Two instances may hold different answers for one key for a while (both valid
 * answers to the same request) when one stores after the other read. The lookups (and the stores)
 * made at the same moment go to the database as one statement, every key paired with its tenant
 * (perRowTenantQuery): with thousands of schools each sending now and then, that is what keeps the
 * cache to a fraction of a statement per call.
 *
 * And in front of the lookup, the cache's index (cache-index.ts): a key no instance has stored is
 * a miss without a statement at all. A key another instance stored less than LLM_CACHE_INDEX_POLL_MS
 * ago may be missed (paid again, as two identical calls at the same moment are).
 */
/** The bus topic of erased answers' keys, and how many keys a message carries (NOTIFY payloads stay small). */
const FORGET_TOPIC = 'answers-erased';
const FORGET_BATCH = 50;

@Injectable()
export class ResponseCache implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(ResponseCache.name);

  private readonly memory: MemoryCache<CachedAnswer>;
  /** which keys the table may hold: a miss of a key no instance stored asks no statement */
  readonly index: CacheIndex;
  /** the lookups, and the stores, of one moment go to the database together (KeyedBatcher), each row with its tenant */
  private readonly lookups = new KeyedBatcher<{ tenantId: string; key: string }, { answer: CachedAnswer; expiresAt: number } | null>((_, items) => this.lookupMany(items));
  private readonly writes = new KeyedBatcher<{ tenantId: string; key: string; answer: CachedAnswer; ttlSeconds: number; essayId?: string }, void>((_, items) => this.writeMany(items));

  /** how many erasures this instance has heard of: a lookup that began before one does not fill the tier */
  private forgets = 0;

  constructor(
    private readonly ds: DataSource,
    @Inject(CONFIG) config: AppConfig,
    private readonly bus: ClusterBus,
  ) {
    this.memory = new MemoryCache({ maxBytes: config.llm.cacheMemoryBytes, maxBytesPerTenant: config.llm.cacheMemoryBytesPerTenant });
    this.index = new CacheIndex(ds, { pollMs: config.llm.cacheIndexPollMs, maxKeys: config.llm.cacheIndexMaxKeys });
    bus.on<{ tenantId: string; keys: string[] }>(FORGET_TOPIC, ({ tenantId, keys }) => {
      this.forgets++;
      for (const key of keys) this.memory.delete(tenantId, key);
    });
    // Delivery is at most once: a listener that was cut off may have missed an erasure.
    bus.on('resync', () => {
      this.forgets++;
      this.memory.clear();
    });
  }

  onApplicationBootstrap(): void {
    this.index.start();
  }

  /** The index stops before the pool closes (modules are destroyed before the application shuts down). */
  onModuleDestroy(): Promise<void> {
    return this.index.stop();
  }

  /**
   * About what an answer held in the in-process tier takes on the heap: its strings, and
   * HELD_ANSWER_BYTES for the rest (the answer object, its usage and cost, the tier's id for it
   * with the key, its entry and a slot in each of its two maps), measured by
   * `node --expose-gc bench/probe-memory-cache.js`. The tier's bound (LLM_CACHE_MEMORY_MB) is then
   * a bound on heap, whatever the answers' length (a short answer costs mostly its bookkeeping).
   */
  static heldBytes(a: CachedAnswer): number {
    return heapBytes(a.content) + heapBytes(a.provider) + heapBytes(a.model) + heapBytes(a.finishReason) + HELD_ANSWER_BYTES;
  }

  static key(parts: unknown): string {
    return createHash('sha256').update(compactJson(parts)).digest('hex');
  }

  async get(tenantId: string, key: string): Promise<CachedAnswer | null> {
    const held = this.memory.get(tenantId, key);
    if (held) return held;
    assertTenantId(tenantId, 'a cache lookup'); // before it joins others' in a statement
    if (!this.index.mayHold(tenantId, key)) return null;
    const forgets = this.forgets;
    const found = await this.lookups.submit(BATCH, { tenantId, key });
    if (!found) return null;
    // An erasure heard meanwhile may have deleted this row after it was read: it is not held.
    if (forgets === this.forgets) this.memory.set(tenantId, key, found.answer, ResponseCache.heldBytes(found.answer), found.expiresAt - Date.now());
    return found.answer;
  }

  /**
   * Stores an answer; answered once its row is written (with the others stored at the same moment).
   * The in-process tier takes it on its first read (see stored()), not here.
   */
  async put(tenantId: string, key: string, answer: CachedAnswer, ttlSeconds: number, essayId?: string): Promise<void> {
    assertTenantId(tenantId, 'a cache store');
    await this.writes.submit(BATCH, { tenantId, key, answer, ttlSeconds, essayId });
    this.stored(tenantId, key);
  }

  /** The lookups of one moment, of every tenant, in one statement (findAnswers); each row found counts a hit. */
  private async lookupMany(items: Array<{ tenantId: string; key: string }>): Promise<Array<{ answer: CachedAnswer; expiresAt: number } | null>> {
    return (await findAnswers(this.ds.manager, items)).map((r) =>
      r
        ? {
            answer: {
              content: r.content,
              provider: r.provider,
              model: r.model,
              finishReason: r.finishReason,
              usage: { inputTokens: r.inputTokens, cachedInputTokens: r.cachedInputTokens, outputTokens: r.outputTokens },
              costNanos: r.costNanos,
              repaired: r.repaired,
            },
            expiresAt: r.expiresAt.getTime(),
          }
        : null,
    );
  }

  /** The answers stored at one moment, of every tenant, in one statement (storeAnswers). */
  private async writeMany(items: Array<{ tenantId: string; key: string; answer: CachedAnswer; ttlSeconds: number; essayId?: string }>): Promise<void[]> {
    await storeAnswers(
      this.ds.manager,
      items.map((i) => ({ tenantId: i.tenantId, ...ResponseCache.entry(i.key, i.answer, i.ttlSeconds, i.essayId) })),
    );
    return items.map(() => undefined);
  }

  /** An answer as the row that keeps it (cacheRowsSql). */
  static entry(key: string, a: CachedAnswer, ttlSeconds: number, essayId?: string): CacheEntry {
    return {
      key,
      essayId: essayId ?? null,
      content: a.content,
      provider: a.provider,
      model: a.model,
      finishReason: a.finishReason,
      inputTokens: a.usage.inputTokens,
      cachedInputTokens: a.usage.cachedInputTokens,
      outputTokens: a.usage.outputTokens,
      costNanos: a.costNanos,
      repaired: a.repaired === true,
      ttlSeconds,
    };
  }

  /**
   * An answer's row is written (by put(), or with the settlement of the call that paid for it): the
   * index learns its key. The in-process tier does not take the answer now but when a lookup first
   * finds its row (get()): most answers stored are never asked for again (every essay is
   * different), and holding each from its store filled the tier with them, 50 MB of heap that every
   * mark-compact walked and that was replaced as fast as calls came (bench:peers, BENCHMARKS.md).
   * An answer asked for again costs one database lookup (batched with the moment's others), then
   * none while the tier holds it. A key the tier already holds (a request sent again with
   * Cache-Control: no-cache, whose new answer replaced the row) is dropped from it, so that this
   * instance's next read takes the new answer from the row.
   */
  stored(tenantId: string, key: string): void {
    this.index.add(tenantId, key);
    this.memory.delete(tenantId, key);
  }

  /** Waits for the stores under way (shutdown). */
  drain(): Promise<void> {
    return this.writes.drain();
  }

  /**
   * An essay is being erased: its answers' rows are deleted in the erasure's transaction (`m`,
   * deleteEssayAnswers) and the instances of other processes are told in it too (a NOTIFY that
   * PostgreSQL delivers at the commit: ClusterBus.publishWith). Call the returned function after the
   * commit: this process's instances then drop the keys from their in-process tiers.
   */
  async forget(m: EntityManager, tenantId: string, keys: string[]): Promise<() => void> {
    const after: Array<() => void> = [];
    for (let i = 0; i < keys.length; i += FORGET_BATCH) after.push(await this.bus.publishWith(m, FORGET_TOPIC, { tenantId, keys: keys.slice(i, i + FORGET_BATCH) }));
    return () => after.forEach((deliver) => deliver());
  }

  /**
   * Deletes, in the transaction `m`, the answers stored for essays erased in the last `hours` (a
   * grading that outlived its lease can settle after the erasure); the returned function, called
   * after the commit, drops them from this process's tiers (other processes hear at the commit).
   */
  async forgetErased(m: EntityManager, hours: number): Promise<{ count: number; deliver: () => void }> {
    const byTenant = new Map<string, string[]>();
    for (const k of await deleteAnswersOfErased(m, hours)) {
      const keys = byTenant.get(k.tenantId) ?? [];
      keys.push(k.key);
      byTenant.set(k.tenantId, keys);
    }
    const after: Array<() => void> = [];
    for (const [tenantId, keys] of byTenant) after.push(await this.forget(m, tenantId, keys));
    return { count: [...byTenant.values()].reduce((n, keys) => n + keys.length, 0), deliver: () => after.forEach((d) => d()) };
  }

  async delete(tenantId: string, key: string): Promise<void> {
    this.memory.delete(tenantId, key);
    await deleteAnswer(this.ds.manager, tenantId, key);
  }

  /** Drops expired entries of every tenant (maintenance). */
  async purgeExpired(): Promise<number> {
    const n = await deleteExpiredAnswers(this.ds.manager);
    if (n) this.logger.log({ msg: 'expired cache entries removed', count: n });
    return n;
  }
}
