import { Controller, Get, Header, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { BudgetService } from '../billing/budget.service';
import { periodProblem } from '../billing/periods';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { BoundedRead } from '../tenancy/read-slot.interceptor';
import { MonthReport, monthReportCsv } from './month-report';
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
  @BoundedRead('reportsInFlight')
  @ApiOperation({ summary: "The month's gradings, deep reviews, model cost, revenue, margin and savings, from the ledger and the orders" })
  @ApiQuery({ name: 'period', required: false, description: 'YYYY-MM (default: this month)' })
  @ApiView('MonthReport')
  async month(@TenantCaller() auth: TenantAuth, @Query('period') period?: string): Promise<MonthReport> {
    const problem = period === undefined ? null : periodProblem(period);
    if (problem) throw ApiError.validation([{ field: 'period', message: problem }]);
    const p = period ?? (await this.budget.currentPeriod(auth.tenantId));
    return this.reports.month(auth.tenantId, p);
  }

  @Get('reports/month.csv')
  @BoundedRead('reportsInFlight')
  @Header('content-type', 'text/csv; charset=utf-8')
  @ApiOperation({ summary: 'The monthly report as CSV that opens in Excel (UTF-8 with BOM): one row per figure, money as CNY decimal strings' })
  @ApiQuery({ name: 'period', required: false, description: 'YYYY-MM (default: this month)' })
  async monthCsv(
    @TenantCaller() auth: TenantAuth,
    @Res({ passthrough: true }) reply: FastifyReply,
    @Query('period') period?: string,
  ): Promise<string> {
    const report = await this.month(auth, period);
    void reply.header('content-disposition', `attachment; filename="month-report-${report.period}.csv"`);
    return monthReportCsv(report);
  }
}
