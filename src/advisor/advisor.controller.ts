import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsNumber, IsObject, IsOptional, IsString, Length, Max, Min, ValidateNested } from 'class-validator';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiView } from '../docs/api-view';
import { BoundedRead } from '../tenancy/read-slot.interceptor';
import { AdvisorService, CostEstimateView } from './advisor.service';
import { BusinessValue, businessValue, ErrorTolerance } from './business-value';

export class BusinessValueDto {
  @ApiProperty({ example: 'customer_service', description: 'content_generation, data_extraction, code_assistance, customer_service, data_analysis, simple_classification, real_time_reasoning, high_risk_decision (anything else scores as unknown)' })
  @IsString()
  @Length(1, 64)
  taskType: string;

  @ApiProperty({ enum: ['high', 'medium', 'low'] })
  @IsIn(['high', 'medium', 'low'])
  errorTolerance: ErrorTolerance;

  @ApiProperty({ example: 5000, description: 'uses per day' })
  @IsNumber()
  @Min(0)
  @Max(1e9)
  frequency: number;

  @ApiProperty()
  @IsBoolean()
  userWillingToPay: boolean;
}

class TokensPerCallDto {
  @ApiProperty({ minimum: 1, maximum: 1_000_000 })
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  input: number;

  @ApiProperty({ minimum: 0, maximum: 1_000_000 })
  @IsInt()
  @Min(0)
  @Max(1_000_000)
  output: number;
}

export class CostEstimateDto {
  @ApiProperty({ example: 6700, description: 'model calls per day, cache hits included (a grading is one; an escalation to the deep tier, a shadow grading, one more)' })
  @IsInt()
  @Min(0)
  @Max(100_000_000)
  dailyCalls: number;

  @ApiPropertyOptional({ example: { input: 1800, output: 700 }, description: 'tokens of an average call; models that cannot take a call of this size are left out (cannotTake)' })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => TokensPerCallDto)
  tokensPerCall?: TokensPerCallDto;

  @ApiPropertyOptional({ example: 0.45 })
  @IsOptional()
  @IsNumber()
  @Min(0)
  @Max(1)
  cacheHitRate?: number;

  @ApiPropertyOptional({ example: 0.1, description: 'share of the calls that reach a model (not answered by the cache) that are on the deep tier' })
  @IsOptional()
  @IsNumber()
  @Min(0)
  @Max(1)
  deepShare?: number;

  @ApiPropertyOptional({ description: "use the tenant's own ledger averages (its last 90 days, every call of grading work) for tokens, cache hit rate and deep share; these are then not given" })
  @IsOptional()
  @IsBoolean()
  measured?: boolean;
}

@ApiTags('advisor')
@ApiBearerAuth()
@Controller('v1/advisor')
@Auth('admin', 'teacher')
export class AdvisorController {
  constructor(private readonly advisor: AdvisorService) {}

  @Post('business-value')
  @HttpCode(200)
  @ApiOperation({ summary: "The article's commercial-value matrix: score 0-100 and a suggestion" })
  @ApiView('BusinessValue')
  businessValue(@Body() dto: BusinessValueDto): BusinessValue {
    return businessValue(dto);
  }

  @Post('cost-estimate')
  @HttpCode(200)
  @BoundedRead('reportsInFlight')
  @ApiOperation({ summary: 'Daily, monthly and yearly model cost per model and for the tier mix; measured: true uses the ledger' })
  @ApiView('CostEstimateView')
  costEstimate(@TenantCaller() auth: TenantAuth, @Body() dto: CostEstimateDto): Promise<CostEstimateView> {
    return this.advisor.costEstimate(auth, dto);
  }
}
