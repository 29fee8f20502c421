import { Module } from '@nestjs/common';
import { HostResolver } from '../common/outbound-webhook';
import { SecretBox } from '../common/secret-box';
import { AppConfig, CONFIG } from '../config/app-config';
import { AlertsService } from './alerts.service';
import { BudgetController } from './budget.controller';
import { BudgetService } from './budget.service';
import { LedgerService } from './ledger.service';
import { OrdersController } from './orders.controller';
import { OrdersService } from './orders.service';
import { ReportsService } from './reports.service';
import { createSecretBox, TenantSecretsService } from './tenant-secrets.service';
import { WebhookDispatcher } from './webhook-dispatcher';

@Module({
  controllers: [BudgetController, OrdersController],
  providers: [
    BudgetService,
    LedgerService,
    AlertsService,
    WebhookDispatcher,
    OrdersService,
    ReportsService,
    TenantSecretsService,
    HostResolver,
    { provide: SecretBox, useFactory: (config: AppConfig) => createSecretBox(config), inject: [CONFIG] },
  ],
  exports: [BudgetService, LedgerService, AlertsService, WebhookDispatcher, OrdersService, TenantSecretsService, HostResolver],
})
export class BillingModule {}
