import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Nanos } from '../common/money';
import { tenantQuery } from '../db/tenant-scope';
import { compactJson } from './compression';
import type { Usage } from './types';
import { AppConfig, CONFIG } from '../config/app-config';
import { MemoryCache } from './memory-cache';

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
 * In front of the table, a bounded in-process tier (memory-cache.ts) answers the answers this
 * instance served or stored lately without a round trip; it is filled on a database hit and on a
 * store, emptied of a key on delete. A hit from memory is not counted in llm_cache.hits (the ledger
 * counts every hit). Two instances may hold different answers for one key for a while (both valid
 * answers to the same request) when one stores after the other read.
 */
@Injectable()
export class ResponseCache {
  private readonly logger = new Logger(ResponseCache.name);

  private readonly memory: MemoryCache<CachedAnswer>;

  constructor(
    private readonly ds: DataSource,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.memory = new MemoryCache({ maxBytes: config.llm.cacheMemoryBytes, maxBytesPerTenant: config.llm.cacheMemoryBytesPerTenant });
  }

  /** About what an answer takes in memory: its text (UTF-16) and its fields. */
  private static bytes(a: CachedAnswer): number {
    return 2 * (a.content.length + a.provider.length + a.model.length + a.finishReason.length) + 200;
  }

  static key(parts: unknown): string {
    return createHash('sha256').update(compactJson(parts)).digest('hex');
  }

  async get(tenantId: string, key: string): Promise<CachedAnswer | null> {
    const held = this.memory.get(tenantId, key);
    if (held) return held;
    const rows = await tenantQuery<Record<string, string | number | Date>>(
      this.ds.manager,
      tenantId,
      `UPDATE llm_cache SET hits = hits + 1
        WHERE tenant_id = $1 AND cache_key = $2 AND expires_at > now()
        RETURNING content, provider, model, finish_reason, input_tokens, cached_input_tokens, output_tokens, cost_nanos, repaired, expires_at`,
      [key],
    );
    const r = rows[0];
    if (!r) return null;
    const answer: CachedAnswer = {
      content: String(r.content),
      provider: String(r.provider),
      model: String(r.model),
      finishReason: String(r.finish_reason),
      usage: { inputTokens: Number(r.input_tokens), cachedInputTokens: Number(r.cached_input_tokens), outputTokens: Number(r.output_tokens) },
      costNanos: BigInt(r.cost_nanos as string),
      repaired: (r.repaired as unknown) === true,
    };
    this.memory.set(tenantId, key, answer, ResponseCache.bytes(answer), (r.expires_at as Date).getTime() - Date.now());
    return answer;
  }

  async put(tenantId: string, key: string, answer: CachedAnswer, ttlSeconds: number): Promise<void> {
    await tenantQuery(
      this.ds.manager,
      tenantId,
      `INSERT INTO llm_cache (tenant_id, cache_key, content, provider, model, finish_reason, input_tokens, cached_input_tokens,
                              output_tokens, cost_nanos, expires_at, repaired)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11), $12)
       ON CONFLICT (tenant_id, cache_key) DO UPDATE
         SET content = EXCLUDED.content, provider = EXCLUDED.provider, model = EXCLUDED.model,
             finish_reason = EXCLUDED.finish_reason, input_tokens = EXCLUDED.input_tokens,
             cached_input_tokens = EXCLUDED.cached_input_tokens, output_tokens = EXCLUDED.output_tokens,
             cost_nanos = EXCLUDED.cost_nanos, created_at = now(), expires_at = EXCLUDED.expires_at, hits = 0, repaired = EXCLUDED.repaired`,
      [
        key,
        answer.content,
        answer.provider,
        answer.model,
        answer.finishReason,
        answer.usage.inputTokens,
        answer.usage.cachedInputTokens,
        answer.usage.outputTokens,
        answer.costNanos.toString(),
        ttlSeconds,
        answer.repaired === true,
      ],
    );
    this.memory.set(tenantId, key, answer, ResponseCache.bytes(answer), ttlSeconds * 1000);
  }

  async delete(tenantId: string, key: string): Promise<void> {
    this.memory.delete(tenantId, key);
    await tenantQuery(this.ds.manager, tenantId, `DELETE FROM llm_cache WHERE tenant_id = $1 AND cache_key = $2`, [key]);
  }

  /** Drops expired entries of every tenant (maintenance). */
  async purgeExpired(): Promise<number> {
    const res = await this.ds.query(`DELETE FROM llm_cache WHERE expires_at < now()`);
    const n = Array.isArray(res) && typeof res[1] === 'number' ? res[1] : 0;
    if (n) this.logger.log({ msg: 'expired cache entries removed', count: n });
    return n;
  }
}
