import { Module } from '@nestjs/common';
import { TenancyModule } from '../tenancy/tenancy.module';
import { AdvisorController } from './advisor.controller';
import { AdvisorService } from './advisor.service';

@Module({ imports: [TenancyModule], controllers: [AdvisorController], providers: [AdvisorService] })
export class AdvisorModule {}
