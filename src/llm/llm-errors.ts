import { ErrorSpec, FieldProblem, ModuleError } from '../common/errors';

/** The model gateway's error codes. */
export const LLM_ERRORS = {
  NO_PROVIDER_AVAILABLE: { status: 503, when: 'no model is configured for the request, or every candidate failed or is cooling down; `details.tried` lists the models tried' },
  CONTENT_REJECTED: { status: 422, when: "every provider's content filter refused the request" },
  CONTEXT_LENGTH_EXCEEDED: { status: 400, when: "the request's messages and `max_tokens` together are longer than any candidate model's context window (shorten it, or ask for fewer tokens)" },
  BAD_GATEWAY: { status: 502, when: 'a streamed answer broke off after it had started (it cannot fail over any more)' },
} as const satisfies Record<string, ErrorSpec>;

export type LlmErrorCode = keyof typeof LLM_ERRORS;

export class LlmError extends ModuleError<LlmErrorCode> {
  constructor(code: LlmErrorCode, message: string, details?: FieldProblem[] | Record<string, unknown>, headers?: Record<string, string>) {
    super(LLM_ERRORS, code, message, details, headers);
  }
}
