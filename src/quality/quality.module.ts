import { Module } from '@nestjs/common';
import { GradingModule } from '../grading/grading.module';
import { CalibrationService } from './calibration.service';
import { QualityController } from './quality.controller';
import { QualityRepository } from './quality.repository';
import { QualityService } from './quality.service';

/**
 * Grading quality (SPEC §9): agreement with the teachers and calibration from them. It reads the
 * labels itself; calibrations and regraded essays are written through grading's repositories.
 */
@Module({
  imports: [GradingModule],
  controllers: [QualityController],
  providers: [QualityService, QualityRepository, CalibrationService],
})
export class QualityModule {}
