import { ErrorSpec, ModuleError } from '../common/errors';

/** The tenancy module's error codes: fair-use limits, idempotency keys, the console session's CSRF token. */
export const TENANCY_ERRORS = {
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    when: 'the `Idempotency-Key` was used in the last 24 hours for a different request (another route, another body or another API key)',
  },
  IDEMPOTENCY_KEY_IN_USE: {
    status: 409,
    when: 'a request with this `Idempotency-Key` is still being answered; send it again after `Retry-After` to get its answer',
  },
  CSRF_TOKEN_INVALID: {
    status: 403,
    when: "a change made with a console session's cookie without that session's CSRF token in `X-CSRF-Token` (a page open since before a sign-in in another tab holds the old one: GET /v1/console/session gives the current one)",
  },
  RATE_LIMITED: {
    status: 429,
    when: 'a per-key or per-tenant limit is reached (GET /v1/limits), or a client address failed authentication too often (AUTH_FAILURE_BURST); `Retry-After` says when to try again, `RateLimit-*` how much is left',
  },
} as const satisfies Record<string, ErrorSpec>;

export type TenancyErrorCode = keyof typeof TENANCY_ERRORS;

export class TenancyError extends ModuleError<TenancyErrorCode> {
  constructor(code: TenancyErrorCode, message: string, details?: Record<string, unknown>, headers?: Record<string, string>) {
    super(TENANCY_ERRORS, code, message, details, headers);
  }
}
