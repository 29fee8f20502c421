import { Body, Controller, Delete, Get, HttpCode, Logger, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { IsString, Length } from 'class-validator';
import { HasText } from '../common/validation';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { ApiKeysService, ApiKeyView, CreatedApiKey } from './api-keys.service';
import { CreateApiKeyDto } from './dto/create-api-key.dto';
import { TenantsRepository } from './tenants.repository';

/** GET /v1/api-keys */
export interface ApiKeyList {
  /** every active key, oldest first, then the latest 100 revoked ones, newest revocation first */
  data: ApiKeyView[];
  /** older revoked keys are left out */
  moreRevoked: boolean;
}

@ApiTags('keys')
@ApiBearerAuth()
@Controller('v1/api-keys')
@Auth('admin')
export class ApiKeysController {
  constructor(private readonly keys: ApiKeysService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Create an API key; the key is shown only in this answer' })
  @ApiView('CreatedApiKey', { status: 201 })
  create(@TenantCaller() auth: TenantAuth, @Body() dto: CreateApiKeyDto): Promise<CreatedApiKey> {
    return this.keys.create(auth.tenantId, dto, auth.keyId);
  }

  @Get()
  @ApiOperation({ summary: "List the tenant's API keys (never the keys themselves)" })
  @ApiView('ApiKeyList')
  async list(@TenantCaller() auth: TenantAuth): Promise<ApiKeyList> {
    const { keys, moreRevoked } = await this.keys.list(auth.tenantId);
    return { data: keys, moreRevoked };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an API key' })
  revoke(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<void> {
    return this.keys.revoke(auth.tenantId, id, auth.keyId);
  }
}

/** POST /v1/tenants/:id/api-keys/take-back */
export class TakeBackDto {
  @ApiProperty({ example: 'Principal (recovered)' })
  @IsString()
  @Length(1, 200)
  @HasText()
  name: string;
}

/** The new admin key, and how many keys were revoked with the take-back. */
export interface TakenBack extends CreatedApiKey {
  revoked: number;
}

/** (Path ids are lower-cased by the global pipe before this one: caches and the bus use the stored id.) */
const tenantId = new ParseUUIDPipe({ exceptionFactory: () => ApiError.notFound('Tenant') });

/**
 * The operator's hand on a school's keys: a school whose only admin key was lost, or taken over (an
 * attacker's admin key made and the school's revoked), is given a new admin key, and the other
 * revoked, by the operator — there was no way back but SQL. A takeover is undone in one step (take-back):
 * made one key at a time, an intruder still holding an admin key revoked the new one in between.
 * Every use is logged, with the operator named.
 */
@ApiTags('operator')
@ApiBearerAuth()
@Controller('v1/tenants/:id/api-keys')
@Auth('operator')
export class OperatorApiKeysController {
  private readonly logger = new Logger(OperatorApiKeysController.name);

  constructor(
    private readonly keys: ApiKeysService,
    private readonly tenants: TenantsRepository,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: "Create an API key for a tenant (operator token): a school's way back when its admin key is lost; the key is shown only in this answer" })
  @ApiView('CreatedApiKey', { status: 201 })
  async create(@Param('id', tenantId) id: string, @Body() dto: CreateApiKeyDto): Promise<CreatedApiKey> {
    const created = await this.keys.create(id, dto);
    this.logger.log({ msg: 'api key created by the operator', tenantId: id, keyId: created.id, role: created.role });
    return created;
  }

  @Post('take-back')
  @HttpCode(201)
  @ApiOperation({
    summary:
      "Take a school back (operator token): every active key of the tenant revoked (teachers' too) and one new admin key issued, in one step, so an intruder holding an admin key cannot revoke the new one in between; the key is shown only in this answer",
  })
  @ApiView('TakenBack', { status: 201 })
  takeBack(@Param('id', tenantId) id: string, @Body() dto: TakeBackDto): Promise<TakenBack> {
    return this.keys.takeBack(id, dto.name);
  }

  @Get()
  @ApiOperation({ summary: "List a tenant's API keys (operator token; never the keys themselves)" })
  @ApiView('ApiKeyList')
  async list(@Param('id', tenantId) id: string): Promise<ApiKeyList> {
    await this.tenants.identity(id); // 404 for an unknown tenant
    const { keys, moreRevoked } = await this.keys.list(id);
    this.logger.log({ msg: "a tenant's api keys listed by the operator", tenantId: id });
    return { data: keys, moreRevoked };
  }

  @Delete(':keyId')
  @HttpCode(204)
  @ApiOperation({ summary: "Revoke a tenant's API key (operator token); its last admin key cannot be (make another first)" })
  async revoke(@Param('id', tenantId) id: string, @Param('keyId') keyId: string): Promise<void> {
    await this.tenants.identity(id);
    await this.keys.revoke(id, keyId);
    this.logger.log({ msg: 'api key revoked by the operator', tenantId: id, keyId });
  }
}
