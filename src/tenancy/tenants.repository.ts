import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ApiError } from '../common/errors';
import type { Nanos } from '../common/money';
import { assertTenantId, rowsOf } from '../db/tenant-scope';
import { BatchLoader } from '../common/keyed-batcher';
import { TenantEntity } from './tenant.entity';

/** What a per-tenant count limit counts: the tenant's rows of each kind (`$1` its id). */
const COUNTED = {
  apiKeys: `api_keys WHERE tenant_id = $1 AND revoked_at IS NULL`,
  rubricVersions: `rubrics WHERE tenant_id = $1`,
  assignments: `assignments WHERE tenant_id = $1`,
} as const;
export type CountedLimit = keyof typeof COUNTED;

/** A tenant's budget policy, as budgets and alerts read it. */
export interface BudgetSettingsRow {
  timezone: string;
  cap: Nanos;
  whenExhausted: 'offline' | 'reject';
  alertThresholds: string[];
  alertWebhookUrl: string | null;
}

export interface BillingSettingsRow {
  deepReviewPriceNanos: Nanos | null;
  paymentMode: 'webhook' | 'invoice' | null;
  webhookSecretSet: boolean;
}

export interface GradingSettingsRow {
  nearDuplicateThreshold: number;
  reuseResubmissionGrades: boolean;
  directDeep: boolean;
  /** the share (0–0.2) of standard model gradings also graded on the deep tier in the background */
  shadowRate: number;
  /** standard-versus-deep QWK under which an alert fires (null: never) */
  shadowAlertQwk: number | null;
  /** essays older than this many days are erased (null: kept until erased) */
  essayRetentionDays: number | null;
}

/** The two webhook secrets a tenant sets, sealed at rest (src/common/secret-box.ts). */
export type SecretKind = 'payment' | 'alert';
const SECRET_COLUMNS: Record<SecretKind, { sealed: string; legacy: string }> = {
  payment: { sealed: 'payment_webhook_secret_enc', legacy: 'payment_webhook_secret' },
  alert: { sealed: 'alert_webhook_secret_enc', legacy: 'alert_webhook_secret' },
};

/** What the hot path reads of a tenant: its budget policy and fair-use limits. */
interface HotRow {
  timezone: string;
  cap: string;
  when_exhausted: 'offline' | 'reject';
  thresholds: string[];
  url: string | null;
  limits: unknown;
}

/**
 * The tenants aggregate: the only code that writes `tenants` — a new tenant, and its settings
 * (budget policy, billing, grading, fair-use limits, sealed secrets, the admission pause). Each
 * module asks here by a typed method; the row is the tenant's own, found by its primary key.
 */
@Injectable()
export class TenantsRepository {
  /**
   * The settings every model call reads (budget policy, fair-use limits), for the tenants asked
   * about at one moment in one statement: each row is the tenant's own, found by its primary key.
   * Cached above them (60 s); this is what 10,000 tenants' first calls cost. Not a cache: a read
   * asked for after a write starts after it.
   */
  private readonly hot = new BatchLoader<HotRow>(async (ids) => {
    // Each id was checked by its caller (budget, limits) before it joined the statement.
    const rows = rowsOf<HotRow & { id: string }>(
      await this.ds.query(
        `SELECT id, timezone, monthly_cap_nanos AS cap, budget_when_exhausted AS when_exhausted, budget_alert_thresholds::text[] AS thresholds,
                alert_webhook_url AS url, limits
           FROM tenants WHERE id = ANY($1::uuid[])`,
        [ids],
      ),
    );
    return new Map(rows.map((r) => [r.id, r]));
  });

  constructor(private readonly ds: DataSource) {}

  private async one<R>(tenantId: string, sql: string, params: unknown[] = [], m: EntityManager = this.ds.manager): Promise<R> {
    assertTenantId(tenantId);
    const [row] = rowsOf<R>(await m.query(sql, [tenantId, ...params]));
    if (!row) throw ApiError.notFound('Tenant');
    return row;
  }

  /**
   * How PostgreSQL reads `zone` in `AT TIME ZONE` (the ledger's days are the tenant's): a zone it
   * knows, one of its time zone abbreviations (a fixed offset: "CET" is +01 all year there, while
   * Intl gives it summer time), or nothing it knows (its zone data can lack a name Intl takes).
   * Read before the tenant's transaction, which an error would end.
   */
  async zoneReading(zone: string): Promise<'zone' | 'abbreviation' | 'unknown'> {
    try {
      const [row] = await this.ds.query(
        `SELECT now() AT TIME ZONE $1 AS at, EXISTS (SELECT 1 FROM pg_timezone_abbrevs WHERE lower(abbrev) = lower($1)) AS abbreviation`,
        [zone],
      );
      return row.abbreviation ? 'abbreviation' : 'zone';
    } catch (err) {
      if ((err as { code?: string }).code === '22023') return 'unknown';
      throw err;
    }
  }

  /** A new tenant, in the caller's transaction (with its first admin key). */
  async create(tx: EntityManager, t: { name: string; timezone: string; cap: Nanos }): Promise<TenantEntity> {
    const repo = tx.getRepository(TenantEntity);
    return repo.save(repo.create({ id: randomUUID(), name: t.name, timezone: t.timezone, monthlyCapNanos: t.cap }));
  }

  /** What the console shows of the school it is signed in to: its name, and the time zone it shows dates in. */
  identity(tenantId: string): Promise<{ name: string; timezone: string }> {
    return this.one(tenantId, 'SELECT name, timezone FROM tenants WHERE id = $1');
  }

  async budget(tenantId: string): Promise<BudgetSettingsRow> {
    assertTenantId(tenantId);
    const r = await this.hot.get(tenantId);
    if (!r) throw ApiError.notFound('Tenant');
    return { timezone: r.timezone, cap: BigInt(r.cap), whenExhausted: r.when_exhausted, alertThresholds: r.thresholds, alertWebhookUrl: r.url };
  }

  /** The budget policy, in the caller's transaction (the current period's cap changes with it). */
  async setBudget(
    tx: EntityManager,
    tenantId: string,
    s: { cap: Nanos; whenExhausted?: 'offline' | 'reject'; alertThresholds?: number[]; alertWebhookUrl?: string | null; sealedAlertSecret: string | null },
  ): Promise<void> {
    await this.one(
      tenantId,
      `UPDATE tenants SET monthly_cap_nanos = $2,
              budget_when_exhausted = coalesce($3, budget_when_exhausted),
              budget_alert_thresholds = coalesce($4::numeric[], budget_alert_thresholds),
              alert_webhook_url = CASE WHEN $5::boolean THEN $6 ELSE alert_webhook_url END,
              alert_webhook_secret_enc = coalesce($7, alert_webhook_secret_enc),
              alert_webhook_secret = CASE WHEN $7::text IS NULL THEN alert_webhook_secret END
        WHERE id = $1 RETURNING id`,
      [
        s.cap.toString(),
        s.whenExhausted ?? null,
        s.alertThresholds ? s.alertThresholds.map(String) : null,
        s.alertWebhookUrl !== undefined,
        s.alertWebhookUrl ?? null,
        s.sealedAlertSecret,
      ],
      tx,
    );
  }

  async billing(tenantId: string): Promise<BillingSettingsRow> {
    const r = await this.one<{ price: string | null; mode: 'webhook' | 'invoice' | null; secret: boolean }>(
      tenantId,
      `SELECT deep_review_price_nanos AS price, payment_mode AS mode, (payment_webhook_secret_enc IS NOT NULL OR payment_webhook_secret IS NOT NULL) AS secret
         FROM tenants WHERE id = $1`,
    );
    return { deepReviewPriceNanos: r.price === null ? null : BigInt(r.price), paymentMode: r.mode, webhookSecretSet: r.secret };
  }

  async setBilling(tenantId: string, s: { price: Nanos; mode: 'webhook' | 'invoice'; sealedSecret: string | null }): Promise<void> {
    await this.one(
      tenantId,
      `UPDATE tenants SET deep_review_price_nanos = $2, payment_mode = $3,
              payment_webhook_secret_enc = coalesce($4, payment_webhook_secret_enc),
              payment_webhook_secret = CASE WHEN $4::text IS NULL THEN payment_webhook_secret END
        WHERE id = $1 RETURNING id`,
      [s.price.toString(), s.mode, s.sealedSecret],
    );
  }

  async grading(tenantId: string): Promise<GradingSettingsRow> {
    const r = await this.one<{ t: string; r: boolean; d: boolean; rate: string; alert: string | null; keep: number | null }>(
      tenantId,
      `SELECT near_duplicate_threshold::text AS t, reuse_resubmission_grades AS r, direct_deep AS d,
              shadow_rate::text AS rate, shadow_alert_qwk::text AS alert, essay_retention_days AS keep FROM tenants WHERE id = $1`,
    );
    return {
      nearDuplicateThreshold: Number(r.t),
      reuseResubmissionGrades: r.r,
      directDeep: r.d,
      shadowRate: Number(r.rate),
      shadowAlertQwk: r.alert === null ? null : Number(r.alert),
      essayRetentionDays: r.keep,
    };
  }

  /** Changes the settings given (undefined: unchanged; shadowAlertQwk null: no alert; essayRetentionDays null: kept). */
  async setGrading(tenantId: string, change: Partial<GradingSettingsRow>): Promise<void> {
    await this.one(
      tenantId,
      `UPDATE tenants SET near_duplicate_threshold = coalesce($2, near_duplicate_threshold),
              reuse_resubmission_grades = coalesce($3, reuse_resubmission_grades),
              direct_deep = coalesce($4, direct_deep),
              shadow_rate = coalesce($5, shadow_rate),
              shadow_alert_qwk = CASE WHEN $6 THEN $7::numeric ELSE shadow_alert_qwk END,
              essay_retention_days = CASE WHEN $8 THEN $9::int ELSE essay_retention_days END
        WHERE id = $1 RETURNING id`,
      [
        change.nearDuplicateThreshold ?? null,
        change.reuseResubmissionGrades ?? null,
        change.directDeep ?? null,
        change.shadowRate ?? null,
        change.shadowAlertQwk !== undefined,
        change.shadowAlertQwk ?? null,
        change.essayRetentionDays !== undefined,
        change.essayRetentionDays ?? null,
      ],
    );
  }

  /** The operator's per-tenant fair-use limits (over the env defaults); none for an unknown tenant. */
  async limits<L>(tenantId: string): Promise<Partial<L>> {
    assertTenantId(tenantId);
    return ((await this.hot.get(tenantId))?.limits as Partial<L> | null) ?? {};
  }

  /**
   * How many of the things a per-tenant limit counts the tenant has, counted up to `cap` (the
   * limit: at most that many index entries read, so a tenant at its limit costs the same read
   * however the rows grew). Built-in rubrics are no rubric versions; revoked keys are not counted.
   */
  async countUpTo(tenantId: string, what: CountedLimit, cap: number, manager: EntityManager = this.ds.manager): Promise<number> {
    assertTenantId(tenantId);
    const [row] = rowsOf<{ n: number }>(await manager.query(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${COUNTED[what]} LIMIT $2) x`, [tenantId, cap]));
    return row.n;
  }

  /**
   * Runs `work` in a transaction with the tenant's row locked, so that what is counted against a
   * limit (API keys, rubric versions, assignments) and made at once is counted in turn (FOR NO KEY
   * UPDATE: the key-share checks of rows that refer to the tenant do not wait on it).
   */
  inTurn<T>(tenantId: string, work: (tx: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(async (tx) => {
      await this.one(tenantId, `SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE`, [], tx);
      return work(tx);
    });
  }

  /** Sets some limits and clears others (back to the defaults). */
  async setLimits(tenantId: string, set: Record<string, number>, cleared: string[]): Promise<void> {
    await this.one(tenantId, `UPDATE tenants SET limits = (limits - $3::text[]) || $2::jsonb WHERE id = $1 RETURNING id`, [JSON.stringify(set), cleared]);
  }

  /** A sealed secret and, for rows written before secrets were sealed, the plaintext one. */
  async secret(tenantId: string, kind: SecretKind): Promise<{ sealed: string | null; legacy: string | null } | null> {
    assertTenantId(tenantId);
    const c = SECRET_COLUMNS[kind];
    const [row] = rowsOf<{ sealed: string | null; legacy: string | null }>(await this.ds.query(`SELECT ${c.sealed} AS sealed, ${c.legacy} AS legacy FROM tenants WHERE id = $1`, [tenantId]));
    return row ?? null;
  }

  /**
   * Replaces a secret, as it was read (`expected`), with its sealed form under the current key, and
   * drops the plaintext column; false when it changed meanwhile (nothing written).
   */
  async reseal(tenantId: string, kind: SecretKind, sealed: string, expected: { sealed: string | null; legacy: string | null }): Promise<boolean> {
    assertTenantId(tenantId);
    const c = SECRET_COLUMNS[kind];
    const rows = rowsOf(
      await this.ds.query(
        `UPDATE tenants SET ${c.sealed} = $2, ${c.legacy} = NULL
          WHERE id = $1 AND ${c.sealed} IS NOT DISTINCT FROM $3 AND ${c.legacy} IS NOT DISTINCT FROM $4 RETURNING id`,
        [tenantId, sealed, expected.sealed, expected.legacy],
      ),
    );
    return rows.length > 0;
  }

  /** Every sealed secret's key id, counted (maintenance across tenants: the start-up key check). */
  async sealedKeyIds(): Promise<Array<{ keyId: string; n: number }>> {
    const rows: Array<{ key_id: string; n: number }> = await this.ds.query(
      `SELECT key_id, count(*)::int AS n FROM (
         SELECT split_part(payment_webhook_secret_enc, ':', 3) AS key_id FROM tenants WHERE payment_webhook_secret_enc IS NOT NULL
         UNION ALL
         SELECT split_part(alert_webhook_secret_enc, ':', 3) FROM tenants WHERE alert_webhook_secret_enc IS NOT NULL) s
       GROUP BY key_id`,
    );
    return rows.map((r) => ({ keyId: r.key_id, n: r.n }));
  }

  /** Tenants with a plaintext secret, or one sealed with a key other than `currentKeyId` (maintenance). */
  /** The tenants with a payment webhook secret (at start: their events are told from other ids' without a read). */
  async withPaymentSecret(): Promise<string[]> {
    // Across tenants by design: one list at start, of ids only.
    const rows: Array<{ id: string }> = await this.ds.query(`SELECT id FROM tenants WHERE payment_webhook_secret_enc IS NOT NULL OR payment_webhook_secret IS NOT NULL`);
    return rows.map((r) => String(r.id));
  }

  async secretsToReseal(currentKeyId: string): Promise<Array<{ tenantId: string; payment: { sealed: string | null; legacy: string | null }; alert: { sealed: string | null; legacy: string | null } }>> {
    const rows: Array<Record<string, string | null>> = await this.ds.query(
      `SELECT id, payment_webhook_secret_enc AS pe, payment_webhook_secret AS pl, alert_webhook_secret_enc AS ae, alert_webhook_secret AS al
         FROM tenants
        WHERE payment_webhook_secret IS NOT NULL OR alert_webhook_secret IS NOT NULL
           OR (payment_webhook_secret_enc IS NOT NULL AND split_part(payment_webhook_secret_enc, ':', 3) <> $1)
           OR (alert_webhook_secret_enc IS NOT NULL AND split_part(alert_webhook_secret_enc, ':', 3) <> $1)`,
      [currentKeyId],
    );
    return rows.map((r) => ({ tenantId: String(r.id), payment: { sealed: r.pe, legacy: r.pl }, alert: { sealed: r.ae, legacy: r.al } }));
  }

  async isAdmissionPaused(tenantId: string): Promise<boolean> {
    return (await this.one<{ paused: boolean }>(tenantId, `SELECT admission_paused AS paused FROM tenants WHERE id = $1`)).paused;
  }

  /**
   * Locks the tenant's row until the transaction ends: changes to its admission pause take turns.
   * FOR NO KEY UPDATE, not FOR UPDATE: the row's key does not change, so the tenant's other writes
   * (each insert of one of its rows takes a KEY SHARE lock on it through the foreign key) go on.
   */
  async lockForAdmission(tx: EntityManager, tenantId: string): Promise<void> {
    await this.one(tenantId, `SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE`, [], tx);
  }

  /** An incident pauses the tenant's admission (in the transaction that records it) or an admin's acknowledgement ends it. */
  async setAdmissionPaused(tx: EntityManager, tenantId: string, paused: boolean): Promise<void> {
    await this.one(tenantId, `UPDATE tenants SET admission_paused = $2 WHERE id = $1 RETURNING id`, [paused], tx);
  }
}
