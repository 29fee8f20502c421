import { Inject, Injectable } from '@nestjs/common';
import { BudgetService } from '../billing/budget.service';
import { periodBounds } from '../billing/periods';
import { LLM_MODELS, LlmModels } from '../llm/llm-models';
import { MonthReport, monthReport } from './month-report';
import { ReportsRepository } from './reports.repository';

/** The month report of a tenant: its period in the tenant's time zone, the figures from month-report.ts. */
@Injectable()
export class ReportsService {
  constructor(
    private readonly reports: ReportsRepository,
    private readonly budget: BudgetService,
    @Inject(LLM_MODELS) private readonly models: LlmModels,
  ) {}

  async month(tenantId: string, period: string): Promise<MonthReport> {
    const { timezone } = await this.budget.settings(tenantId);
    const { start, end } = periodBounds(period, timezone);
    const catalog = this.models.catalog;
    const premium = this.models.tiers.deep[0]?.[0]?.model ?? catalog.models.get(catalog.defaultTiers.deep[0] ?? '');
    return monthReport({
      period,
      timezone,
      groups: await this.reports.ledgerGroups(tenantId, period),
      orders: await this.reports.orders(tenantId, start, end),
      offline: await this.reports.offlineGradings(tenantId, start, end),
      floorOf: (key) => catalog.models.get(key)?.floor,
      premium: premium ? { key: premium.key, floor: premium.floor } : null,
    });
  }
}
