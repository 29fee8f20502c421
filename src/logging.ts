import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Options } from 'pino-http';
import type { AppConfig } from './config/app-config';
import { loggableError } from './common/error-rendering';

/**
 * Structured JSON logs. Requests are logged by id, method, route and status only: no headers (API
 * keys), no bodies (students' essays), no query strings beyond the path's own.
 */
export function pinoHttpOptions(config: AppConfig): Options {
  return {
    level: config.logLevel,
    // The id fastify assigned (see requestId in app.factory.ts), so every log line and the
    // response's x-request-id agree.
    genReqId: (req: IncomingMessage) => (req as IncomingMessage & { id?: string }).id ?? 'unknown',
    customProps: () => ({ service: 'inkstone' }),
    serializers: {
      req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      // Anything under `err` (an Error, what loggableError made, or a bare message) keeps its
      // name, message and code; a serializer that read only Error fields logged strings as {}.
      err: (err: unknown) => loggableError(err),
    },
    customLogLevel: (_req: IncomingMessage, res: ServerResponse, err?: Error) =>
      err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
    quietReqLogger: true,
  };
}
