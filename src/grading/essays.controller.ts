import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req, Res, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { ApiView } from '../docs/api-view';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { AnswersWhileClosing, BodyLimit, KiB, MiB } from '../common/route-config';
import { IdempotencyInterceptor } from '../tenancy/idempotency.interceptor';
import { EraseStudentDto, OrderDeepReviewDto, OverrideGradeDto, SubmitBatchDto, SubmitEssayDto } from './dto/essay.dto';
import { EssayErasure, ErasedEssay, ErasedStudent } from './essay-erasure.service';
import { EssayStreamService } from './essay-stream.service';
import { ESSAY_STATUSES } from './essay-lifecycle';
import { OrderView } from '../billing/orders.service';
import { EssayPage, EssaysService, EssayView, SubmittedBatch, SubmittedEssay } from './essays.service';
import { BoundedRead } from '../tenancy/read-slot.interceptor';

@ApiTags('grading')
@ApiBearerAuth()
@Controller('v1/essays')
@Auth('admin', 'teacher')
export class EssaysController {
  constructor(
    private readonly essays: EssaysService,
    private readonly streams: EssayStreamService,
    private readonly erasure: EssayErasure,
  ) {}

  @Post()
  @BodyLimit(256 * KiB)
  @HttpCode(202)
  @UseInterceptors(IdempotencyInterceptor)
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'A retry with the same key and body within 24 hours gets the first answer, not a second essay' })
  @ApiOperation({ summary: 'Submit an essay for grading; it is stored durably before this answers' })
  @ApiView('SubmittedEssay', { status: 202 })
  submit(@TenantCaller() auth: TenantAuth, @Body() dto: SubmitEssayDto): Promise<SubmittedEssay> {
    return this.essays.submit(auth, dto);
  }

  @Post('batch')
  @BodyLimit(8 * MiB)
  @HttpCode(202)
  @UseInterceptors(IdempotencyInterceptor)
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'A retry with the same key and body within 24 hours gets the first answer, not a second class set' })
  @ApiOperation({ summary: 'Submit a class set (up to 200 essays) in one go' })
  @ApiView('SubmittedBatch', { status: 202 })
  batch(@TenantCaller() auth: TenantAuth, @Body() dto: SubmitBatchDto): Promise<SubmittedBatch> {
    return this.essays.submitBatch(auth, dto);
  }

  @Post('erase')
  @Auth('admin')
  @HttpCode(200)
  @ApiOperation({ summary: "Erase every essay of one student (admin): as DELETE /v1/essays/:id does for each; those being graded are listed as busy" })
  @ApiView('ErasedStudent')
  eraseStudent(@TenantCaller() auth: TenantAuth, @Body() dto: EraseStudentDto): Promise<ErasedStudent> {
    return this.erasure.eraseStudent(auth, dto.studentRef);
  }

  @Get()
  @BoundedRead()
  @ApiOperation({ summary: 'Essays, newest first, with cursor pagination' })
  @ApiView('EssayPage')
  @ApiQuery({ name: 'assignmentId', required: false })
  @ApiQuery({ name: 'status', required: false, enum: ESSAY_STATUSES })
  @ApiQuery({ name: 'studentRef', required: false })
  @ApiQuery({ name: 'limit', required: false, type: Number, minimum: 1, maximum: 100, description: '1-100, default 20' })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the previous page' })
  list(
    @TenantCaller() auth: TenantAuth,
    @Query('assignmentId') assignmentId?: string,
    @Query('status') status?: string,
    @Query('studentRef') studentRef?: string,
    @Query('limit') limit?: string,
    @Query('cursor') cursor?: string,
  ): Promise<EssayPage> {
    return this.essays.list(auth, { assignmentId, status, studentRef, limit, cursor });
  }

  @Get(':id')
  @BoundedRead() // a view can be a few hundred kilobytes (text, grades, deep review, overrides): a flood of them is bounded too
  @ApiOperation({ summary: 'An essay with its status, grade, flags and cost' })
  @ApiView('EssayView')
  get(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<EssayView> {
    return this.essays.get(auth, id);
  }

  @Delete(':id')
  @ApiOperation({
    summary:
      "Erase the essay's personal data (text, title, student, grades, overrides, cached answers); its cost stays in the books. 409 while it is being graded",
  })
  @ApiView('ErasedEssay')
  erase(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<ErasedEssay> {
    return this.erasure.erase(auth, id);
  }

  @Post(':id/deep-review')
  @HttpCode(202)
  @ApiOperation({ summary: 'Order a deep review: awaiting_payment (webhook mode) or paid and queued at once (invoice mode); optionally needed by a deadline (dueBy, or "tomorrow_morning")' })
  @ApiView('OrderView', { status: 202 })
  async deepReview(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Body() dto: OrderDeepReviewDto = {}): Promise<OrderView> {
    return this.essays.orderDeepReview(auth, id, dto?.dueBy, dto?.price);
  }

  @Patch(':id/grade')
  @ApiOperation({ summary: "A teacher's override of the total, dimension scores or comment (the model's grade is kept)" })
  @ApiView('EssayView')
  override(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Body() dto: OverrideGradeDto): Promise<EssayView> {
    return this.essays.override(auth, id, dto);
  }

  @Get(':id/events')
  @AnswersWhileClosing()
  @ApiOperation({ summary: 'Server-Sent Events: each status change, then the finished grade (event: grade) and event: end' })
  stream(@TenantCaller() auth: TenantAuth, @Param('id') id: string, @Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.streams.stream(auth, id, req, reply);
  }
}
