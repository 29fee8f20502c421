import { DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import { Clock } from './common/clock';
import { AppConfig, CONFIG } from './config/app-config';
import { AdvisorModule } from './advisor/advisor.module';
import { BillingModule } from './billing/billing.module';
import { DatabaseModule } from './db/database';
import { GradingModule } from './grading/grading.module';
import { HealthController } from './health/health.controller';
import { JobsModule } from './jobs/jobs.module';
import { LlmModule } from './llm/llm.module';
import { LLM_MODELS, LlmModels } from './llm/llm-models';
import { pinoHttpOptions, prettyDestination, wantsPretty } from './logging';
import { MetricsModule } from './metrics/metrics.module';
import { ConsoleModule } from './console/console.module';
import { QualityModule } from './quality/quality.module';
import { ReportsModule } from './reports/reports.module';
import { TenancyModule } from './tenancy/tenancy.module';
import { ENTITIES } from './tenancy/entities';

@Module({})
export class AppModule {
  /** `logDestination`: where log lines go instead of stdout (tests read them). */
  static forRoot(config: AppConfig, models: LlmModels, logDestination?: DestinationStream): DynamicModule {
    // JSON lines for collectors; pretty lines for a person at a terminal (LOG_FORMAT).
    const destination = logDestination ?? (wantsPretty(config.logFormat, process.stdout) ? prettyDestination(process.stdout) : undefined);
    return {
      module: AppModule,
      global: true,
      imports: [
        LoggerModule.forRoot({ pinoHttp: destination ? [pinoHttpOptions(config), destination] : pinoHttpOptions(config) }),
        DatabaseModule.forRoot(ENTITIES),
        MetricsModule,
        TenancyModule,
        JobsModule,
        BillingModule,
        LlmModule,
        GradingModule,
        ReportsModule,
        QualityModule,
        ConsoleModule,
        AdvisorModule,
      ],
      controllers: [HealthController],
      providers: [{ provide: CONFIG, useValue: config }, { provide: LLM_MODELS, useValue: models }, Clock],
      exports: [CONFIG, LLM_MODELS, Clock],
    };
  }
}
