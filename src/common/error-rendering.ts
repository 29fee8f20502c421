import { HttpException } from '@nestjs/common';
import { ApiError, codeForStatus } from './errors';

export interface RenderedError {
  status: number;
  code: string;
  body: { error: { code: string; message: string; type: string; param: string | null; requestId: string; details?: unknown } };
  headers?: Record<string, string>;
  /** True when the cause is ours (a 5xx we did not throw on purpose) and must be logged. */
  unexpected: boolean;
}

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/**
 * Fastify's own request errors, by code and by the message it gives them (those Nest re-wraps). The
 * router's (a bad URL, a path part too long) come through the adapter's `frameworkErrors`: their
 * own messages would echo the whole path back.
 */
const FASTIFY_CODES: Record<string, { code: string; message: string; fastifyMessage?: string }> = {
  FST_ERR_MAX_PARAM_LENGTH: {
    code: 'URI_TOO_LONG',
    message: 'A part of the path is longer than 100 characters (no id is that long)',
  },
  FST_ERR_BAD_URL: {
    code: 'BAD_REQUEST',
    message: 'The path is not a valid URL (a bad percent-encoding)',
  },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'PAYLOAD_TOO_LARGE',
    message: 'Request body is larger than the limit',
    fastifyMessage: 'Request body is too large',
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Send JSON with Content-Type: application/json',
    fastifyMessage: 'Unsupported Media Type',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'INVALID_JSON',
    message: 'Request body is empty but Content-Type is application/json',
    fastifyMessage: "Body cannot be empty when content-type is set to 'application/json'",
  },
  FST_ERR_CTP_INVALID_JSON_BODY: {
    code: 'INVALID_JSON',
    message: 'Request body is not valid JSON',
    fastifyMessage: "Body is not valid JSON but content-type is set to 'application/json'",
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'BAD_REQUEST',
    message: 'Content-Length does not match the body',
    fastifyMessage: 'Request body size did not match Content-Length',
  },
};

/**
 * Turns anything thrown while serving a request into the one error shape of the API. Nothing of an
 * unexpected error (message, stack, SQL) reaches the client: it gets a 500 and the request id.
 */
/**
 * OpenAI's error class for a status, so its clients and the tools built on them (which branch on
 * `error.type`) read Inkstone's errors as they read OpenAI's.
 */
export function openAiErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'insufficient_quota';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'api_error' : 'invalid_request_error';
}

/** The field at fault, as OpenAI's `param`: the first of a VALIDATION_FAILED answer's, else null. */
function paramOf(details: unknown): string | null {
  const first = Array.isArray(details) ? (details[0] as { field?: unknown } | undefined) : undefined;
  return typeof first?.field === 'string' && first.field !== 'body' ? first.field : null;
}

export function renderError(err: unknown, requestId: string): RenderedError {
  const make = (
    status: number,
    code: string,
    message: string,
    details?: unknown,
    headers?: Record<string, string>,
    unexpected = false,
  ): RenderedError => ({
    status,
    code,
    body: { error: { code, message, type: openAiErrorType(status), param: paramOf(details), requestId, ...(details !== undefined ? { details } : {}) } },
    headers,
    unexpected,
  });

  if (err instanceof ApiError) {
    return make(err.status, err.code, err.message, err.details, err.headers, err.status >= 500 && err.code === 'INTERNAL');
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = codeForStatus(status);
    const resp = err.getResponse();
    let message = err.message;
    if (typeof resp === 'object' && resp && 'message' in resp) {
      const m = (resp as { message: unknown }).message;
      message = Array.isArray(m) ? m.join('; ') : String(m);
    }
    if (status === 404 && /^Cannot (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)/.test(message)) {
      message = `No route for ${message.replace(/^Cannot /, '')}`;
    }
    if (status >= 500) return make(status, 'INTERNAL', 'Internal server error', undefined, undefined, true);
    // Nest re-wraps fastify's body-parser errors as plain HttpExceptions, keeping only the message.
    const fastify = Object.values(FASTIFY_CODES).find((k) => k.fastifyMessage === message);
    if (fastify) return make(status, fastify.code, fastify.message);
    return make(status, code, message);
  }
  const fe = err as FastifyLikeError;
  if (fe && typeof fe === 'object' && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const known = fe.code ? FASTIFY_CODES[fe.code] : undefined;
    if (known) return make(fe.statusCode, known.code, known.message);
    return make(fe.statusCode, codeForStatus(fe.statusCode), fe.message ?? 'Bad request');
  }
  if (err instanceof SyntaxError && /JSON/.test(err.message)) {
    return make(400, 'INVALID_JSON', 'Request body is not valid JSON');
  }
  if (isDatabaseTimeout(err)) {
    // Logged (an operator wants to know), but the client is told what happened and when to try again.
    return make(503, 'DATABASE_BUSY', 'The database did not answer in time; nothing was stored. Try again shortly', undefined, { 'retry-after': '5' }, true);
  }
  return make(500, 'INTERNAL', 'Internal server error', undefined, undefined, true);
}

/**
 * A statement PostgreSQL cancelled at the session's `statement_timeout` (SQLSTATE 57014, kept by
 * TypeORM's QueryFailedError), or no connection free in the pool within its connection timeout
 * (node-postgres' pool says so only in its message). The transaction it was in is rolled back.
 */
export function isDatabaseTimeout(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown };
  return e.code === '57014' || (typeof e.message === 'string' && e.message.startsWith('timeout exceeded when trying to connect'));
}

/** An error as a log line carries it (under `err`). */
export interface LoggedError {
  name?: string;
  message: string;
  code?: string | number;
  stack?: string;
}

/**
 * The parts of an error that are safe to log, as plain data: its name, message and code (no SQL
 * parameters, no request bodies). Pino writes an Error under any key but `err`, or a string under
 * `err` through the serializer, as `{}`; every logger call passes `err: loggableError(e)`, and the
 * `err` serializer (src/logging.ts) is this function too, so whatever reaches it keeps its message.
 * The code is the error's `code` (pg's SQLSTATE, Node's ECONNREFUSED, an ApiError's code), else a
 * provider error's stable `reason`. The stack only when asked (unexpected errors).
 */
export function loggableError(err: unknown, opts: { stack?: boolean } = {}): LoggedError {
  if (typeof err === 'string') return { message: err };
  if (err && typeof err === 'object') {
    const e = err as { name?: unknown; message?: unknown; code?: unknown; reason?: unknown; stack?: unknown };
    const code = isCode(e.code) ? e.code : isCode(e.reason) ? e.reason : undefined;
    const out: LoggedError = {
      ...(typeof e.name === 'string' ? { name: e.name } : {}),
      message: typeof e.message === 'string' ? e.message : err instanceof Error ? '' : safeJson(err),
      ...(code !== undefined ? { code } : {}),
    };
    // A stack asked for, or one already picked by an earlier call (the serializer sees both).
    if (typeof e.stack === 'string' && (opts.stack || !(err instanceof Error))) out.stack = e.stack;
    return out;
  }
  return { message: String(err) };
}

function isCode(v: unknown): v is string | number {
  return (typeof v === 'string' && v.length > 0 && v.length <= 100) || (typeof v === 'number' && Number.isFinite(v));
}

function safeJson(v: object): string {
  try {
    return JSON.stringify(v).slice(0, 300);
  } catch {
    return Object.prototype.toString.call(v);
  }
}
