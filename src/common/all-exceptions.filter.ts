import { ArgumentsHost, Catch, ExceptionFilter, Logger, NotFoundException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors';
import { loggableError, renderError } from './error-rendering';
import { RouteMethods } from './route-methods';

/** The one exception filter: every error leaves the API in the shape `{ error: {...} }`. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  /** `routes`: the app's routes and their methods, for 405 instead of 404 on a path that exists. */
  constructor(private readonly routes?: RouteMethods) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const http = host.switchToHttp();
    const req = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    sendError(reply, req, this.methodNotAllowed(req, exception) ?? exception, this.logger);
  }

  /** No route matched (Nest's not-found handler), but the path has routes with other methods. */
  private methodNotAllowed(req: FastifyRequest, exception: unknown): ApiError | null {
    if (!this.routes || !(exception instanceof NotFoundException) || req.routeOptions?.url) return null;
    const allowed = this.routes.allowed(req.url);
    // (A path whose routes take this method is one they did not find: a missing file under /docs/*.)
    if (!allowed.length || allowed.includes(req.method)) return null;
    return new ApiError('METHOD_NOT_ALLOWED', `${req.method} is not a method of ${req.url.split('?')[0]}; it takes ${allowed.join(', ')}`, undefined, { allow: allowed.join(', ') });
  }
}

export function sendError(reply: FastifyReply, req: FastifyRequest, exception: unknown, logger: Pick<Logger, 'error'>): void {
  const rendered = renderError(exception, String(req.id));
  if (rendered.unexpected) {
    logger.error({ msg: 'unhandled error', requestId: req.id, route: req.routeOptions?.url, err: loggableError(exception, { stack: true }) });
  }
  if (reply.sent || reply.raw.headersSent) {
    // A streamed answer already started; the stream's own error event told the client.
    reply.raw.end();
    return;
  }
  if (rendered.headers) reply.headers(rendered.headers);
  void reply.code(rendered.status).header('content-type', 'application/json; charset=utf-8').send(rendered.body);
}
