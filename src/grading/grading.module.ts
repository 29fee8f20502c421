import { Module } from '@nestjs/common';
import { BillingModule } from '../billing/billing.module';
import { JobsModule } from '../jobs/jobs.module';
import { LlmModule } from '../llm/llm.module';
import { TenancyModule } from '../tenancy/tenancy.module';
import { AssignmentsController } from './assignments.controller';
import { AssignmentsService } from './assignments.service';
import { CalibrationsRepository } from './calibrations.repository';
import { ModelGrader } from './model-grader';
import { EssayErasure } from './essay-erasure.service';
import { EssayEvents } from './essay-events';
import { EssayRetention } from './essay-retention';
import { EssayStreamService } from './essay-stream.service';
import { EssaysController } from './essays.controller';
import { EssaysRepository } from './essays.repository';
import { EssaysService } from './essays.service';
import { GradingMetrics } from './grading-metrics';
import { GradingSettingsController } from './grading-settings.controller';
import { GradingService } from './grading.service';
import { GradingWorker } from './grading.worker';
import { NearDuplicateIndex } from './near-duplicate.service';
import { RubricsController } from './rubrics.controller';
import { RubricsService } from './rubrics.service';

@Module({
  imports: [LlmModule, BillingModule, TenancyModule, JobsModule],
  controllers: [RubricsController, AssignmentsController, EssaysController, GradingSettingsController],
  providers: [GradingMetrics, RubricsService, AssignmentsService, EssaysService, EssayErasure, EssayRetention, EssayStreamService, EssayEvents, GradingService, GradingWorker, EssaysRepository, NearDuplicateIndex, CalibrationsRepository, ModelGrader],
  exports: [EssaysService, GradingService, GradingWorker, RubricsService, AssignmentsService, CalibrationsRepository, EssaysRepository],
})
export class GradingModule {}
