import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { EntityManager } from 'typeorm';
import { formatCny, Nanos } from '../common/money';
import { TtlCache } from '../common/ttl-cache';
import { ClusterBus } from '../db/cluster-bus';
import { alertEvent, AlertsRepository } from './alerts.repository';
import { MetricsService, OTHER_TENANTS } from '../metrics/metrics.service';
import { periodOf } from './periods';

/**
 * Budget alerts: each threshold fires once per tenant per period, as a log line, a metric and,
 * when the tenant has set a URL, a signed webhook (queued with the alert in one statement, delivered
 * and retried with backoff by the WebhookDispatcher). Thresholds fire from settled spend only. A
 * refused call is its own alert, `budget.call_refused`, once per period: a call can be refused well
 * below the cap (a class set's worst-case reservations in flight, a deep review larger than what is
 * left), and "the cap is reached" would then be wrong and keep the real crossing silent.
 */
@Injectable()
export class AlertsService {
  private readonly logger = new Logger(AlertsService.name);
  /** alerts already fired (each with its tenant), so most calls skip the database entirely */
  private readonly fired = new TtlCache<string, string>(86_400_000, 50_000);
  /**
   * When each tenant's budget last changed (a number from `changeCount`, kept as long as `fired`):
   * an alert is remembered as fired only if no change came while the database was asked, else a
   * cap raised meanwhile (its alert re-armed, `fired` emptied) would be followed by the stale
   * "fired" and the alert under the new cap never sent from here.
   */
  private readonly changedAt = new TtlCache<string, number>(86_400_000, 50_000);
  private changeCount = 0;
  private resyncedAt = 0;
  private readonly alertsTotal: Counter<'tenant' | 'threshold'>;
  private readonly utilization: Gauge<'tenant'>;
  /**
   * the period each tenant's gauge shows, and the school's time zone, in which that period ends (one
   * entry a labelled tenant: METRICS_TENANT_SERIES at most)
   */
  private readonly gaugePeriod = new Map<string, { period: string; timeZone?: string }>();
  private readonly incidentsTotal: Counter<'tenant' | 'kind'>;
  private readonly qualityAlertsTotal: Counter<'tenant'>;
  private readonly refusalsTotal: Counter<'tenant'>;

  constructor(
    private readonly alerts: AlertsRepository,
    private readonly metrics: MetricsService,
    bus: ClusterBus,
  ) {
    // A new cap re-arms the alerts it puts back in reach (BudgetService.update): every instance
    // forgets what it had seen fire for the tenant, and asks the database again.
    bus.on<{ tenantId: string; capChanged?: boolean }>('budget', ({ tenantId, capChanged }) => {
      this.changedAt.set(tenantId, ++this.changeCount);
      this.fired.deleteWhere((t) => t === tenantId);
      // Its gauge showed the ratio under the old cap: gone until the next settlement sets it again
      // (on the instance that made the change, at once: BudgetService.update checks the alerts).
      if (capChanged) this.dropGauge(tenantId);
    });
    bus.on('resync', () => {
      this.fired.clear();
      this.changedAt.clear();
      this.resyncedAt = ++this.changeCount;
    });
    this.alertsTotal = new Counter({ name: 'inkstone_budget_alerts_total', help: 'Budget alerts fired', labelNames: ['tenant', 'threshold'], registers: [metrics.registry] });
    this.incidentsTotal = new Counter({ name: 'inkstone_budget_incidents_total', help: 'Calls billed beyond the bound they were admitted with', labelNames: ['tenant', 'kind'], registers: [metrics.registry] });
    this.refusalsTotal = new Counter({ name: 'inkstone_budget_refusals_total', help: 'Calls that did not fit under the cap', labelNames: ['tenant'], registers: [metrics.registry] });
    this.qualityAlertsTotal = new Counter({ name: 'inkstone_quality_alerts_total', help: 'Shadow-agreement alerts fired', labelNames: ['tenant'], registers: [metrics.registry] });
    this.utilization = new Gauge({
      name: 'inkstone_budget_utilization_ratio',
      help: "Settled spend / cap of the tenant's current period",
      labelNames: ['tenant'],
      registers: [metrics.registry],
      // At each scrape: a school whose period has ended since its last settlement has no ratio of this period yet.
      collect: () => this.dropEndedPeriods(),
    });
  }

  /** The tenant's last budget change (or the last resync, when later): compared across an await. */
  private lastChange(tenantId: string): number {
    return Math.max(this.changedAt.get(tenantId) ?? 0, this.resyncedAt);
  }

  /** Remembers the alert as fired unless the tenant's budget changed since `since` (lastChange). */
  private remember(key: string, tenantId: string, since: number): void {
    if (this.lastChange(tenantId) === since) this.fired.set(key, tenantId);
  }

  private dropGauge(label: string): void {
    if (!this.gaugePeriod.delete(label)) return;
    this.utilization.remove({ tenant: label });
  }

  /** The gauges of periods that have ended (last month's ratio is not this month's). One period computed a time zone. */
  private dropEndedPeriods(): void {
    const now = new Date();
    const current = new Map<string, string>();
    for (const [label, shown] of this.gaugePeriod) {
      if (!shown.timeZone) continue;
      let period = current.get(shown.timeZone);
      if (period === undefined) current.set(shown.timeZone, (period = periodOf(now, shown.timeZone)));
      if (period > shown.period) this.dropGauge(label);
    }
  }

  /** After a settlement: fire every threshold the spend has reached. */
  async onSpend(tenantId: string, period: string, spent: Nanos, cap: Nanos, thresholds: string[], timeZone?: string): Promise<void> {
    const ratio = utilization(spent, cap);
    // (a tenant past METRICS_TENANT_SERIES has no gauge: one ratio for many tenants would mean nothing)
    const label = this.metrics.tenantLabel(tenantId);
    // The latest period's ratio: a call of last month settled after the turn (a batch admitted on
    // the 31st) does not put last month's ratio back on the gauge.
    if (label !== OTHER_TENANTS && period >= (this.gaugePeriod.get(label)?.period ?? '')) {
      this.gaugePeriod.set(label, { period, timeZone });
      this.utilization.set({ tenant: label }, ratio);
    }
    for (const t of thresholds) if (ratio >= Number(t)) await this.fire(tenantId, period, t, ratio);
  }

  /** The period's cap changed (in its transaction): the alerts it puts back in reach are re-armed (AlertsRepository.rearm). */
  rearm(tx: EntityManager, tenantId: string, period: string, capChanged: boolean): Promise<void> {
    return this.alerts.rearm(tx, tenantId, period, capChanged);
  }

  /**
   * A call did not fit under the cap: counted every time, and alerted once per period (a warning
   * log line and `budget.call_refused` to the alert webhook) with what the period held then.
   */
  async onRefused(tenantId: string, period: string, at: { spent: Nanos; reserved: Nanos; cap: Nanos; needed: Nanos }): Promise<void> {
    this.refusalsTotal.inc({ tenant: this.metrics.tenantLabel(tenantId) });
    const key = `${tenantId}:${period}:refused`;
    if (this.fired.get(key)) return;
    const ratio = utilization(at.spent, at.cap);
    const data = {
      tenantId,
      period,
      utilization: Number(ratio.toFixed(4)),
      spent: formatCny(at.spent),
      reserved: formatCny(at.reserved),
      cap: formatCny(at.cap),
      needed: formatCny(at.needed),
    };
    const eventId = `refused_${randomUUID()}`;
    const since = this.lastChange(tenantId);
    const fired = await this.alerts.fireCallRefused(tenantId, { period, ratio: ratio.toFixed(4), eventId, body: alertEvent(eventId, 'budget.call_refused', data) });
    this.remember(key, tenantId, since);
    if (fired) this.logger.warn({ msg: 'budget alert: a call did not fit under the cap', ...data });
  }

  /**
   * A budget incident (BudgetService.settle): a provider billed more than the bound the call was
   * admitted with, or more than the cap could take. Sent to the tenant's alert webhook as
   * `budget.incident`, queued in the settlement's transaction (`m`); once it is committed,
   * `incidentRaised` logs and counts it.
   */
  async queueIncident(m: EntityManager, tenantId: string, period: string, data: IncidentAlert): Promise<void> {
    const eventId = `incident_${randomUUID()}`;
    await this.alerts.queue(tenantId, eventId, alertEvent(eventId, 'budget.incident', { tenantId, period, ...data }), m);
  }

  /** A committed budget incident: logged as an error and counted. */
  incidentRaised(tenantId: string, period: string, data: IncidentAlert): void {
    this.incidentsTotal.inc({ tenant: this.metrics.tenantLabel(tenantId), kind: data.kind });
    this.logger.error({ msg: 'budget incident: a call was billed beyond its bound', tenantId, period, ...data });
  }

  /**
   * Shadow evaluation found the standard tier agreeing with the deep tier less than the admin
   * accepts (SPEC §9): logged, counted, and sent to the alert webhook as
   * `quality.shadow_agreement_low`, once per rubric and month.
   */
  async onShadowAgreementLow(tenantId: string, data: { period: string; rubric: string; n: number; qwk: number; threshold: number }): Promise<boolean> {
    const key = `shadow:${tenantId}:${data.period}:${data.rubric}`;
    if (this.fired.get(key)) return false;
    const eventId = `shadow_low_${data.period}_${data.rubric}`;
    const body = alertEvent(eventId, 'quality.shadow_agreement_low', { tenantId, ...data });
    const since = this.lastChange(tenantId);
    const fired = await this.alerts.fireShadowAlert(tenantId, { ...data, eventId, body });
    this.remember(key, tenantId, since);
    if (!fired) return false; // fired already (here or on another instance)
    this.qualityAlertsTotal.inc({ tenant: this.metrics.tenantLabel(tenantId) });
    this.logger.warn({ msg: 'shadow agreement under the threshold', tenantId, ...data });
    return true;
  }

  private async fire(tenantId: string, period: string, threshold: string, ratio: number): Promise<void> {
    const key = `${tenantId}:${period}:${Number(threshold)}`;
    if (this.fired.get(key)) return;
    const eventId = `alert_${randomUUID()}`;
    const body = alertEvent(eventId, 'budget.threshold_reached', { tenantId, period, threshold: Number(threshold), utilization: Number(ratio.toFixed(4)) });
    // One statement: the alert is recorded and its webhook queued together, or neither (another
    // instance fired it). The webhook's event id is the body's id, the same on every attempt.
    const since = this.lastChange(tenantId);
    const fired = await this.alerts.fireThreshold(tenantId, { period, threshold, ratio: ratio.toFixed(4), eventId, body });
    // (not reached under the cap as it is now — raised since this spend's cap was read — is asked again later)
    if (fired !== 'not reached') this.remember(key, tenantId, since);
    if (fired !== 'fired') return; // another instance fired it, or it is not reached
    this.alertsTotal.inc({ tenant: this.metrics.tenantLabel(tenantId), threshold: thresholdLabel(threshold) });
    this.logger.warn({ msg: 'budget alert', tenantId, period, threshold: Number(threshold), utilization: Number(ratio.toFixed(4)) });
  }
}

/** What a `budget.incident` says (amounts as decimal CNY). */
export interface IncidentAlert {
  kind: 'tokens_over_bound' | 'over_reservation';
  provider: string | null;
  model: string | null;
  cost: string;
  charged: string;
  excess: string;
  pausesAdmission: boolean;
}

/**
 * A threshold's label on the alerts counter: its tenth, rounded down (0.85 → "0.8", 1 → "1"). A
 * tenant chooses its thresholds (any of 10,000 fractions, ten at a time, all fired at once by a cap
 * of zero): labelled exactly, each new one was a new series on /metrics, past what
 * METRICS_TENANT_SERIES bounds; so a tenant has at most eleven. The alert itself keeps its exact
 * threshold (its row, its webhook, its log line).
 */
export function thresholdLabel(threshold: string): string {
  return String(Math.floor(Math.round(Number(threshold) * 10_000) / 1_000) / 10);
}

/** Spend over cap, to six places (a cap of zero is used up). */
function utilization(spent: Nanos, cap: Nanos): number {
  return cap === 0n ? 1 : Number((spent * 1_000_000n) / cap) / 1_000_000;
}
