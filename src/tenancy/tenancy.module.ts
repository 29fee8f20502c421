import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeysController } from './api-keys.controller';
import { ApiKeysService } from './api-keys.service';
import { AuthGuard } from './auth.guard';
import { TenantsController } from './tenants.controller';
import { TenantsService } from './tenants.service';

@Module({
  controllers: [TenantsController, ApiKeysController],
  providers: [TenantsService, ApiKeysService, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [TenantsService, ApiKeysService],
})
export class TenancyModule {}
