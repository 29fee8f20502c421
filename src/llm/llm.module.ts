import { Module } from '@nestjs/common';
import { BillingModule } from '../billing/billing.module';
import { TenancyModule } from '../tenancy/tenancy.module';
import { ChatController } from './chat.controller';
import { ChatService } from './chat.service';
import { GatewayMetrics } from './gateway-metrics';
import { GatewayService } from './gateway.service';
import { ModelsService } from './models.service';
import { ProviderUploadsRepository } from './provider-uploads.repository';
import { ResponseCache } from './response-cache';

@Module({
  imports: [BillingModule, TenancyModule],
  controllers: [ChatController],
  providers: [GatewayService, GatewayMetrics, ResponseCache, ChatService, ModelsService, ProviderUploadsRepository],
  exports: [GatewayService, ResponseCache],
})
export class LlmModule {}
