import { Module } from '@nestjs/common';
import { AlertsService } from './alerts.service';
import { BudgetController } from './budget.controller';
import { BudgetService } from './budget.service';
import { LedgerService } from './ledger.service';
import { OrdersController } from './orders.controller';
import { OrdersService } from './orders.service';
import { ReportsService } from './reports.service';
import { WebhookDispatcher } from './webhook-dispatcher';

@Module({
  controllers: [BudgetController, OrdersController],
  providers: [BudgetService, LedgerService, AlertsService, WebhookDispatcher, OrdersService, ReportsService],
  exports: [BudgetService, LedgerService, AlertsService, WebhookDispatcher, OrdersService],
})
export class BillingModule {}
