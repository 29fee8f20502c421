import { HttpStatus } from '@nestjs/common';

/** An error code's HTTP status, and when the API answers with it (the API guide prints this). */
export interface ErrorSpec {
  status: number;
  when: string;
}

/**
 * Codes of the HTTP layer, which every module may answer with. A module's own codes are declared
 * next to its code (`*-errors.ts`: tenancy, billing, llm) and thrown as that module's error class.
 */
export const HTTP_ERRORS = {
  VALIDATION_FAILED: { status: HttpStatus.BAD_REQUEST, when: 'a field is missing or invalid (or a query parameter given twice); `details` lists each field and what is wrong with it, the first 50 (the message counts the rest)' },
  INVALID_JSON: { status: HttpStatus.BAD_REQUEST, when: 'the body is not valid JSON (or is empty with a JSON Content-Type)' },
  BAD_REQUEST: { status: HttpStatus.BAD_REQUEST, when: 'the request cannot be served as sent (a chat request no model can take, say); a bad field, query value or cursor is VALIDATION_FAILED' },
  UNAUTHENTICATED: { status: HttpStatus.UNAUTHORIZED, when: 'no API key, or one that is unknown, revoked or expired' },
  PAYMENT_REQUIRED: { status: HttpStatus.PAYMENT_REQUIRED, when: 'a 402 raised below the application' },
  FORBIDDEN: { status: HttpStatus.FORBIDDEN, when: "the key's role may not do this (a teacher key on an admin route, say)" },
  NOT_FOUND: { status: HttpStatus.NOT_FOUND, when: "no such route, or no such resource in this tenant (another tenant's id is not found, never forbidden)" },
  METHOD_NOT_ALLOWED: { status: HttpStatus.METHOD_NOT_ALLOWED, when: 'the route exists, not with this method' },
  CONFLICT: { status: HttpStatus.CONFLICT, when: 'the resource is not in a state that allows this (an essay not graded yet, a delivered order)' },
  PAYLOAD_TOO_LARGE: { status: HttpStatus.PAYLOAD_TOO_LARGE, when: "the body is larger than the route's limit, or an essay or batch is too long" },
  URI_TOO_LONG: { status: HttpStatus.URI_TOO_LONG, when: 'a part of the path (an id) is longer than 100 characters' },
  UNSUPPORTED_MEDIA_TYPE: { status: HttpStatus.UNSUPPORTED_MEDIA_TYPE, when: 'the body is not JSON' },
  UNPROCESSABLE: { status: HttpStatus.UNPROCESSABLE_ENTITY, when: 'a 422 raised below the application' },
  INTERNAL: { status: HttpStatus.INTERNAL_SERVER_ERROR, when: 'something failed on our side; the answer carries the request id to report' },
  SERVICE_UNAVAILABLE: { status: HttpStatus.SERVICE_UNAVAILABLE, when: 'this server is stopping (send the request again after `Retry-After`: another instance takes it), or a 503 raised below the application' },
  DATABASE_BUSY: {
    status: HttpStatus.SERVICE_UNAVAILABLE,
    when: 'a database statement ran or waited longer than `DATABASE_STATEMENT_TIMEOUT_MS`, or no database connection came free in time; nothing of the request was stored: send it again after `Retry-After`',
  },
} as const satisfies Record<string, ErrorSpec>;

export type HttpErrorCode = keyof typeof HTTP_ERRORS;

/** A validation error lists at most this many problems (the rest are counted). */
export const PROBLEMS_LISTED = 50;
/** A field's name in a validation error is cut to this many characters (a key is the client's own text). */
const FIELD_NAME_MAX = 200;

export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * The exception type the application throws on purpose: an HTTP-layer code here, a module's own
 * code through its ModuleError class. The filter turns it into
 * `{ error: { code, message, type, param, requestId, details? } }` with the code's status.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(
    code: HttpErrorCode,
    message: string,
    readonly details?: FieldProblem[] | Record<string, unknown>,
    readonly headers?: Record<string, string>,
    /** a module's code and status (ModuleError) instead of an HTTP-layer code */
    own?: { code: string; status: number },
  ) {
    super(message);
    this.name = 'ApiError';
    this.code = own?.code ?? code;
    this.status = own?.status ?? HTTP_ERRORS[code].status;
  }

  static notFound(what: string): ApiError {
    return new ApiError('NOT_FOUND', `${what} not found`);
  }

  /**
   * A 400 naming the bad fields: at most PROBLEMS_LISTED of them in `details` (and the message), the
   * rest counted ("… and N more"), each field's name cut to FIELD_NAME_MAX characters. A body of
   * 45,000 unknown keys answered 45,000 problems, twice each (message and details): 33 MB from a
   * 7 MB body, and three such requests at once ran the instance out of memory.
   */
  static validation(problems: FieldProblem[], total = problems.length): ApiError {
    const listed = problems.slice(0, PROBLEMS_LISTED).map((p) => (p.field.length > FIELD_NAME_MAX ? { ...p, field: `${p.field.slice(0, FIELD_NAME_MAX)}…` } : p));
    const more = total - listed.length;
    const summary = listed.map((p) => `${p.field}: ${p.message}`).join('; ') + (more > 0 ? `; and ${more} more` : '');
    return new ApiError('VALIDATION_FAILED', `Invalid request: ${summary}`, listed);
  }
}

/**
 * An error of one module, with a code from that module's table (declared in its `*-errors.ts`, next
 * to the code that throws it).
 */
export abstract class ModuleError<C extends string> extends ApiError {
  protected constructor(table: Record<C, ErrorSpec>, code: C, message: string, details?: FieldProblem[] | Record<string, unknown>, headers?: Record<string, string>) {
    super('INTERNAL', message, details, headers, { code, status: table[code].status });
  }
}

/** The code of an error status raised below the application (Fastify, Nest). */
export function codeForStatus(status: number): string {
  switch (status) {
    case 400:
      return 'BAD_REQUEST';
    case 401:
      return 'UNAUTHENTICATED';
    case 402:
      return 'PAYMENT_REQUIRED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 409:
      return 'CONFLICT';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 414:
      return 'URI_TOO_LONG';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 422:
      return 'UNPROCESSABLE';
    case 429:
      return 'RATE_LIMITED'; // the same code as the tenancy module's limits answer with
    case 503:
      return 'SERVICE_UNAVAILABLE';
    default:
      return status >= 500 ? 'INTERNAL' : 'BAD_REQUEST';
  }
}
