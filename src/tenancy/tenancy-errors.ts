import { ErrorSpec, ModuleError } from '../common/errors';

/** The tenancy module's error codes: fair-use limits. */
export const TENANCY_ERRORS = {
  RATE_LIMITED: {
    status: 429,
    when: 'a per-key or per-tenant limit is reached (GET /v1/limits); `Retry-After` says when to try again, `RateLimit-*` how much is left',
  },
} as const satisfies Record<string, ErrorSpec>;

export type TenancyErrorCode = keyof typeof TENANCY_ERRORS;

export class TenancyError extends ModuleError<TenancyErrorCode> {
  constructor(code: TenancyErrorCode, message: string, details: Record<string, unknown> | undefined, headers: Record<string, string>) {
    super(TENANCY_ERRORS, code, message, details, headers);
  }
}
