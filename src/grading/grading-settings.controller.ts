import { Body, Controller, Get, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsBoolean, IsNumber, IsOptional, Max, Min } from 'class-validator';
import { DataSource } from 'typeorm';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';

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
}

class GradingSettingsView {
  @ApiProperty()
  nearDuplicateThreshold: number;

  @ApiProperty()
  reuseResubmissionGrades: boolean;
}

@ApiTags('grading')
@ApiBearerAuth()
@Controller('v1/grading/settings')
@Auth('admin')
export class GradingSettingsController {
  constructor(private readonly ds: DataSource) {}

  @Get()
  @ApiOperation({ summary: "The tenant's near-duplicate threshold and resubmission policy" })
  async get(@TenantCaller() auth: TenantAuth): Promise<GradingSettingsView> {
    const [row] = await this.ds.query(
      `SELECT near_duplicate_threshold::text AS t, reuse_resubmission_grades AS r FROM tenants WHERE id = $1`,
      [auth.tenantId],
    );
    return { nearDuplicateThreshold: Number(row.t), reuseResubmissionGrades: row.r };
  }

  @Put()
  @ApiOperation({ summary: "Set the tenant's near-duplicate threshold and resubmission policy" })
  async put(@TenantCaller() auth: TenantAuth, @Body() dto: GradingSettingsDto): Promise<GradingSettingsView> {
    await this.ds.query(
      `UPDATE tenants SET near_duplicate_threshold = coalesce($2, near_duplicate_threshold),
              reuse_resubmission_grades = coalesce($3, reuse_resubmission_grades) WHERE id = $1`,
      [auth.tenantId, dto.nearDuplicateThreshold ?? null, dto.reuseResubmissionGrades ?? null],
    );
    return this.get(auth);
  }
}
