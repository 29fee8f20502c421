import { ErrorSpec, FieldProblem, ModuleError } from '../common/errors';

/** The billing module's error codes: budgets and payments. */
export const BILLING_ERRORS = {
  BUDGET_EXHAUSTED: {
    status: 402,
    when: "the tenant's monthly budget cannot pay for the call (policy reject, a deep review, a chat call), or model calls are paused after a billing incident",
  },
  INVALID_SIGNATURE: { status: 401, when: "a payment webhook's signature is missing, wrong or more than 5 minutes old" },
  NOT_ON_SALE: { status: 409, when: 'a deep review is ordered while the school sells none (no price and payment mode set: GET /v1/billing/offer says)' },
  PRICE_CHANGED: {
    status: 409,
    when: "a deep review is ordered with the `price` the buyer was shown, and the school's price is another now (details.price); nothing is ordered",
  },
} as const satisfies Record<string, ErrorSpec>;

export type BillingErrorCode = keyof typeof BILLING_ERRORS;

export class BillingError extends ModuleError<BillingErrorCode> {
  /** INVALID_SIGNATURE: whether the school named exists with a payment secret (never in the answer: it would tell). */
  secretFound?: boolean;

  constructor(code: BillingErrorCode, message: string, details?: FieldProblem[] | Record<string, unknown>) {
    super(BILLING_ERRORS, code, message, details);
  }

  static budgetExhausted(message: string, details?: Record<string, unknown>): BillingError {
    return new BillingError('BUDGET_EXHAUSTED', message, details);
  }

  static invalidSignature(why: string, secretFound = true): BillingError {
    const e = new BillingError('INVALID_SIGNATURE', `Webhook signature refused: ${why}`);
    e.secretFound = secretFound;
    return e;
  }
}
