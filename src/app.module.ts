import { CacheSweep } from './common/cache-sweep';
import { DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
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
import { MetricsModule } from './metrics/metrics.module';
import { ConsoleModule } from './console/console.module';
import { QualityModule } from './quality/quality.module';
import { ReportsModule } from './reports/reports.module';
import { TenancyModule } from './tenancy/tenancy.module';
import { ENTITIES } from './tenancy/entities';

@Module({})
export class AppModule {
  /** `logger`: the root logger (rootLogger in logging.ts), which the request log hook writes through too. */
  static forRoot(config: AppConfig, models: LlmModels, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      global: true,
      imports: [
        // Nest's lines through the root logger; requests are logged by a Fastify hook (requestLogging
        // in logging.ts), not by this module's middleware (on no route), which binds each request's
        // logger through AsyncLocalStorage.
        LoggerModule.forRoot({ pinoHttp: { logger }, forRoutes: [] }),
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
      providers: [{ provide: CONFIG, useValue: config }, { provide: LLM_MODELS, useValue: models }, Clock, CacheSweep],
      exports: [CONFIG, LLM_MODELS, Clock],
    };
  }
}
