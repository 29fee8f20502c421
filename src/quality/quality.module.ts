import { Module } from '@nestjs/common';
import { GradingModule } from '../grading/grading.module';
import { QualityController } from './quality.controller';
import { QualityRepository } from './quality.repository';
import { QualityService } from './quality.service';

/** Grading quality (SPEC §9): agreement with the teachers. Reads essays; writes nothing yet. */
@Module({
  imports: [GradingModule],
  controllers: [QualityController],
  providers: [QualityService, QualityRepository],
})
export class QualityModule {}
