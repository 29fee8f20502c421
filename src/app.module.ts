import { DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig, CONFIG } from './config/app-config';
import { DatabaseModule } from './db/database';
import { HealthController } from './health/health.controller';
import { pinoHttpOptions } from './logging';
import { MetricsModule } from './metrics/metrics.module';
import { TenancyModule } from './tenancy/tenancy.module';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      global: true,
      imports: [
        LoggerModule.forRoot({ pinoHttp: pinoHttpOptions(config) }),
        DatabaseModule.forRoot(),
        MetricsModule,
        TenancyModule,
      ],
      controllers: [HealthController],
      providers: [{ provide: CONFIG, useValue: config }],
      exports: [CONFIG],
    };
  }
}
