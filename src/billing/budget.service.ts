import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ApiError } from '../common/errors';
import { formatCny, Nanos, parseCny } from '../common/money';
import { loggableError } from '../common/error-rendering';
import { checkWebhookUrl, DestinationRefusedError, HostResolver, vetHost } from '../common/outbound-webhook';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG } from '../config/app-config';
import { ClusterBus } from '../db/cluster-bus';
import { assertTenantId, tenantQuery } from '../db/tenant-scope';
import { AlertsService } from './alerts.service';
import { LEDGER_COLUMNS, LEDGER_COST_PARAM, LEDGER_PARAM_COUNT, LedgerEntry, LedgerService, ledgerParams, ledgerValues } from './ledger.service';
import { sqlParams } from '../db/sql-params';
import { periodBounds, periodOf } from './periods';
import { TenantSecretsService } from './tenant-secrets.service';

export interface Reservation {
  id: string;
  tenantId: string;
  period: string;
  amount: Nanos;
  /** the guard this reservation's call holds */
  guard?: { key: string; token: string };
}

export type WhenExhausted = 'offline' | 'reject';

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
}

/** A paid answer kept by its guard. */
export interface GuardedAnswer {
  provider: string;
  model: string;
  content: string;
  finishReason: string;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  costNanos: Nanos;
}

/** A provider reported more tokens than the bound the call was admitted with (tokens.ts). */
export interface TokenIncident {
  estimatedInputTokens: number;
  reportedInputTokens: number;
  maxOutputTokens: number;
  reportedOutputTokens: number;
}

export interface SettleOptions {
  /** a guarded call's answer, kept for retries */
  answer?: GuardedAnswer;
  /** the usage broke the bound: booked as an incident, and the tenant's admission paused */
  incident?: TokenIncident;
}

export interface IncidentView {
  id: string;
  kind: 'tokens_over_bound' | 'over_reservation';
  createdAt: string;
  provider: string | null;
  model: string | null;
  tokens: { boundInput: number | null; reportedInput: number | null; maxOutput: number | null; reportedOutput: number | null };
  cost: string;
  charged: string;
  /** what the provider billed beyond what was charged to the tenant (absorbed by the platform) */
  excess: string;
  pausesAdmission: boolean;
  acknowledgedAt: string | null;
}

function incidentView(r: Record<string, unknown>): IncidentView {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: String(r.id),
    kind: r.kind as IncidentView['kind'],
    createdAt: (r.created_at as Date).toISOString(),
    provider: (r.provider as string | null) ?? null,
    model: (r.model as string | null) ?? null,
    tokens: { boundInput: n(r.estimated_input_tokens), reportedInput: n(r.reported_input_tokens), maxOutput: n(r.max_output_tokens), reportedOutput: n(r.reported_output_tokens) },
    cost: formatCny(BigInt(r.cost_nanos as string)),
    charged: formatCny(BigInt(r.charged_nanos as string)),
    excess: formatCny(BigInt(r.excess_nanos as string)),
    pausesAdmission: r.pauses_admission as boolean,
    acknowledgedAt: r.acknowledged_at ? (r.acknowledged_at as Date).toISOString() : null,
  };
}

export type GuardedReservation =
  | { kind: 'reserved'; reservation: Reservation }
  | { kind: 'budget' }
  | { kind: 'answered'; answer: GuardedAnswer }
  | { kind: 'in_flight'; retryAfterMs: number }
  | { kind: 'lease_lost' };

/** How long an answered guard is kept for retries before it is swept (the answer is personal data). */
const GUARD_RETENTION_MS = 3 * 86_400_000;

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
  /** true while an unacknowledged incident pauses admission (no call is admitted) */
  admissionPaused: boolean;
  incidents: IncidentView[];
}

const SETTINGS_TTL_MS = 5_000;
/** How long PUT /v1/budget waits for DNS when it checks an alert URL's host. */
const URL_CHECK_DNS_MS = 2_000;

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
  /** periods whose row exists: bounded (a forgotten one is only checked again) */
  private readonly knownPeriods = new TtlCache<string, true>(86_400_000, 50_000);
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    private readonly ds: DataSource,
    private readonly ledger: LedgerService,
    private readonly alerts: AlertsService,
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly secrets: TenantSecretsService,
    private readonly resolver: HostResolver,
    private readonly bus: ClusterBus,
  ) {
    // A change made on any instance drops the cached settings everywhere.
    bus.on<{ tenantId: string }>('budget', ({ tenantId }) => {
      this.settingsCache.delete(tenantId);
      this.remainingCache.delete(tenantId);
    });
  }

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: Error) => this.logger.warn({ msg: 'reservation sweep failed', err: loggableError(err) }));
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
    if (!this.knownPeriods.get(key)) {
      await tenantQuery(
        this.ds.manager,
        tenantId,
        `INSERT INTO budget_periods (tenant_id, period, cap_nanos)
         SELECT $1, $2, monthly_cap_nanos FROM tenants WHERE id = $1
         ON CONFLICT (tenant_id, period) DO NOTHING`,
        [period],
      );
      this.knownPeriods.set(key, true);
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
            AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND admission_paused)
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

  /**
   * reserve(), for a call that must be paid at most once (see CallGuard). One statement takes the
   * guard (only with the lease held, and only if no answer exists and no other call is in flight)
   * and reserves the budget; when nothing was reserved, a second look says why.
   */
  async reserveGuarded(tenantId: string, amount: Nanos, guard: CallGuard, ttlMs = this.config.llm.reservationTtlMs): Promise<GuardedReservation> {
    if (amount < 0n) throw new RangeError('a reservation cannot be negative');
    const period = await this.currentPeriod(tenantId);
    const id = randomUUID();
    const token = randomUUID();
    const lease = `SELECT 1 WHERE $6::uuid IS NULL
                   UNION ALL
                   SELECT 1 FROM jobs WHERE tenant_id = $1 AND id = $6 AND locked_by = $7 AND status = 'running' AND locked_until > now()`;
    const rows = await tenantQuery(
      this.ds.manager,
      tenantId,
      `WITH lease AS (${lease}),
       guard AS (
         INSERT INTO call_guards (tenant_id, key, state, token, expires_at)
         SELECT $1, $8, 'in_flight', $9, now() + make_interval(secs => $10::double precision / 1000) WHERE EXISTS (SELECT 1 FROM lease)
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET state = 'in_flight', token = EXCLUDED.token, expires_at = EXCLUDED.expires_at, created_at = now()
          WHERE call_guards.state = 'in_flight' AND call_guards.expires_at < now()
         RETURNING 1),
       held AS (
         UPDATE budget_periods SET reserved_nanos = reserved_nanos + $3, updated_at = now()
          WHERE tenant_id = $1 AND period = $2 AND spent_nanos + reserved_nanos + $3 <= cap_nanos AND EXISTS (SELECT 1 FROM guard)
            AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND admission_paused)
          RETURNING tenant_id, period)
       INSERT INTO budget_reservations (id, tenant_id, period, amount_nanos, expires_at)
       SELECT $4, tenant_id, period, $3, now() + make_interval(secs => $5::double precision / 1000) FROM held
       RETURNING id`,
      [period, amount.toString(), id, ttlMs, guard.lease?.jobId ?? null, guard.lease?.holder ?? null, guard.key, token, guard.inFlightMs],
    );
    if (rows.length) return { kind: 'reserved', reservation: { id, tenantId, period, amount, guard: { key: guard.key, token } } };

    // Nothing reserved: why?
    const [why] = await tenantQuery<Record<string, string | number | null>>(
      this.ds.manager,
      tenantId,
      `SELECT EXISTS (${lease.replace(/\$6/g, '$2').replace(/\$7/g, '$3')}) AS lease_ok,
              g.state, g.token::text AS token, greatest(0, extract(epoch FROM g.expires_at - now()) * 1000)::bigint AS left_ms,
              g.provider, g.model, g.content, g.finish_reason, g.input_tokens, g.cached_input_tokens, g.output_tokens, g.cost_nanos
         FROM (SELECT 1) one LEFT JOIN call_guards g ON g.tenant_id = $1 AND g.key = $4`,
      [guard.lease?.jobId ?? null, guard.lease?.holder ?? null, guard.key],
    );
    if (why.state === 'answered') {
      return {
        kind: 'answered',
        answer: {
          provider: String(why.provider),
          model: String(why.model),
          content: String(why.content ?? ''),
          finishReason: String(why.finish_reason ?? 'stop'),
          inputTokens: Number(why.input_tokens ?? 0),
          cachedInputTokens: Number(why.cached_input_tokens ?? 0),
          outputTokens: Number(why.output_tokens ?? 0),
          costNanos: BigInt(why.cost_nanos ?? 0),
        },
      };
    }
    if (!why.lease_ok) return { kind: 'lease_lost' };
    if (why.state === 'in_flight' && why.token !== token) return { kind: 'in_flight', retryAfterMs: Number(why.left_ms) };
    // Our own guard, taken for a call the budget cannot cover: give it back.
    await tenantQuery(this.ds.manager, tenantId, `DELETE FROM call_guards WHERE tenant_id = $1 AND key = $2 AND token = $3`, [guard.key, token]);
    await this.refused(tenantId, period);
    return { kind: 'budget' };
  }

  /** Is the tenant's admission paused by an incident no admin has acknowledged yet? */
  async isPaused(tenantId: string): Promise<boolean> {
    assertTenantId(tenantId);
    // The tenant's own row: scoped by its primary key.
    const [row] = await this.ds.query(`SELECT admission_paused AS paused FROM tenants WHERE id = $1`, [tenantId]);
    return !!row?.paused;
  }

  /** The tenant's incidents, newest first: every open one and the last closed ones. */
  async incidents(tenantId: string): Promise<IncidentView[]> {
    const rows = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      tenantId,
      `(SELECT * FROM budget_incidents WHERE tenant_id = $1 AND acknowledged_at IS NULL ORDER BY created_at DESC LIMIT 100)
       UNION ALL
       (SELECT * FROM budget_incidents WHERE tenant_id = $1 AND acknowledged_at IS NOT NULL ORDER BY created_at DESC LIMIT 10)
       ORDER BY created_at DESC`,
      [],
    );
    return rows.map(incidentView);
  }

  /**
   * An admin has looked at an incident. When no open incident pauses admission any more, calls are
   * admitted again. Acknowledging twice is harmless; another tenant's incident is not found.
   */
  async acknowledge(tenantId: string, keyId: string, incidentId: string): Promise<IncidentView> {
    if (!/^[0-9a-f-]{36}$/i.test(incidentId)) throw ApiError.notFound('Incident');
    const [row] = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      tenantId,
      `WITH ack AS (
         UPDATE budget_incidents SET acknowledged_at = coalesce(acknowledged_at, now()), acknowledged_by = coalesce(acknowledged_by, $3)
          WHERE tenant_id = $1 AND id = $2 RETURNING *),
       resumed AS (
         UPDATE tenants SET admission_paused = false
          WHERE id = $1 AND EXISTS (SELECT 1 FROM ack)
            AND NOT EXISTS (SELECT 1 FROM budget_incidents i WHERE i.tenant_id = $1 AND i.pauses_admission AND i.acknowledged_at IS NULL AND i.id <> $2)
          RETURNING 1)
       SELECT * FROM ack`,
      [incidentId, keyId],
    );
    if (!row) throw ApiError.notFound('Incident');
    this.bus.publish('budget', { tenantId });
    this.logger.log({ msg: 'budget incident acknowledged', tenantId, incidentId, keyId });
    return incidentView(row);
  }

  /** A refused reservation: the budget is used up for calls of this size; alert once. */
  private async refused(tenantId: string, period: string): Promise<void> {
    try {
      const [row] = await tenantQuery<{ spent: string; cap: string; paused: boolean }>(
        this.ds.manager,
        tenantId,
        `SELECT spent_nanos AS spent, cap_nanos AS cap, (SELECT admission_paused FROM tenants WHERE id = $1) AS paused
           FROM budget_periods WHERE tenant_id = $1 AND period = $2`,
        [period],
      );
      // Refused because admission is paused (an incident), not because the budget is used up: no threshold fires.
      if (row?.paused) return;
      const { alertThresholds } = await this.settings(tenantId);
      if (row) await this.alerts.onExhausted(tenantId, period, BigInt(row.spent), BigInt(row.cap), alertThresholds);
    } catch (err) {
      this.logger.warn({ msg: 'could not record a budget alert', tenantId, err: loggableError(err) });
    }
  }

  /**
   * Ends a reservation: the actual cost is spent, the rest released, and the ledger row written, in
   * one transaction, so the ledger always sums to the spend. With no reservation (a cache hit),
   * only the ledger row is written and it must cost nothing.
   */
  async settle(reservation: Reservation | null, cost: Nanos, entry: LedgerEntry, opts: SettleOptions = {}): Promise<Nanos> {
    if (cost < 0n) throw new RangeError('a cost cannot be negative');
    if (!reservation) {
      if (cost !== 0n) throw new Error('a call that costs money must hold a reservation');
      const period = entry.period ?? (await this.currentPeriod(entry.tenantId));
      await this.ledger.insert(this.ds.manager, { ...entry, period });
      return 0n;
    }
    const { tenantId, period } = reservation;
    // One statement, so one atomic step: release the reservation, move the cost into the spend and
    // write the ledger row with that same amount. What is charged never takes the spend past the
    // cap: it is the cost, or (a provider that billed more than the reservation's bound, a call
    // that outlived its reservation) as much of it as the cap still holds, the rest recorded as an
    // incident the platform absorbs. A guarded call's answer becomes durable here too (or its
    // guard is given back when the call failed), so a retry after a crash reuses what was paid for.
    const params = ledgerParams({ ...entry, tenantId, period, costNanos: cost });
    const next = sqlParams(LEDGER_PARAM_COUNT + 1, params);
    const id = next(reservation.id);
    const costParam = LEDGER_COST_PARAM;
    const guard = reservation.guard;
    const answer = opts.answer;
    let guardSql = '';
    if (guard && answer) {
      guardSql = `, answered AS (
         UPDATE call_guards SET state = 'answered', expires_at = now() + make_interval(secs => ${next(GUARD_RETENTION_MS)}::double precision / 1000),
                provider = ${next(answer.provider)}, model = ${next(answer.model)}, content = ${next(answer.content)}, finish_reason = ${next(answer.finishReason)},
                input_tokens = ${next(answer.inputTokens)}, cached_input_tokens = ${next(answer.cachedInputTokens)}, output_tokens = ${next(answer.outputTokens)},
                cost_nanos = (SELECT charged FROM amount)
          WHERE tenant_id = $1 AND key = ${next(guard.key)} AND token = ${next(guard.token)} RETURNING 1)`;
    } else if (guard) {
      guardSql = `, given_back AS (DELETE FROM call_guards WHERE tenant_id = $1 AND key = ${next(guard.key)} AND token = ${next(guard.token)} RETURNING 1)`;
    }
    const i = opts.incident;
    const incidentSql = `, incident AS (
         INSERT INTO budget_incidents (tenant_id, id, period, kind, provider, model, call_group, estimated_input_tokens, reported_input_tokens,
                                       max_output_tokens, reported_output_tokens, reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
         SELECT $1, ${next(randomUUID())}, $3, CASE WHEN ${next(i ? 'tokens_over_bound' : null)}::text IS NOT NULL THEN 'tokens_over_bound' ELSE 'over_reservation' END,
                $11, $12, $5::uuid, ${next(i?.estimatedInputTokens ?? null)}::int, ${next(i?.reportedInputTokens ?? null)}::int,
                ${next(i?.maxOutputTokens ?? null)}::int, ${next(i?.reportedOutputTokens ?? null)}::int,
                coalesce((SELECT sum(amount_nanos) FROM released), 0), ${costParam}::bigint, a.charged, ${costParam}::bigint - a.charged, ${next(!!i)}::boolean
           FROM amount a WHERE ${next(!!i)}::boolean OR ${costParam}::bigint > a.charged
         RETURNING pauses_admission),
       paused AS (UPDATE tenants SET admission_paused = true WHERE id = $1 AND EXISTS (SELECT 1 FROM incident WHERE pauses_admission) RETURNING 1)`;
    const [after] = await tenantQuery<{ spent: string; cap: string; charged: string; incident: number }>(
      this.ds.manager,
      tenantId,
      `WITH released AS (
         DELETE FROM budget_reservations WHERE tenant_id = $1 AND id = ${id} RETURNING amount_nanos),
       amount AS (
         SELECT least(${costParam}::bigint,
                      greatest(0, p.cap_nanos - p.spent_nanos - (p.reserved_nanos - coalesce((SELECT sum(amount_nanos) FROM released), 0)))) AS charged
           FROM budget_periods p WHERE p.tenant_id = $1 AND p.period = $3),
       moved AS (
         UPDATE budget_periods
            SET reserved_nanos = reserved_nanos - coalesce((SELECT sum(amount_nanos) FROM released), 0),
                spent_nanos = spent_nanos + (SELECT charged FROM amount), updated_at = now()
          WHERE tenant_id = $1 AND period = $3 RETURNING spent_nanos, cap_nanos),
       ledger AS (
         INSERT INTO llm_calls (${LEDGER_COLUMNS}) SELECT ${ledgerValues({ cost_nanos: '(SELECT charged FROM amount)' })} FROM moved)
       ${guardSql}
       ${incidentSql}
       SELECT spent_nanos AS spent, cap_nanos AS cap, (SELECT charged FROM amount)::text AS charged, (SELECT count(*) FROM incident)::int AS incident FROM moved`,
      next.values(),
    );
    const charged = after ? BigInt(after.charged) : 0n;
    if (after && charged > 0n) {
      const { alertThresholds } = await this.settings(tenantId);
      await this.alerts.onSpend(tenantId, period, BigInt(after.spent), BigInt(after.cap), alertThresholds).catch((err: Error) =>
        this.logger.warn({ msg: 'could not check budget alerts', tenantId, err: loggableError(err) }),
      );
    }
    if (after?.incident) {
      await this.alerts
        .onIncident(tenantId, period, {
          kind: i ? 'tokens_over_bound' : 'over_reservation',
          provider: entry.provider ?? null,
          model: entry.model ?? null,
          cost: formatCny(cost),
          charged: formatCny(charged),
          excess: formatCny(cost - charged),
          pausesAdmission: !!i,
        })
        .catch((err: Error) => this.logger.warn({ msg: 'could not raise a budget incident alert', tenantId, err: loggableError(err) }));
      if (i) this.bus.publish('budget', { tenantId });
    }
    return charged;
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
    // Guards past their time: answers kept for retries, and calls that never came back.
    await this.ds.query(`DELETE FROM call_guards WHERE expires_at < now() - interval '1 minute'`);
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
      admissionPaused: await this.isPaused(tenantId),
      incidents: await this.incidents(tenantId),
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
    const period = await this.currentPeriod(tenantId);
    // A new secret is stored sealed (and a legacy plaintext one dropped); without one, the stored one stays.
    const sealedSecret = dto.alertWebhookSecret === undefined ? null : this.secrets.seal('alert', tenantId, dto.alertWebhookSecret);
    await this.ds.transaction(async (m) => {
      await m.query(
        `UPDATE tenants SET monthly_cap_nanos = $2,
                budget_when_exhausted = coalesce($3, budget_when_exhausted),
                budget_alert_thresholds = coalesce($4::numeric[], budget_alert_thresholds),
                alert_webhook_url = CASE WHEN $5::boolean THEN $6 ELSE alert_webhook_url END,
                alert_webhook_secret_enc = coalesce($7, alert_webhook_secret_enc),
                alert_webhook_secret = CASE WHEN $7::text IS NULL THEN alert_webhook_secret END
          WHERE id = $1`,
        [
          tenantId,
          cap.toString(),
          dto.whenExhausted ?? null,
          dto.alertThresholds ? dto.alertThresholds.map(String) : null,
          dto.alertWebhookUrl !== undefined,
          dto.alertWebhookUrl ?? null,
          sealedSecret,
        ],
      );
      await tenantQuery(m, tenantId, `UPDATE budget_periods SET cap_nanos = $3, updated_at = now() WHERE tenant_id = $1 AND period = $2`, [
        period,
        cap.toString(),
      ]);
    });
    this.bus.publish('budget', { tenantId });
    this.logger.log({ msg: 'budget updated', tenantId, period });
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
