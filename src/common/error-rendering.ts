import { HttpException } from '@nestjs/common';
import { ApiError, codeForStatus, ErrorCode } from './errors';

export interface RenderedError {
  status: number;
  code: ErrorCode;
  body: { error: { code: ErrorCode; message: string; requestId: string; details?: unknown } };
  headers?: Record<string, string>;
  /** True when the cause is ours (a 5xx we did not throw on purpose) and must be logged. */
  unexpected: boolean;
}

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/** Fastify's own request errors, by code and by the message it gives them. */
const FASTIFY_CODES: Record<string, { code: ErrorCode; message: string; fastifyMessage: string }> = {
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
export function renderError(err: unknown, requestId: string): RenderedError {
  const make = (
    status: number,
    code: ErrorCode,
    message: string,
    details?: unknown,
    headers?: Record<string, string>,
    unexpected = false,
  ): RenderedError => ({
    status,
    code,
    body: { error: { code, message, requestId, ...(details !== undefined ? { details } : {}) } },
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
  return make(500, 'INTERNAL', 'Internal server error', undefined, undefined, true);
}

/** The parts of an error that are safe to log: no SQL parameters, no request bodies. */
export function loggableError(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { type: err.name, message: err.message, code, stack: err.stack };
  }
  return { type: typeof err };
}
