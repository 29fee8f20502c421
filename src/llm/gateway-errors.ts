import { BillingError } from '../billing/billing-errors';
import { ApiError } from '../common/errors';
import { LlmError } from './llm-errors';
import { GatewayError, StreamInterruptedError } from './gateway.service';

/** How the gateway's failures reach an API caller. */
export function gatewayToApiError(err: unknown): unknown {
  if (err instanceof GatewayError) {
    const details = err.tried.length ? { tried: err.tried } : undefined;
    switch (err.code) {
      case 'BUDGET_EXHAUSTED':
        return BillingError.budgetExhausted(err.message, details);
      case 'CONTENT_REJECTED':
        return new LlmError('CONTENT_REJECTED', err.message, details);
      case 'MODEL_NOT_FOUND':
        return new ApiError('NOT_FOUND', err.message);
      case 'INVALID_REQUEST':
        return new ApiError('BAD_REQUEST', err.message, details);
      case 'CONTEXT_LENGTH_EXCEEDED':
        return new LlmError('CONTEXT_LENGTH_EXCEEDED', err.message, details);
      case 'NO_PROVIDER_AVAILABLE':
        // Retry-After when the providers failed (their breakers say when to come back); none when none is configured.
        return new LlmError('NO_PROVIDER_AVAILABLE', err.message, details, err.retryAfterMs ? { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) } : undefined);
    }
  }
  if (err instanceof StreamInterruptedError) return new LlmError('BAD_GATEWAY', err.message);
  return err;
}
