import { Body, Controller, Get, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsBoolean, IsInt, IsNumber, IsOptional, Max, Min } from 'class-validator';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiView } from '../docs/api-view';
import { GradingService } from './grading.service';

export class GradingSettingsDto {
  @ApiPropertyOptional({ example: 0.5, description: 'Jaccard similarity (5-gram shingles) at which an essay is flagged possible_copy' })
  @IsOptional()
  @IsNumber({ maxDecimalPlaces: 3 })
  @Min(0.05)
  @Max(1)
  nearDuplicateThreshold?: number;

  @ApiPropertyOptional({ description: "reuse the earlier grade of the same student's resubmission with trivial edits (similarity ≥ 0.95)" })
  @IsOptional()
  @IsBoolean()
  reuseResubmissionGrades?: boolean;

  @ApiPropertyOptional({ description: 'let admin keys submit essays with tier "deep" directly, at the premium price, without a deep-review order' })
  @IsOptional()
  @IsBoolean()
  directDeep?: boolean;

  @ApiPropertyOptional({ example: 0.05, description: 'shadow evaluation: the share (0–0.2) of standard model gradings also graded on the deep tier in the background (batch price where the provider has one, inside the budget, ledger purpose shadow), never shown as the grade' })
  @IsOptional()
  @IsNumber({ maxDecimalPlaces: 3 })
  @Min(0)
  @Max(0.2)
  shadowRate?: number;

  @ApiPropertyOptional({ type: Number, example: 0.6, nullable: true, description: 'alert (webhook quality.shadow_agreement_low) when standard-versus-deep QWK over the last 30 days falls under this, with at least 20 shadow gradings of a rubric; null: no alert' })
  @IsOptional()
  @IsNumber({ maxDecimalPlaces: 3 })
  @Min(-1)
  @Max(1)
  shadowAlertQwk?: number | null;

  @ApiPropertyOptional({
    type: Number,
    example: 365,
    nullable: true,
    description: "essays older than this many days (1–3650) are erased as DELETE /v1/essays/:id erases one (text, student, grades, cached answers; their cost stays in the books); null: kept until erased",
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3650)
  essayRetentionDays?: number | null;
}

/** GET/PUT /v1/grading/settings */
export class GradingSettingsView {
  @ApiProperty()
  nearDuplicateThreshold: number;

  @ApiProperty()
  reuseResubmissionGrades: boolean;

  @ApiProperty()
  directDeep: boolean;

  @ApiProperty()
  shadowRate: number;

  @ApiProperty({ nullable: true, type: Number })
  shadowAlertQwk: number | null;

  @ApiProperty({ nullable: true, type: Number })
  essayRetentionDays: number | null;
}

@ApiTags('grading')
@ApiBearerAuth()
@Controller('v1/grading/settings')
@Auth('admin')
export class GradingSettingsController {
  constructor(private readonly grading: GradingService) {}

  @Get()
  @ApiOperation({ summary: "The tenant's near-duplicate threshold, resubmission policy, direct deep grading, shadow evaluation and essay retention" })
  @ApiView('GradingSettingsView')
  get(@TenantCaller() auth: TenantAuth): Promise<GradingSettingsView> {
    return this.grading.settings(auth.tenantId);
  }

  @Put()
  @ApiOperation({ summary: "Set the tenant's near-duplicate threshold, resubmission policy, direct deep grading, shadow evaluation and essay retention" })
  @ApiView('GradingSettingsView')
  put(@TenantCaller() auth: TenantAuth, @Body() dto: GradingSettingsDto): Promise<GradingSettingsView> {
    return this.grading.updateSettings(auth.tenantId, dto);
  }
}
