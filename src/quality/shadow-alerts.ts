import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { AlertsService } from '../billing/alerts.service';
import { loggableError } from '../common/error-rendering';
import { ClusterBus } from '../db/cluster-bus';
import { localDate, localParts } from '../common/time-zone';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { GradingService } from '../grading/grading.service';
import { MIN_LABELS } from './calibration.service';
import { QualityService } from './quality.service';

/** How often one tenant's shadow agreement is looked at, at most (per instance). */
const CHECK_EVERY_MS = 60_000;
const WINDOW_MS = 30 * 86_400_000;

/**
 * Watches shadow evaluation (SPEC §9): after shadow gradings land, the tenant's standard-versus-deep
 * agreement over the last 30 days is computed per rubric; under the admin's threshold, with at
 * least 20 shadow gradings of the rubric, an alert fires (AlertsService).
 */
@Injectable()
export class ShadowAlerts implements OnModuleDestroy {
  private readonly logger = new Logger(ShadowAlerts.name);
  /** tenants checked within the last minute, and whether more shadow gradings landed since */
  private readonly recent = new Map<string, { more: boolean; timer: NodeJS.Timeout }>();
  private readonly unsubscribe: () => void;

  constructor(
    bus: ClusterBus,
    private readonly quality: QualityService,
    private readonly grading: GradingService,
    private readonly alerts: AlertsService,
    private readonly tenants: TenantsRepository,
  ) {
    this.unsubscribe = bus.on<{ tenantId: string }>('shadow-graded', ({ tenantId }) => this.landed(tenantId));
  }

  onModuleDestroy(): void {
    this.unsubscribe();
    for (const r of this.recent.values()) clearTimeout(r.timer);
    this.recent.clear();
  }

  /**
   * A shadow grading landed: the tenant is checked now, then at most once a minute while more land
   * (a batch's answers arrive together), with a last check after the last of them.
   */
  private landed(tenantId: string): void {
    const r = this.recent.get(tenantId);
    if (r) {
      r.more = true;
      return;
    }
    this.run(tenantId);
  }

  private run(tenantId: string): void {
    const timer = setTimeout(() => {
      const r = this.recent.get(tenantId);
      this.recent.delete(tenantId);
      if (r?.more) this.run(tenantId);
    }, CHECK_EVERY_MS);
    timer.unref();
    this.recent.set(tenantId, { more: false, timer });
    this.check(tenantId).catch((err: Error) => this.logger.warn({ msg: 'shadow agreement check failed', tenantId, err: loggableError(err) }));
  }

  /** Fires the alert for every rubric whose shadow agreement is under the tenant's threshold; the rubrics it fired for now. */
  async check(tenantId: string, now = new Date()): Promise<string[]> {
    const { shadowAlertQwk } = await this.grading.settings(tenantId);
    if (shadowAlertQwk === null) return [];
    // The school's month and days (its agreement is counted by its local day), as its budget's are:
    // by UTC, an alert early on the 1st in Shanghai was filed under the month before, and fired again.
    const { timezone } = await this.tenants.budget(tenantId);
    const period = localDate(localParts(now, timezone)).slice(0, 7);
    const from = localDate(localParts(new Date(now.getTime() - WINDOW_MS), timezone));
    const fired: string[] = [];
    for (const g of await this.quality.shadowByRubric(tenantId, from)) {
      if (g.n < MIN_LABELS || g.qwk === null || g.qwk >= shadowAlertQwk) continue;
      const rubric = `${g.rubric.key}@${g.rubric.version}`;
      if (await this.alerts.onShadowAgreementLow(tenantId, { period, rubric, n: g.n, qwk: g.qwk, threshold: shadowAlertQwk })) fired.push(rubric);
    }
    return fired;
  }
}
