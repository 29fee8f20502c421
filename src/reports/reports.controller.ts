import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { BudgetService } from '../billing/budget.service';
import { isPeriod } from '../billing/periods';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import type { MonthReport } from './month-report';
import { ReportsService } from './reports.service';

@ApiTags('billing')
@ApiBearerAuth()
@Controller('v1')
@Auth('admin')
export class ReportsController {
  constructor(
    private readonly reports: ReportsService,
    private readonly budget: BudgetService,
  ) {}

  @Get('reports/month')
  @ApiOperation({ summary: "The month's gradings, deep reviews, model cost, revenue, margin and savings, from the ledger and the orders" })
  @ApiQuery({ name: 'period', required: false, description: 'YYYY-MM (default: this month)' })
  async month(@TenantCaller() auth: TenantAuth, @Query('period') period?: string): Promise<MonthReport> {
    if (period !== undefined && !isPeriod(period)) throw ApiError.validation([{ field: 'period', message: 'period must be YYYY-MM' }]);
    return this.reports.month(auth.tenantId, period ?? (await this.budget.currentPeriod(auth.tenantId)));
  }
}
