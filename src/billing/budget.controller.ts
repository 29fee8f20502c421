import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { BudgetService, BudgetView, IncidentView } from './budget.service';
import { UpdateBudgetDto } from './dto/update-budget.dto';
import { LedgerService, LedgerStats, USAGE_GROUPS, UsageGroup, UsageRow } from './ledger.service';
import { isCalendarDay, zonedTime } from '../common/time-zone';
import { periodProblem, periodBounds } from './periods';
import { BoundedRead } from '../tenancy/read-slot.interceptor';

/** GET /v1/usage: the ledger's calls from `from` to `to` (exclusive), one row per group. */
export interface UsageView {
  from: string;
  to: string;
  groupBy: UsageGroup;
  data: UsageRow[];
}

@ApiTags('billing')
@ApiBearerAuth()
@Controller('v1')
@Auth('admin')
export class BudgetController {
  constructor(
    private readonly budget: BudgetService,
    private readonly ledger: LedgerService,
  ) {}

  @Get('budget')
  @ApiOperation({ summary: "This month's cap, spend, reservations, remaining budget and forecast" })
  @ApiView('BudgetView')
  get(@TenantCaller() auth: TenantAuth): Promise<BudgetView> {
    return this.budget.view(auth.tenantId);
  }

  @Put('budget')
  @ApiOperation({ summary: 'Set the monthly cap, alert thresholds and what happens when the budget runs out' })
  @ApiView('BudgetView')
  put(@TenantCaller() auth: TenantAuth, @Body() dto: UpdateBudgetDto): Promise<BudgetView> {
    return this.budget.update(auth.tenantId, dto);
  }

  @Post('budget/incidents/:id/acknowledge')
  @HttpCode(200)
  @ApiOperation({ summary: 'Acknowledge a budget incident; admission resumes when none pauses it any more' })
  @ApiView('IncidentView')
  acknowledge(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<IncidentView> {
    return this.budget.acknowledge(auth.tenantId, auth.keyId, id);
  }

  @Get('usage')
  @BoundedRead('reportsInFlight')
  @ApiOperation({ summary: 'Model calls from the ledger, grouped by day, model, provider, tier or teacher key' })
  @ApiQuery({ name: 'from', required: false, description: "ISO date (midnight in the tenant's time zone) or time with its offset (default: start of this month)" })
  @ApiQuery({ name: 'to', required: false, description: "ISO date (midnight in the tenant's time zone) or time with its offset, exclusive (default: now)" })
  @ApiQuery({ name: 'groupBy', required: false, enum: USAGE_GROUPS })
  @ApiView('UsageView')
  async usage(
    @TenantCaller() auth: TenantAuth,
    @Query('from') from?: string,
    @Query('to') to?: string,
    @Query('groupBy') groupBy: string = 'day',
  ): Promise<UsageView> {
    if (!(USAGE_GROUPS as readonly string[]).includes(groupBy)) {
      throw ApiError.validation([{ field: 'groupBy', message: `groupBy must be one of ${USAGE_GROUPS.join(', ')}` }]);
    }
    const settings = await this.budget.settings(auth.tenantId);
    const period = await this.budget.currentPeriod(auth.tenantId);
    const start = from ? parseInstant(from, 'from', settings.timezone) : periodBounds(period, settings.timezone).start;
    const end = to ? parseInstant(to, 'to', settings.timezone) : new Date(Date.now() + 1000);
    if (end <= start) throw ApiError.validation([{ field: 'to', message: 'to must be after from' }]);
    const data = await this.ledger.usage(auth.tenantId, start, end, groupBy as UsageGroup, settings.timezone);
    return { from: start.toISOString(), to: end.toISOString(), groupBy: groupBy as UsageGroup, data };
  }

  @Get('stats')
  @BoundedRead('reportsInFlight')
  @ApiOperation({ summary: 'Totals from the ledger: calls, cache hits, tokens, cost, savings' })
  @ApiQuery({ name: 'period', required: false, description: 'YYYY-MM (default: all time)' })
  @ApiView('LedgerStats')
  stats(@TenantCaller() auth: TenantAuth, @Query('period') period?: string): Promise<LedgerStats> {
    const problem = period === undefined ? null : periodProblem(period);
    if (problem) throw ApiError.validation([{ field: 'period', message: problem }]);
    return this.ledger.stats(auth.tenantId, period);
  }
}

/**
 * A time given with the date and its offset (ISO 8601: `Z` or `+08:00`), or a date alone: the
 * tenant's midnight of that day, as the tenant's days are counted in its reports (and read whole
 * from the daily roll-up). A time without an offset is refused: it was read in the server's own
 * time zone, hours off from the tenant's.
 */
function parseInstant(text: string, field: string, timeZone: string): Date {
  // (Nothing is older than 1970 in the ledger; before year 1, the time zone's calendar read the date wrong.)
  if (/^\d{4}-/.test(text) && Number(text.slice(0, 4)) < 1970) throw ApiError.validation([{ field, message: `${field} must be from 1970 on` }]);
  let d: Date;
  if (isCalendarDay(text)) {
    const [y, m, dd] = text.split('-').map(Number);
    d = zonedTime(y, m, dd, timeZone);
  } else {
    // The date part a real day (2026-02-30T00:00Z was read as 2 March: JavaScript rolls a day past its month's end on).
    // (An offset is at most 14 hours, as real zones' are: -23:59 was read as a day later.)
    d = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):?[0-5]\d|14:?00))$/i.test(text) && isCalendarDay(text.slice(0, 10)) ? new Date(text) : new Date(NaN);
  }
  if (Number.isNaN(d.getTime())) {
    throw ApiError.validation([{ field, message: `${field} must be a date such as 2026-11-01 (the tenant's midnight) or a time with its offset such as 2026-11-01T08:00:00+08:00` }]);
  }
  // Its day, and the day after, in any zone (offsets up to 14 hours) stay in the year 9999: the
  // days are read back as four-digit years (a local day of the year 10000 was a 500).
  if (d.getTime() >= LATEST_INSTANT) throw ApiError.validation([{ field, message: `${field} must be before 9999-12-30` }]);
  return d;
}

const LATEST_INSTANT = Date.UTC(9999, 11, 30);
