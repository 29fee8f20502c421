import { Module } from '@nestjs/common';
import { HostResolver } from '../common/outbound-webhook';
import { SecretBox } from '../common/secret-box';
import { AppConfig, CONFIG } from '../config/app-config';
import { JobsModule } from '../jobs/jobs.module';
import { TenancyModule } from '../tenancy/tenancy.module';
import { AlertsRepository } from './alerts.repository';
import { AlertsService } from './alerts.service';
import { BooksRepository } from './books.repository';
import { BudgetPolicy } from './budget-policy';
import { BudgetController } from './budget.controller';
import { BudgetService } from './budget.service';
import { LedgerService } from './ledger.service';
import { OrdersController, PaymentsWebhookController } from './orders.controller';
import { OrdersRepository } from './orders.repository';
import { OrdersService } from './orders.service';
import { createSecretBox, TenantSecretsService } from './tenant-secrets.service';
import { WebhookDispatcher } from './webhook-dispatcher';

@Module({
  imports: [TenancyModule, JobsModule],
  controllers: [BudgetController, OrdersController, PaymentsWebhookController],
  providers: [
    BudgetService,
    BudgetPolicy,
    BooksRepository,
    LedgerService,
    AlertsService,
    AlertsRepository,
    WebhookDispatcher,
    OrdersService,
    OrdersRepository,
    TenantSecretsService,
    { provide: HostResolver, useFactory: (config: AppConfig) => new HostResolver(config.webhooks.allowPrivate), inject: [CONFIG] },
    { provide: SecretBox, useFactory: (config: AppConfig) => createSecretBox(config), inject: [CONFIG] },
  ],
  exports: [BudgetService, BudgetPolicy, LedgerService, AlertsService, WebhookDispatcher, OrdersService, OrdersRepository, BooksRepository, TenantSecretsService, HostResolver],
})
export class BillingModule {}
