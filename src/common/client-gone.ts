import type { FastifyReply } from 'fastify';
import { ApiError } from './errors';

/**
 * A signal that aborts when the client closes its connection before the answer has gone out, so
 * work still waiting for it (a read queued for its tenant's slot: ReadSlotInterceptor) can give up its place. Nobody
 * reads the error it carries: the client is gone.
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  const raw = reply.raw;
  raw.once('close', () => {
    if (!raw.writableFinished) gone.abort(new ApiError('BAD_REQUEST', 'The client closed the connection before the answer'));
  });
  return gone.signal;
}
