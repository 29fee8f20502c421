import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeysController } from './api-keys.controller';
import { ApiKeysService } from './api-keys.service';
import { AuthGuard } from './auth.guard';
import { Authenticator } from './authenticator';
import { TenantsController } from './tenants.controller';
import { TenantsService } from './tenants.service';

@Module({
  controllers: [TenantsController, ApiKeysController],
  providers: [TenantsService, ApiKeysService, Authenticator, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [TenantsService, ApiKeysService, Authenticator],
})
export class TenancyModule {}
