import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Auth } from '../common/auth';
import { ApiView } from '../docs/api-view';
import { CreateTenantDto } from './dto/create-tenant.dto';
import { CreatedTenant, TenantsService } from './tenants.service';

@ApiTags('operator')
@ApiBearerAuth()
@Controller('v1/tenants')
export class TenantsController {
  constructor(private readonly tenants: TenantsService) {}

  @Post()
  @HttpCode(201)
  @Auth('operator')
  @ApiOperation({ summary: 'Create a tenant and its first admin key (operator token)' })
  @ApiView('CreatedTenant', { status: 201 })
  create(@Body() dto: CreateTenantDto): Promise<CreatedTenant> {
    return this.tenants.create(dto);
  }
}
