import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeysController } from './api-keys.controller';
import { ApiKeysService } from './api-keys.service';
import { AuthGuard } from './auth.guard';
import { Authenticator } from './authenticator';
import { LimitsController } from './limits.controller';
import { LimitsService } from './limits.service';
import { TenantsController } from './tenants.controller';
import { TenantsService } from './tenants.service';

@Module({
  controllers: [TenantsController, ApiKeysController, LimitsController],
  providers: [TenantsService, ApiKeysService, Authenticator, LimitsService, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [TenantsService, ApiKeysService, Authenticator, LimitsService],
})
export class TenancyModule {}
