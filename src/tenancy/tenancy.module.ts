import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JobsModule } from '../jobs/jobs.module';
import { ApiKeysController, OperatorApiKeysController } from './api-keys.controller';
import { ApiKeysService } from './api-keys.service';
import { AuthGuard } from './auth.guard';
import { Authenticator } from './authenticator';
import { AuthFailures } from './auth-failures';
import { ConsoleSessions } from './console-sessions';
import { LimitsController } from './limits.controller';
import { LimitsService } from './limits.service';
import { TenantsController } from './tenants.controller';
import { TenantsRepository } from './tenants.repository';
import { TenantsService } from './tenants.service';
import { IdempotencyInterceptor } from './idempotency.interceptor';
import { IdempotencyRepository } from './idempotency.repository';
import { ReadSlotInterceptor } from './read-slot.interceptor';

@Module({
  imports: [JobsModule],
  controllers: [TenantsController, ApiKeysController, OperatorApiKeysController, LimitsController],
  providers: [TenantsService, TenantsRepository, ApiKeysService, Authenticator, ConsoleSessions, AuthFailures, LimitsService, IdempotencyRepository, IdempotencyInterceptor, ReadSlotInterceptor, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [TenantsService, TenantsRepository, ApiKeysService, Authenticator, ConsoleSessions, AuthFailures, LimitsService, IdempotencyRepository, IdempotencyInterceptor, ReadSlotInterceptor],
})
export class TenancyModule {}
