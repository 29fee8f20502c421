import { Readable } from 'node:stream';
import { Body, Controller, Get, Header, HttpCode, Logger, Param, Patch, Post, Query, Res, StreamableFile, UseInterceptors } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ApiView } from '../docs/api-view';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { attachment } from '../common/csv';
import { IdempotencyInterceptor } from '../tenancy/idempotency.interceptor';
import { Assignment, AssignmentDetail, AssignmentsService, AssignmentSummary } from './assignments.service';
import { AssignmentQualityDto, CreateAssignmentDto } from './dto/assignment.dto';
import { BoundedRead } from '../tenancy/read-slot.interceptor';

/** GET /v1/assignments: a page, newest first; `nextCursor` (null on the last page) asks for the next. */
export interface AssignmentList {
  data: AssignmentSummary[];
  nextCursor: string | null;
}

@ApiTags('grading')
@ApiBearerAuth()
@Controller('v1/assignments')
@Auth('admin', 'teacher')
export class AssignmentsController {
  private readonly logger = new Logger(AssignmentsController.name);

  constructor(private readonly assignments: AssignmentsService) {}

  @Post()
  @HttpCode(201)
  @UseInterceptors(IdempotencyInterceptor)
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'A retry with the same key and body within 24 hours gets the first answer, not a second assignment' })
  @ApiOperation({ summary: 'Create an assignment: title, essay prompt (作文题目), rubric and language; optionally a deadline (dueBy) its essays are graded by where it costs least' })
  @ApiView('Assignment', { status: 201 })
  create(@TenantCaller() auth: TenantAuth, @Body() dto: CreateAssignmentDto): Promise<Assignment> {
    return this.assignments.create(auth, dto);
  }

  @Get()
  @BoundedRead()
  @ApiOperation({ summary: 'Assignments, newest first, with their essay counts by status, with cursor pagination' })
  @ApiView('AssignmentList')
  @ApiQuery({ name: 'limit', required: false, type: Number, minimum: 1, maximum: 200, description: '1-200, default 200' })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the previous page' })
  list(@TenantCaller() auth: TenantAuth, @Query('limit') limit?: string, @Query('cursor') cursor?: string): Promise<AssignmentList> {
    return this.assignments.list(auth, { limit, cursor });
  }

  @Get(':id')
  @BoundedRead()
  @ApiOperation({ summary: 'An assignment with essay counts by status and the score distribution' })
  @ApiView('AssignmentDetail')
  get(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<AssignmentDetail> {
    return this.assignments.detail(auth, id);
  }

  @Patch(':id')
  @ApiOperation({ summary: "Change how the assignment's grades are checked: escalate (off | flag | deep), passMark, expectedLength, and its deadline dueBy (null clears; gradings still queued are planned again)" })
  @ApiView('Assignment')
  update(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Body() dto: AssignmentQualityDto): Promise<Assignment> {
    return this.assignments.update(auth, id, dto);
  }

  @Get(':id/grades.csv')
  @BoundedRead()
  @Header('content-type', 'text/csv; charset=utf-8')
  @ApiOperation({
    summary: "The assignment's grades as CSV that opens in Excel (UTF-8 with BOM), named after the assignment: student, total, each dimension, comment, who graded it, calibration, flags, time graded",
  })
  async gradesCsv(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply): Promise<StreamableFile> {
    const { chunks, title } = await this.assignments.gradesCsv(auth.tenantId, id);
    void reply.header('content-disposition', attachment(`${title} grades.csv`, 'grades.csv'));
    // Sent a page at a time, each read once the one before has gone out (Readable.from waits for the reader).
    const stream = Readable.from(chunks, { objectMode: false });
    // A page that cannot be read once the sheet has begun cuts the download off (its 200 is sent):
    // said in the log, where nothing else would say it.
    stream.on('error', (err: Error) => this.logger.error({ msg: 'an export failed partway: the download was cut off', tenantId: auth.tenantId, assignmentId: id, err: loggableError(err) }));
    return new StreamableFile(stream, { type: 'text/csv; charset=utf-8' });
  }
}
