import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ClusterBus } from '../db/cluster-bus';
import { AppConfig, CONFIG } from '../config/app-config';
import { DataSource, EntityManager, IsNull, Not } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { BatchLoader, KeyedBatcher } from '../common/keyed-batcher';
import { loggableError } from '../common/error-rendering';
import { TtlCache } from '../common/ttl-cache';
import { TenantScopedRepository, tenantQuery } from '../db/tenant-scope';
import { generateApiKey, hashSecret, parseApiKey, hashMatches } from './api-key-secret';
import { ApiKeyEntity, ApiKeyRole } from './api-key.entity';
import { CreateApiKeyDto } from './dto/create-api-key.dto';
import { LimitsService } from './limits.service';
import { TenantsRepository } from './tenants.repository';
import { UUID } from '../common/ids';

export interface CreatedApiKey {
  id: string;
  name: string;
  role: ApiKeyRole;
  /** The key itself: shown this once, never again. */
  key: string;
  createdAt: string;
}

export interface ApiKeyView {
  id: string;
  name: string;
  role: ApiKeyRole;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** last_used_at is written at most this often per key, so authentication stays a read. */
const LAST_USED_RESOLUTION_MS = 60_000;
/** Keys held at once (about 200 bytes each): more than the active keys of 10,000 schools, so a sweep over them all does not thrash. */
const AUTH_CACHE_MAX = 100_000;
/** Refused keys held at once: a flood of distinct made-up keys only cycles through them (each read is batched by prefix anyway). */
const REFUSED_CACHE_MAX = 10_000;
/** How long a key found active is remembered as no guess by the auth-failure throttle (seenGood). */
const SEEN_GOOD_TTL_MS = 86_400_000;
/** Revoked keys a listing shows at most (the latest revoked). */
const REVOKED_LISTED = 100;

@Injectable()
export class ApiKeysService {
  private readonly logger = new Logger(ApiKeysService.name);
  /** When this process last wrote each key's last_used_at: bounded, the oldest forgotten first. */
  private readonly lastTouched = new TtlCache<string, number>(LAST_USED_RESOLUTION_MS, AUTH_CACHE_MAX);
  /** Recently authenticated keys, by the SHA-256 of the key: saves a query per request. */
  private readonly authCache: TtlCache<string, TenantAuth>;
  /**
   * Keys refused lately (unknown or revoked), by the same cache key: a client that keeps presenting
   * a revoked key (a forgotten script, a hostile caller) costs no query per request. A refusal never
   * hides a key that becomes valid: a new key's secret is random, so nobody presented it before it
   * was issued, and a revoked key stays revoked.
   */
  private readonly refused: TtlCache<string, true>;
  /**
   * Keys found active in the last day, by the same cache key, with their key and tenant: what the
   * auth-failure throttle takes as no guess (`seenActive`) once a key has left the auth cache. The
   * key is still checked in full; this only spares it the 429 that an address out of failures gets
   * for what it presents (else, past AUTH_CACHE_TTL_MS, one neighbour behind a school's NAT address
   * sending bad keys locked the school's own keys out). Forgotten when the key is revoked.
   */
  private readonly seenGood = new TtlCache<string, { keyId: string; tenantId: string }>(SEEN_GOOD_TTL_MS, AUTH_CACHE_MAX);
  /**
   * Keys not in the auth cache, read by prefix for all the callers of a moment in one statement
   * (10,000 tenants' first calls would otherwise be 10,000 reads), and their use recorded the same way.
   */
  private readonly byPrefix = new BatchLoader<Array<{ id: string; tenant_id: string; role: ApiKeyRole; key_hash: Buffer }>>(async (prefixes) => {
    const rows: Array<{ id: string; tenant_id: string; role: ApiKeyRole; key_hash: Buffer; prefix: string }> = await this.ds.query(
      `SELECT id, tenant_id, role, key_hash, prefix FROM api_keys WHERE prefix = ANY($1::text[]) AND revoked_at IS NULL`,
      [prefixes],
    );
    const out = new Map<string, typeof rows>();
    for (const r of rows) out.set(r.prefix, [...(out.get(r.prefix) ?? []), r]);
    return out;
  });
  private readonly touches = new KeyedBatcher<string, void>(async (_, ids) => {
    await this.ds.query(
      `UPDATE api_keys SET last_used_at = now()
        WHERE id = ANY($1::uuid[]) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
      [[...new Set(ids)]],
    );
    return ids.map(() => undefined);
  }, 500);

  constructor(
    private readonly ds: DataSource,
    private readonly bus: ClusterBus,
    @Inject(CONFIG) config: AppConfig,
    private readonly limits: LimitsService,
    private readonly tenants: TenantsRepository,
  ) {
    this.authCache = new TtlCache(config.authCacheTtlMs, AUTH_CACHE_MAX);
    this.refused = new TtlCache(config.authCacheTtlMs, REFUSED_CACHE_MAX);
    bus.on<{ keyId: string }>('key-revoked', ({ keyId }) => {
      this.authCache.deleteWhere((a) => a.keyId === keyId);
      this.seenGood.deleteWhere((a) => a.keyId === keyId);
    });
    // Every key of a school revoked at once (the operator taking it back): one pass over the cache.
    bus.on<{ tenantId: string }>('tenant-keys-revoked', ({ tenantId }) => {
      this.authCache.deleteWhere((a) => a.tenantId === tenantId);
      this.seenGood.deleteWhere((a) => a.tenantId === tenantId);
    });
    // Back after the bus was down: a revocation may have been missed, so every key is checked again.
    bus.on('resync', () => this.authCache.clear());
  }

  private keys(manager: EntityManager, tenantId: string) {
    return new TenantScopedRepository(manager, ApiKeyEntity, tenantId);
  }

  /**
   * A new key, within the tenant's `apiKeys` limit of active keys (past it, 429 as over any limit,
   * SPEC §10: nothing is stored; revoking a key makes room).
   * The tenant's row is locked while its keys are counted, so keys made at once by several admins
   * or instances cannot together pass the limit.
   */
  /**
   * A new key of the tenant: its admin's (`callerKeyId`, the admin key asking), or the operator's for
   * a school that lost its admin key. The caller's key is checked again with the tenant's row locked:
   * a request authenticated before a take-back (which holds that lock) waited for it, then made its
   * intruder a new admin key.
   */
  async create(tenantId: string, dto: CreateApiKeyDto, callerKeyId?: string): Promise<CreatedApiKey> {
    return this.limits.withinCount(
      tenantId,
      'apiKeys',
      (max) => `This tenant has its limit of ${max} active API keys; revoke one before making another`,
      async (tx) => {
        if (callerKeyId) await this.stillActive(tx, tenantId, callerKeyId);
        return this.issue(tx, tenantId, dto.name, dto.role);
      },
    );
  }

  /**
   * The caller's key is still active, else 401 — read with the tenant's row locked (every change of
   * its keys takes that lock first: creation, revocation, take-back), so no revocation lands between
   * this read and the caller's change.
   */
  private async stillActive(tx: EntityManager, tenantId: string, keyId: string): Promise<void> {
    const rows = await tenantQuery(tx, tenantId, `SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL`, [keyId]);
    if (!rows.length) throw new ApiError('UNAUTHENTICATED', 'This API key was revoked');
  }

  /**
   * The operator takes a school back (its admin key taken over, or lost): in one transaction, with
   * the tenant's row locked as every key made is counted, every active key of the school is revoked
   * (teachers' too: an intruder may have made some) and one new admin key issued. One step, so an
   * intruder still holding an admin key cannot revoke the new one between two (nor fill the key
   * limit to refuse it). Every instance forgets the school's keys at once (the bus).
   */
  async takeBack(tenantId: string, name: string): Promise<CreatedApiKey & { revoked: number }> {
    const { created, revoked, told } = await this.tenants.inTurn(tenantId, async (tx) => {
      const gone = await tenantQuery<{ id: string }>(tx, tenantId, `UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL RETURNING id`);
      const key = await this.issue(tx, tenantId, name, 'admin');
      return { created: key, revoked: gone.map((r) => r.id), told: await this.bus.publishWith(tx, 'tenant-keys-revoked', { tenantId }) };
    });
    told();
    for (const id of revoked) this.lastTouched.delete(id);
    this.limits.countsChanged(tenantId);
    this.logger.warn({ msg: 'school taken back by the operator: every key revoked, a new admin key issued', tenantId, keyId: created.id, revoked: revoked.length });
    return { ...created, revoked: revoked.length };
  }

  /** Creates a key inside the caller's transaction (tenant creation issues the first admin key). */
  async issue(manager: EntityManager, tenantId: string, name: string, role: ApiKeyRole): Promise<CreatedApiKey> {
    const secret = generateApiKey();
    const row = await this.keys(manager, tenantId).insert({
      id: randomUUID(),
      name,
      role,
      prefix: secret.prefix,
      keyHash: secret.hash,
      lastUsedAt: null,
      revokedAt: null,
    });
    this.logger.log({ msg: 'api key created', tenantId, keyId: row.id, role });
    return { id: row.id, name: row.name, role: row.role, key: secret.key, createdAt: row.createdAt.toISOString() };
  }

  /**
   * The tenant's active keys, oldest first (as many as its `apiKeys` limit lets it have), then its
   * latest revoked ones, at most REVOKED_LISTED, newest revocation first; `moreRevoked` when older
   * revoked keys are left out. Revoked keys do not count against any limit, so a tenant can
   * accumulate any number: listed whole, 200,000 of them ran the process out of memory.
   */
  async list(tenantId: string): Promise<{ keys: ApiKeyView[]; moreRevoked: boolean }> {
    const keys = this.keys(this.ds.manager, tenantId);
    const active = await keys.find({ revokedAt: IsNull() }, { order: { createdAt: 'ASC', id: 'ASC' } });
    const revoked = await keys.find({ revokedAt: Not(IsNull()) }, { order: { revokedAt: 'DESC', id: 'ASC' }, take: REVOKED_LISTED + 1 });
    return { keys: [...active, ...revoked.slice(0, REVOKED_LISTED)].map(toView), moreRevoked: revoked.length > REVOKED_LISTED };
  }

  /**
   * Revokes a key of the caller's tenant. Revoking twice is harmless. The last active admin key
   * cannot be revoked: the tenant would lock itself out.
   */
  async revoke(tenantId: string, id: string, callerKeyId?: string): Promise<void> {
    if (!UUID.test(id)) throw ApiError.notFound('API key');
    // The other processes are told by a NOTIFY in the revoking transaction, delivered with its commit:
    // sent after it, a failed or lost send left the key accepted elsewhere until its cache expired.
    // The tenant's row first (inTurn), as key creation and take-back take it: an admin's revocation
    // runs only while the admin's own key is active (one authenticated before a take-back revoked the
    // operator's new key after it). (Each revoker share-locking its own key instead, two admins
    // revoking at once deadlocked on each other's rows.)
    const told = await this.tenants.inTurn(tenantId, async (m) => {
      if (callerKeyId) await this.stillActive(m, tenantId, callerKeyId);
      const keys = this.keys(m, tenantId);
      const key = await keys.findOne({ id });
      if (!key) throw ApiError.notFound('API key');
      if (key.revokedAt) return undefined;
      if (key.role === 'admin') {
        // Lock the tenant's admin keys so two concurrent revocations cannot both pass this check.
        const activeAdmins = await m.query(
          `SELECT id FROM api_keys WHERE tenant_id = $1 AND role = 'admin' AND revoked_at IS NULL FOR UPDATE`,
          [tenantId],
        );
        if (activeAdmins.length <= 1) {
          throw new ApiError('CONFLICT', 'This is the last active admin key of the tenant; create another admin key first');
        }
      }
      await keys.update({ id, revokedAt: IsNull() }, { revokedAt: new Date() });
      return this.bus.publishWith(m, 'key-revoked', { keyId: id });
    });
    this.lastTouched.delete(id);
    this.limits.countsChanged(tenantId);
    // Every instance forgets the key at once (this one now, the others through the bus). (Revoked
    // before: told again, in case that earlier message was lost.)
    if (told) told();
    else this.bus.publish('key-revoked', { keyId: id });
    this.logger.log({ msg: 'api key revoked', tenantId: tenantId, keyId: id });
  }

  /** Shutdown: the key uses still to be recorded are written first. */
  onModuleDestroy(): Promise<void> {
    return this.touches.drain();
  }

  /**
   * The tenant caller a presented key stands for, or null if it is unknown, malformed or revoked.
   * `presentedHash` is its SHA-256 when the caller has it already.
   */
  authenticate(presented: string, presentedHash?: Buffer): Promise<TenantAuth | null> {
    const parsed = parseApiKey(presented);
    if (!parsed) return Promise.resolve(null);
    const hash = presentedHash ?? hashSecret(presented);
    return this.lookup(hash.toString('hex'), async () => {
      const rows = (await this.byPrefix.get(parsed.prefix)) ?? [];
      return rows.find((row) => hashMatches(hash, row.key_hash));
    });
  }

  /**
   * Whether a key (by its hash) was found active lately: in the auth cache, or seen active in the
   * last day and not revoked since (seenGood). Known to be no guess; it is still checked in full.
   */
  seenActive(hash: Buffer): boolean {
    const cacheKey = hash.toString('hex');
    return this.authCache.get(cacheKey) !== undefined || this.seenGood.get(cacheKey) !== undefined;
  }

  /** The tenant caller an active key stands for, by its id (a console session names its key so); null when revoked or unknown. */
  activeById(keyId: string): Promise<TenantAuth | null> {
    if (!UUID.test(keyId)) return Promise.resolve(null);
    return this.lookup(`id:${keyId}`, async () => {
      // By id across tenants: the id comes from a session cookie this service signed.
      const rows: Array<{ id: string; tenant_id: string; role: ApiKeyRole }> = await this.ds.query(
        `SELECT id, tenant_id, role FROM api_keys WHERE id = $1 AND revoked_at IS NULL`,
        [keyId],
      );
      return rows[0];
    });
  }

  /**
   * An active key from the auth cache, or read by `load` and cached; its use is recorded. A
   * revocation that lands while the key is read must not leave it cached as valid. A key refused
   * lately is refused again without a read.
   */
  private async lookup(cacheKey: string, load: () => Promise<{ id: string; tenant_id: string; role: ApiKeyRole } | undefined>): Promise<TenantAuth | null> {
    const hit = this.authCache.get(cacheKey);
    if (hit) {
      this.touch(hit.keyId);
      return hit;
    }
    if (this.refused.get(cacheKey)) return null;
    const mark = this.authCache.mark;
    const row = await load();
    if (!row) {
      this.refused.set(cacheKey, true);
      this.seenGood.delete(cacheKey); // (revoked, and the bus's word of it missed: found so here)
      return null;
    }
    this.touch(row.id);
    const auth: TenantAuth = { kind: 'tenant', tenantId: row.tenant_id, keyId: row.id, role: row.role };
    // (By key hash only: a console session's lookup by key id is no key presented.)
    if (this.authCache.setIfUnchangedSince(mark, cacheKey, auth) && !cacheKey.startsWith('id:')) this.seenGood.set(cacheKey, { keyId: row.id, tenantId: row.tenant_id });
    return auth;
  }

  private touch(keyId: string): void {
    const now = Date.now();
    const last = this.lastTouched.get(keyId);
    if (last !== undefined && now - last < LAST_USED_RESOLUTION_MS) return;
    this.lastTouched.set(keyId, now);
    this.touches.submit('', keyId).catch((err: Error) => this.logger.warn({ msg: 'could not record key use', keyId, err: loggableError(err) }));
  }
}

function toView(k: ApiKeyEntity): ApiKeyView {
  return {
    id: k.id,
    name: k.name,
    role: k.role,
    prefix: `isk_${k.prefix}`,
    createdAt: k.createdAt.toISOString(),
    lastUsedAt: k.lastUsedAt ? k.lastUsedAt.toISOString() : null,
    revokedAt: k.revokedAt ? k.revokedAt.toISOString() : null,
  };
}
