import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { loggableError, renderError } from './error-rendering';

/** The one exception filter: every error leaves the API in the shape `{ error: {...} }`. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const http = host.switchToHttp();
    const req = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    sendError(reply, req, exception, this.logger);
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
