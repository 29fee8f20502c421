import { Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError, FieldProblem } from '../common/errors';
import { QUALITY_GROUPS, QualityGroup } from './quality.repository';
import { CalibrationService, CalibrationView } from './calibration.service';
import { AssignmentAgreement, QualityService, QualityView } from './quality.service';

function parseDate(value: string | undefined, field: string, problems: FieldProblem[]): Date | undefined {
  if (value === undefined) return undefined;
  const d = /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?$/.test(value) ? new Date(value) : new Date(NaN);
  if (Number.isNaN(d.getTime())) problems.push({ field, message: `${field} must be a date (YYYY-MM-DD) or an ISO timestamp` });
  return d;
}

@ApiTags('quality')
@ApiBearerAuth()
@Controller('v1')
@Auth('admin', 'teacher')
export class QualityController {
  constructor(
    private readonly quality: QualityService,
    private readonly calibration: CalibrationService,
  ) {}

  @Post('assignments/:id/calibration')
  @HttpCode(201)
  @ApiOperation({
    summary:
      "Fit a calibration from this assignment's teacher-overridden essays (at least 20): isotonic for model grades, ridge over the offline grader's features for offline grades; 5-fold cross-validated before/after; switched on only if it does no worse than none",
  })
  fit(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<CalibrationView> {
    return this.calibration.fit(auth, id);
  }

  @Get('assignments/:id/calibration')
  @ApiOperation({ summary: "The assignment's calibration in force (404 when none)" })
  current(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<CalibrationView> {
    return this.calibration.current(auth.tenantId, id);
  }

  @Delete('assignments/:id/calibration')
  @HttpCode(204)
  @ApiOperation({ summary: "Turn the assignment's calibration off (kept; regrade to apply)" })
  async remove(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<void> {
    await this.calibration.remove(auth.tenantId, id);
  }

  @Post('assignments/:id/regrade')
  @HttpCode(202)
  @ApiOperation({ summary: 'Apply the calibration in force (or none) to every graded essay of the assignment no teacher overrode: no model call, no cost' })
  regrade(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<{ essays: number; calibration: number | null }> {
    return this.calibration.regrade(auth, id);
  }

  @Get('assignments/:id/agreement')
  @ApiOperation({ summary: "Agreement between the grader's original grades and the teachers' overrides on this assignment: n, QWK, exact, adjacent, bias, per dimension" })
  agreement(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<AssignmentAgreement> {
    return this.quality.forAssignment(auth.tenantId, id);
  }

  @Get('quality')
  @ApiOperation({ summary: "Agreement with the teachers' overrides across the tenant, by rubric, tier, model or source (one row per group and rubric)" })
  @ApiQuery({ name: 'groupBy', required: false, enum: QUALITY_GROUPS, description: 'default rubric' })
  @ApiQuery({ name: 'from', required: false, description: 'essays submitted from this date (inclusive)' })
  @ApiQuery({ name: 'to', required: false, description: 'essays submitted before this date' })
  overview(
    @TenantCaller() auth: TenantAuth,
    @Query('groupBy') groupBy?: string,
    @Query('from') from?: string,
    @Query('to') to?: string,
  ): Promise<QualityView> {
    const problems: FieldProblem[] = [];
    if (groupBy !== undefined && !(QUALITY_GROUPS as readonly string[]).includes(groupBy)) {
      problems.push({ field: 'groupBy', message: `groupBy must be one of ${QUALITY_GROUPS.join(', ')}` });
    }
    const f = { from: parseDate(from, 'from', problems), to: parseDate(to, 'to', problems) };
    if (problems.length) throw ApiError.validation(problems);
    return this.quality.overview(auth.tenantId, (groupBy as QualityGroup | undefined) ?? 'rubric', f);
  }
}
