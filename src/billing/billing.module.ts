import { Module } from '@nestjs/common';
import { BudgetController } from './budget.controller';
import { BudgetService } from './budget.service';
import { LedgerService } from './ledger.service';

@Module({
  controllers: [BudgetController],
  providers: [BudgetService, LedgerService],
  exports: [BudgetService, LedgerService],
})
export class BillingModule {}
