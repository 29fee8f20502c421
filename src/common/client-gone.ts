import type { FastifyReply } from 'fastify';
import { ApiError } from './errors';

/**
 * A signal that aborts when the client closes its connection before the answer has gone out, so
 * work still waiting for it (a read queued for its tenant's slot: ReadSlotInterceptor) can give up its place. Nobody
 * reads the error it carries: the client is gone. Made after the client has gone, it is aborted already.
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const raw = reply.raw;
  const reason = () => new ApiError('BAD_REQUEST', 'The client closed the connection before the answer');
  if (raw.closed || raw.destroyed) return raw.writableFinished ? new AbortController().signal : AbortSignal.abort(reason());
  const gone = new AbortController();
  raw.once('close', () => {
    if (!raw.writableFinished) gone.abort(reason());
  });
  return gone.signal;
}

/**
 * {@link clientGoneSignal}, made only when first asked for: on a chat call only something that must
 * wait (for one of the tenant's provider slots) asks. An AbortSignal and a 'close' listener for every
 * call cost about 4% of a cache hit's CPU (bench/probe-miss.ts with PROBE_HITS=1 and BENCH_CPU_PROF).
 */
export function lazyClientGoneSignal(reply: FastifyReply): () => AbortSignal {
  let signal: AbortSignal | undefined;
  return () => (signal ??= clientGoneSignal(reply));
}
