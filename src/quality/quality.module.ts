import { Module } from '@nestjs/common';
import { BillingModule } from '../billing/billing.module';
import { GradingModule } from '../grading/grading.module';
import { TenancyModule } from '../tenancy/tenancy.module';
import { ShadowAlerts } from './shadow-alerts';
import { CalibrationService } from './calibration.service';
import { QualityController } from './quality.controller';
import { QualityRepository } from './quality.repository';
import { QualityService } from './quality.service';

/**
 * Grading quality (SPEC §9): agreement with the teachers and calibration from them. It reads the
 * labels itself; calibrations and regraded essays are written through grading's repositories.
 */
@Module({
  imports: [GradingModule, BillingModule, TenancyModule],
  controllers: [QualityController],
  providers: [QualityService, QualityRepository, CalibrationService, ShadowAlerts],
})
export class QualityModule {}
