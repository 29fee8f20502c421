import { applyDecorators, Body, Controller, Get, Param, ParseUUIDPipe, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsInt, IsOptional, Max, Min, ValidateIf } from 'class-validator';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { TenantLimits } from '../config/app-config';
import { LimitsService, LimitsView } from './limits.service';

/** One limit in PUT /v1/tenants/:id/limits: a whole number from 1 to `max`, or null for the default. */
const Limit = (max: number) =>
  applyDecorators(ApiPropertyOptional({ type: 'integer', nullable: true, minimum: 1, maximum: max }), IsOptional(), ValidateIf((_, v) => v !== null), IsInt(), Min(1), Max(max));

/** The operator's values for one tenant; a field left out keeps its value, null returns to the default. */
export class SetLimitsDto implements Partial<Record<keyof TenantLimits, number | null>> {
  @Limit(1_000_000) requestsPerSecondPerKey?: number | null;
  @Limit(1_000_000) requestBurstPerKey?: number | null;
  @Limit(1_000_000) requestsPerSecondPerTenant?: number | null;
  @Limit(1_000_000) requestBurstPerTenant?: number | null;
  @Limit(1_000_000) apiKeys?: number | null;
  @Limit(1_000_000) rubricVersions?: number | null;
  @Limit(10_000_000) assignments?: number | null;
  @Limit(10_000_000) essaysQueued?: number | null;
  @Limit(100_000) essaysGrading?: number | null;
  @Limit(100_000) chatInFlight?: number | null;
  @Limit(100_000) eventStreams?: number | null;
  @Limit(100_000) providerCalls?: number | null;
  @Limit(100_000) reportsInFlight?: number | null;
  @Limit(100_000) readsInFlight?: number | null;
}

@ApiTags('limits')
@ApiBearerAuth()
@Controller('v1')
export class LimitsController {
  constructor(private readonly limits: LimitsService) {}

  @Get('limits')
  @Auth('admin', 'teacher')
  @ApiOperation({ summary: "This tenant's fair-use limits and what it uses of them now" })
  @ApiView('LimitsView')
  view(@TenantCaller() auth: TenantAuth): Promise<LimitsView> {
    return this.limits.view(auth.tenantId);
  }

  @Put('tenants/:id/limits')
  @Auth('operator')
  @ApiOperation({ summary: "Set a tenant's limits (operator token); null returns a limit to the default" })
  @ApiView('LimitsView')
  async set(@Param('id', new ParseUUIDPipe({ exceptionFactory: () => ApiError.notFound('Tenant') })) id: string, @Body() dto: SetLimitsDto): Promise<LimitsView> {
    await this.limits.set(id, dto);
    return this.limits.view(id);
  }
}
