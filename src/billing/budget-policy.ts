import { Injectable } from '@nestjs/common';
import type { Nanos } from '../common/money';
import { BillingError } from './billing-errors';
import { BudgetService } from './budget.service';

export type GradingTier = 'standard' | 'deep';

/**
 * What happens when a tenant's monthly budget cannot pay for a grading: decided here, and only
 * here (SPEC: budget policy `offline` or `reject`).
 *
 * - At submission (and when a deep review is ordered): under `reject`, and always for the premium
 *   tier, what is left of the budget must cover the worst case of every call asked for, or the
 *   request is refused at once with 402 BUDGET_EXHAUSTED — before anything is stored or paid.
 * - When the gateway refuses a call later (the budget ran out while the essay waited): a standard
 *   grading under `offline` is graded by the offline grader; anything else fails with
 *   BUDGET_EXHAUSTED (a deep review's order is refunded).
 */
@Injectable()
export class BudgetPolicy {
  constructor(private readonly budget: BudgetService) {}

  /**
   * Refuses now (402) what the budget could not pay for. `worstCase` is asked only when the policy
   * needs it; null (no model could take the request) is left to the grading to report.
   */
  async admit(tenantId: string, tier: GradingTier, worstCase: () => Nanos | null, what: string): Promise<void> {
    if (tier === 'standard' && (await this.budget.settings(tenantId)).whenExhausted !== 'reject') return;
    const total = worstCase();
    if (total === null) return;
    if ((await this.budget.remaining(tenantId)) < total) throw BillingError.budgetExhausted(`The tenant's monthly model budget cannot cover ${what}`);
  }

  /** The gateway refused a grading's call for the budget: grade it offline, or fail it. */
  async whenRefused(tenantId: string, tier: GradingTier): Promise<'offline' | 'fail'> {
    if (tier !== 'standard') return 'fail';
    return (await this.budget.settings(tenantId)).whenExhausted === 'offline' ? 'offline' : 'fail';
  }
}
