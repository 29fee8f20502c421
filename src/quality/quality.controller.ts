import { Controller, Delete, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { clientGoneSignal } from '../common/client-gone';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError, FieldProblem } from '../common/errors';
import { isCalendarDay } from '../common/time-zone';
import { ApiView } from '../docs/api-view';
import { QUALITY_GROUPS, QualityGroup } from './quality.repository';
import { CalibrationService, CalibrationView, RegradeResult } from './calibration.service';
import { AssignmentAgreement, QualityService, QualityView } from './quality.service';
import { BoundedRead } from '../tenancy/read-slot.interceptor';

/** A day, YYYY-MM-DD (agreement is kept by the day an essay was submitted, in the tenant's time zone). */
function parseDay(value: string | undefined, field: string, problems: FieldProblem[]): string | undefined {
  if (value === undefined) return undefined;
  if (!isCalendarDay(value)) problems.push({ field, message: `${field} must be a day, YYYY-MM-DD` });
  return value;
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
  @BoundedRead()
  @HttpCode(201)
  @ApiOperation({
    summary:
      "Fit a calibration from this assignment's teacher-overridden essays (at least 20): isotonic for model grades; for offline grades, a shift or a line from the offline grader's total or (from 60 labels) a ridge over its features, whichever cross-validates best; 5-fold cross-validated before/after; switched on only if it does better than none",
  })
  @ApiView('CalibrationView', { status: 201 })
  fit(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply): Promise<CalibrationView> {
    // Stops when its client leaves (nothing saved).
    return this.calibration.fit(auth, id, clientGoneSignal(reply));
  }

  @Get('assignments/:id/calibration')
  @ApiOperation({ summary: "The assignment's calibration in force (404 when none)" })
  @ApiView('CalibrationView')
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
  @BoundedRead()
  @HttpCode(202)
  @ApiOperation({ summary: 'Apply the calibration in force (or none) to every graded essay of the assignment no teacher overrode: no model call, no cost' })
  @ApiView('RegradeResult', { status: 202 })
  regrade(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply): Promise<RegradeResult> {
    // Stops when its client leaves (what it wrote stays; a regrade again does the rest).
    return this.calibration.regrade(auth, id, clientGoneSignal(reply));
  }

  @Get('assignments/:id/agreement')
  @BoundedRead()
  @ApiOperation({ summary: "Agreement between the grader's original grades and the teachers' overrides on this assignment: n, QWK, exact, adjacent, bias, per dimension" })
  @ApiView('AssignmentAgreement')
  agreement(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<AssignmentAgreement> {
    return this.quality.forAssignment(auth.tenantId, id);
  }

  @Get('quality')
  @BoundedRead()
  @ApiOperation({ summary: "Agreement with the teachers' overrides across the tenant, by rubric, tier, model or source (one row per group and rubric)" })
  @ApiQuery({ name: 'groupBy', required: false, enum: QUALITY_GROUPS, description: 'default rubric' })
  @ApiQuery({ name: 'from', required: false, description: "YYYY-MM-DD: essays submitted on or after this day (the tenant's time zone)" })
  @ApiQuery({ name: 'to', required: false, description: 'YYYY-MM-DD: essays submitted before this day' })
  @ApiView('QualityView')
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
    const f = { from: parseDay(from, 'from', problems), to: parseDay(to, 'to', problems) };
    // (Days as YYYY-MM-DD compare as text. `to` is the first day left out, as in /v1/usage: from = to
    // is an empty range, refused as such rather than answered with nothing.)
    if (!problems.length && f.from !== undefined && f.to !== undefined && f.to <= f.from) problems.push({ field: 'to', message: 'to must be after from (to is the first day left out)' });
    if (problems.length) throw ApiError.validation(problems);
    return this.quality.overview(auth.tenantId, (groupBy as QualityGroup | undefined) ?? 'rubric', f);
  }
}
