import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { ApiView } from '../docs/api-view';
import { ApiKeysService, ApiKeyView, CreatedApiKey } from './api-keys.service';
import { CreateApiKeyDto } from './dto/create-api-key.dto';

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
    return this.keys.create(auth, dto);
  }

  @Get()
  @ApiOperation({ summary: "List the tenant's API keys (never the keys themselves)" })
  @ApiView('ApiKeyList')
  async list(@TenantCaller() auth: TenantAuth): Promise<ApiKeyList> {
    const { keys, moreRevoked } = await this.keys.list(auth);
    return { data: keys, moreRevoked };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an API key' })
  revoke(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<void> {
    return this.keys.revoke(auth, id);
  }
}
