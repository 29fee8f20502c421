import { Body, Controller, Get, HttpCode, Param, Post, Put, Query, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { IdempotencyInterceptor } from '../tenancy/idempotency.interceptor';
import { CreateRubricDto, RubricBodyDto } from './dto/rubric.dto';
import { RubricsService, RubricSummary, RubricView } from './rubrics.service';
import { BoundedRead } from '../tenancy/read-slot.interceptor';

/** GET /v1/rubrics */
export interface RubricList {
  data: RubricSummary[];
}

@ApiTags('grading')
@ApiBearerAuth()
@Controller('v1/rubrics')
export class RubricsController {
  constructor(private readonly rubrics: RubricsService) {}

  @Get()
  @Auth('admin', 'teacher')
  @BoundedRead()
  @ApiOperation({ summary: "Built-in rubrics and the tenant's own (latest versions), without their dimensions' descriptions (GET /v1/rubrics/:key has them)" })
  @ApiView('RubricList')
  async list(@TenantCaller() auth: TenantAuth): Promise<RubricList> {
    return { data: await this.rubrics.list(auth) };
  }

  @Get(':key')
  @Auth('admin', 'teacher')
  @ApiQuery({ name: 'version', required: false })
  @ApiOperation({ summary: 'One rubric (latest version unless one is named)' })
  @ApiView('RubricView')
  get(@TenantCaller() auth: TenantAuth, @Param('key') key: string, @Query('version') version?: string): Promise<RubricView> {
    if (version !== undefined && !/^\d{1,6}$/.test(version)) throw ApiError.validation([{ field: 'version', message: 'version must be a positive integer' }]);
    return this.rubrics.get(auth, key, version === undefined ? undefined : Number(version));
  }

  @Post()
  @HttpCode(201)
  @Auth('admin')
  @UseInterceptors(IdempotencyInterceptor)
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'A retry with the same key and body within 24 hours gets the first answer, not a 409 for the rubric it created' })
  @ApiOperation({ summary: "Create the tenant's own rubric (version 1)" })
  @ApiView('RubricView', { status: 201 })
  create(@TenantCaller() auth: TenantAuth, @Body() dto: CreateRubricDto): Promise<RubricView> {
    return this.rubrics.create(auth, dto);
  }

  @Put(':key')
  @Auth('admin')
  @ApiOperation({ summary: 'Edit a rubric: writes its next version; existing grades keep theirs' })
  @ApiView('RubricView')
  update(@TenantCaller() auth: TenantAuth, @Param('key') key: string, @Body() dto: RubricBodyDto): Promise<RubricView> {
    return this.rubrics.update(auth, key, dto);
  }
}
