import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ApiError } from '../common/errors';
import { formatCny, Nanos, parseCny } from '../common/money';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG } from '../config/app-config';
import { assertTenantId, tenantQuery } from '../db/tenant-scope';
import { AlertsService } from './alerts.service';
import { LEDGER_COLUMNS, LEDGER_COST_PARAM, LEDGER_PARAM_COUNT, LEDGER_PLACEHOLDERS, LedgerEntry, LedgerService, ledgerParams } from './ledger.service';
import { periodBounds, periodOf } from './periods';

export interface Reservation {
  id: string;
  tenantId: string;
  period: string;
  amount: Nanos;
}

export type WhenExhausted = 'offline' | 'reject';

export interface BudgetSettings {
  timezone: string;
  monthlyCap: Nanos;
  whenExhausted: WhenExhausted;
  alertThresholds: string[];
  alertWebhookUrl: string | null;
}

export interface BudgetView {
  period: string;
  timezone: string;
  monthlyCap: string;
  spent: string;
  reserved: string;
  remaining: string;
  utilization: string;
  whenExhausted: WhenExhausted;
  alertThresholds: number[];
  alertWebhookUrl: string | null;
  forecast: { monthEnd: string; exhaustsOn: string | null };
}

const SETTINGS_TTL_MS = 5_000;

/**
 * The monthly budget of each tenant, and the only way money is spent: a call first reserves its
 * worst-case cost with one conditional UPDATE (it succeeds only while spent + reserved + amount
 * stays within the cap, and row locking makes concurrent reservations take turns, across any
 * number of instances), then settles the actual cost and writes its ledger row in one transaction.
 * Reservations of a crashed process expire and are swept back.
 */
@Injectable()
export class BudgetService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(BudgetService.name);
  private readonly settingsCache = new TtlCache<string, BudgetSettings>(SETTINGS_TTL_MS);
  private readonly remainingCache = new TtlCache<string, Nanos>(1_000);
  private readonly knownPeriods = new Set<string>();
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    private readonly ds: DataSource,
    private readonly ledger: LedgerService,
    private readonly alerts: AlertsService,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: Error) => this.logger.warn({ msg: 'reservation sweep failed', err: err.message }));
    }, this.config.llm.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  onApplicationShutdown(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  settings(tenantId: string): Promise<BudgetSettings> {
    return this.settingsCache.getOrLoad(tenantId, () => this.loadSettings(tenantId));
  }

  private async loadSettings(tenantId: string): Promise<BudgetSettings> {
    assertTenantId(tenantId);
    // The tenant's own row: scoped by its primary key.
    const [row]: Array<{ timezone: string; cap: string; when_exhausted: WhenExhausted; thresholds: string[]; url: string | null }> = await this.ds.query(
      `SELECT timezone, monthly_cap_nanos AS cap, budget_when_exhausted AS when_exhausted, budget_alert_thresholds::text[] AS thresholds,
              alert_webhook_url AS url
         FROM tenants WHERE id = $1`,
      [tenantId],
    );
    if (!row) throw ApiError.notFound('Tenant');
    return {
      timezone: row.timezone,
      monthlyCap: BigInt(row.cap),
      whenExhausted: row.when_exhausted,
      alertThresholds: row.thresholds,
      alertWebhookUrl: row.url,
    };
  }

  /** The current period of a tenant, its row created on first use from the tenant's monthly cap. */
  async currentPeriod(tenantId: string, at = new Date()): Promise<string> {
    const { timezone } = await this.settings(tenantId);
    const period = periodOf(at, timezone);
    const key = `${tenantId}:${period}`;
    if (!this.knownPeriods.has(key)) {
      await tenantQuery(
        this.ds.manager,
        tenantId,
        `INSERT INTO budget_periods (tenant_id, period, cap_nanos)
         SELECT $1, $2, monthly_cap_nanos FROM tenants WHERE id = $1
         ON CONFLICT (tenant_id, period) DO NOTHING`,
        [period],
      );
      this.knownPeriods.add(key);
    }
    return period;
  }

  /**
   * Holds `amount` against the tenant's cap, or returns null when it does not fit. One statement:
   * the conditional UPDATE and the reservation row happen together or not at all.
   */
  async reserve(tenantId: string, amount: Nanos, ttlMs = this.config.llm.reservationTtlMs): Promise<Reservation | null> {
    if (amount < 0n) throw new RangeError('a reservation cannot be negative');
    const period = await this.currentPeriod(tenantId);
    const id = randomUUID();
    const rows = await tenantQuery(
      this.ds.manager,
      tenantId,
      `WITH held AS (
         UPDATE budget_periods SET reserved_nanos = reserved_nanos + $3, updated_at = now()
          WHERE tenant_id = $1 AND period = $2 AND spent_nanos + reserved_nanos + $3 <= cap_nanos
          RETURNING tenant_id, period)
       INSERT INTO budget_reservations (id, tenant_id, period, amount_nanos, expires_at)
       SELECT $4, tenant_id, period, $3, now() + make_interval(secs => $5::double precision / 1000) FROM held
       RETURNING id`,
      [period, amount.toString(), id, ttlMs],
    );
    if (rows.length) return { id, tenantId, period, amount };
    await this.refused(tenantId, period);
    return null;
  }

  /** A refused reservation: the budget is used up for calls of this size; alert once. */
  private async refused(tenantId: string, period: string): Promise<void> {
    try {
      const [row] = await tenantQuery<{ spent: string; cap: string }>(
        this.ds.manager,
        tenantId,
        `SELECT spent_nanos AS spent, cap_nanos AS cap FROM budget_periods WHERE tenant_id = $1 AND period = $2`,
        [period],
      );
      const { alertThresholds } = await this.settings(tenantId);
      if (row) await this.alerts.onExhausted(tenantId, period, BigInt(row.spent), BigInt(row.cap), alertThresholds);
    } catch (err) {
      this.logger.warn({ msg: 'could not record a budget alert', tenantId, err: (err as Error).message });
    }
  }

  /**
   * Ends a reservation: the actual cost is spent, the rest released, and the ledger row written, in
   * one transaction, so the ledger always sums to the spend. With no reservation (a cache hit),
   * only the ledger row is written and it must cost nothing.
   */
  async settle(reservation: Reservation | null, cost: Nanos, entry: LedgerEntry): Promise<void> {
    if (cost < 0n) throw new RangeError('a cost cannot be negative');
    if (!reservation) {
      if (cost !== 0n) throw new Error('a call that costs money must hold a reservation');
      const period = entry.period ?? (await this.currentPeriod(entry.tenantId));
      await this.ledger.insert(this.ds.manager, { ...entry, period });
      return;
    }
    const { tenantId, period } = reservation;
    // One statement, so one atomic step: release the reservation, move the cost into the spend and
    // write the ledger row with that same cost. If the sweeper already returned this reservation
    // (the call outlived its TTL), nothing is released twice and the cost, real money, is still
    // recorded.
    const params = ledgerParams({ ...entry, tenantId, period, costNanos: cost });
    const [after] = await tenantQuery<{ spent: string; cap: string }>(
      this.ds.manager,
      tenantId,
      `WITH released AS (
         DELETE FROM budget_reservations WHERE tenant_id = $1 AND id = $${LEDGER_PARAM_COUNT + 1} RETURNING amount_nanos),
       moved AS (
         UPDATE budget_periods
            SET reserved_nanos = reserved_nanos - coalesce((SELECT sum(amount_nanos) FROM released), 0),
                spent_nanos = spent_nanos + ${LEDGER_COST_PARAM}::bigint, updated_at = now()
          WHERE tenant_id = $1 AND period = $3 RETURNING spent_nanos, cap_nanos),
       ledger AS (
         INSERT INTO llm_calls (${LEDGER_COLUMNS}) SELECT ${LEDGER_PLACEHOLDERS} FROM moved)
       SELECT spent_nanos AS spent, cap_nanos AS cap FROM moved`,
      [...params, reservation.id],
    );
    if (after && cost > 0n) {
      const { alertThresholds } = await this.settings(tenantId);
      await this.alerts.onSpend(tenantId, period, BigInt(after.spent), BigInt(after.cap), alertThresholds).catch((err: Error) =>
        this.logger.warn({ msg: 'could not check budget alerts', tenantId, err: err.message }),
      );
    }
    if (cost > reservation.amount) {
      this.logger.warn({ msg: 'a call cost more than its reservation', tenantId, reserved: formatCny(reservation.amount), cost: formatCny(cost) });
    }
  }

  /** Returns expired reservations (left by a process that died mid-call) to their budgets. */
  async sweep(): Promise<number> {
    // Maintenance across tenants: it touches only reservations past their expiry.
    const rows: Array<{ n: string }> = await this.ds.query(
      `WITH expired AS (
         DELETE FROM budget_reservations WHERE expires_at < now() RETURNING tenant_id, period, amount_nanos),
       totals AS (SELECT tenant_id, period, sum(amount_nanos) AS amount, count(*) AS n FROM expired GROUP BY 1, 2),
       upd AS (
         UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - t.amount, updated_at = now()
           FROM totals t WHERE p.tenant_id = t.tenant_id AND p.period = t.period RETURNING t.n)
       SELECT coalesce(sum(n), 0)::text AS n FROM upd`,
    );
    const n = Number(rows[0]?.n ?? 0);
    if (n > 0) this.logger.warn({ msg: 'expired budget reservations returned', count: n });
    return n;
  }

  async view(tenantId: string, now = new Date()): Promise<BudgetView> {
    const settings = await this.settings(tenantId);
    const period = await this.currentPeriod(tenantId, now);
    const [row] = await tenantQuery<{ cap: string; spent: string; reserved: string }>(
      this.ds.manager,
      tenantId,
      `SELECT cap_nanos AS cap, spent_nanos AS spent, reserved_nanos AS reserved FROM budget_periods WHERE tenant_id = $1 AND period = $2`,
      [period],
    );
    const cap = BigInt(row.cap);
    const spent = BigInt(row.spent);
    const reserved = BigInt(row.reserved);
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
    };
  }

  /** What is left of this month's budget (cap − spent − reserved), cached for a second. */
  remaining(tenantId: string): Promise<Nanos> {
    return this.remainingCache.getOrLoad(tenantId, () => this.loadRemaining(tenantId));
  }

  private async loadRemaining(tenantId: string): Promise<Nanos> {
    const period = await this.currentPeriod(tenantId);
    const [row] = await tenantQuery<{ left: string }>(
      this.ds.manager,
      tenantId,
      `SELECT greatest(cap_nanos - spent_nanos - reserved_nanos, 0) AS left FROM budget_periods WHERE tenant_id = $1 AND period = $2`,
      [period],
    );
    return BigInt(row?.left ?? 0);
  }

  /** Sets the cap (for the current period too), the exhaustion policy and the alert thresholds. */
  async update(
    tenantId: string,
    dto: { monthlyCap: string; whenExhausted?: WhenExhausted; alertThresholds?: number[]; alertWebhookUrl?: string | null; alertWebhookSecret?: string },
  ): Promise<BudgetView> {
    const cap = parseCny(dto.monthlyCap);
    const period = await this.currentPeriod(tenantId);
    await this.ds.transaction(async (m) => {
      await m.query(
        `UPDATE tenants SET monthly_cap_nanos = $2,
                budget_when_exhausted = coalesce($3, budget_when_exhausted),
                budget_alert_thresholds = coalesce($4::numeric[], budget_alert_thresholds),
                alert_webhook_url = CASE WHEN $5::boolean THEN $6 ELSE alert_webhook_url END,
                alert_webhook_secret = coalesce($7, alert_webhook_secret)
          WHERE id = $1`,
        [
          tenantId,
          cap.toString(),
          dto.whenExhausted ?? null,
          dto.alertThresholds ? dto.alertThresholds.map(String) : null,
          dto.alertWebhookUrl !== undefined,
          dto.alertWebhookUrl ?? null,
          dto.alertWebhookSecret ?? null,
        ],
      );
      await tenantQuery(m, tenantId, `UPDATE budget_periods SET cap_nanos = $3, updated_at = now() WHERE tenant_id = $1 AND period = $2`, [
        period,
        cap.toString(),
      ]);
    });
    this.settingsCache.delete(tenantId);
    this.remainingCache.delete(tenantId);
    this.logger.log({ msg: 'budget updated', tenantId, period });
    return this.view(tenantId);
  }
}

/** spent / cap as a decimal string with 4 places (exact integer arithmetic). */
export function ratio(part: Nanos, whole: Nanos): string {
  if (whole === 0n) return part > 0n ? '1.0000' : '0.0000';
  const scaled = (part * 10_000n + whole / 2n) / whole;
  return `${scaled / 10_000n}.${(scaled % 10_000n).toString().padStart(4, '0')}`;
}

/**
 * Month-end spend at the period's burn rate so far, and the local date the cap would be reached
 * at that rate (null if not this month).
 */
export function forecast(period: string, timeZone: string, spent: Nanos, cap: Nanos, now: Date): { monthEnd: string; exhaustsOn: string | null } {
  const { start, end } = periodBounds(period, timeZone);
  const elapsed = BigInt(Math.max(1, now.getTime() - start.getTime()));
  const length = BigInt(end.getTime() - start.getTime());
  const monthEnd = (spent * length) / elapsed;
  let exhaustsOn: string | null = null;
  if (spent > 0n && monthEnd >= cap) {
    const atMs = start.getTime() + Number((cap * elapsed) / spent);
    exhaustsOn = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(
      new Date(Math.max(atMs, now.getTime())),
    );
  }
  return { monthEnd: formatCny(monthEnd), exhaustsOn };
}
