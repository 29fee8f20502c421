import { Module } from '@nestjs/common';
import { BillingModule } from '../billing/billing.module';
import { TenancyModule } from '../tenancy/tenancy.module';
import { AdvisorController } from './advisor.controller';
import { AdvisorService } from './advisor.service';

@Module({ imports: [TenancyModule, BillingModule], controllers: [AdvisorController], providers: [AdvisorService] })
export class AdvisorModule {}
