import { createHash } from 'node:crypto';
import { CallHandler, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { from, Observable, of } from 'rxjs';
import { catchError, finalize, mergeMap } from 'rxjs/operators';
import type { AuthContext } from '../common/auth';
import { loggableError } from '../common/error-rendering';
import { ApiError } from '../common/errors';
import { IdempotencyRepository } from './idempotency.repository';
import { TenancyError } from './tenancy-errors';

/** A key: 1–200 visible ASCII characters (a UUID, say). */
const KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * `Idempotency-Key` (a request header) on a route that creates something: the first request with a
 * key is served and its answer kept for 24 hours; a retry with the same key and the same request
 * (route, path and body) gets that answer again, with `Idempotent-Replayed: true`, and nothing is
 * created twice. The same key with another request is 422 `IDEMPOTENCY_KEY_REUSED`; while the
 * first is still being answered, 409 `IDEMPOTENCY_KEY_IN_USE`. A request that fails frees its key.
 * Keys are the tenant's: two tenants may use the same one. The request is the caller's too: the same
 * key and body from another API key of the tenant is another request (422), so no one is answered
 * for what their own role would be refused. Without the header, nothing changes.
 *
 * Only the handler's failure frees the key. Once the handler has answered, what it made is made: a
 * failure to keep its answer (the database away a moment) is tried once more, then logged, and the
 * answer still leaves; the key stays claimed, so a retry is told to wait (409) instead of making it
 * again, until the key counts as abandoned (IDEMPOTENCY_ABANDONED_S).
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  private readonly logger = new Logger(IdempotencyInterceptor.name);

  constructor(private readonly keys: IdempotencyRepository) {}

  async intercept(ctx: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest & { auth?: AuthContext }>();
    const reply = ctx.switchToHttp().getResponse<FastifyReply>();
    const header = req.headers['idempotency-key'];
    if (header === undefined || req.auth?.kind !== 'tenant') return next.handle();
    if (typeof header !== 'string' || !KEY.test(header)) {
      throw ApiError.validation([{ field: 'Idempotency-Key', message: 'Idempotency-Key must be 1 to 200 visible ASCII characters' }]);
    }
    const tenantId = req.auth.tenantId;
    const hash = createHash('sha256')
      .update(JSON.stringify([req.auth.keyId, req.method, req.routeOptions.url ?? '', req.params ?? {}, req.body ?? null]))
      .digest('hex');
    const claim = await this.keys.claim(tenantId, header, hash);
    switch (claim.kind) {
      case 'mismatch':
        throw new TenancyError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used for a different request in the last 24 hours; use a new key for a new request');
      case 'in_progress':
        throw new TenancyError('IDEMPOTENCY_KEY_IN_USE', 'A request with this Idempotency-Key is still being answered', undefined, { 'retry-after': '1' });
      case 'replay':
        void reply.status(claim.status).header('idempotent-replayed', 'true');
        return of(claim.body);
      case 'new': {
        // A request slower than the key's abandonment (IDEMPOTENCY_ABANDONED_S) (a large batch, a slow database) says it is
        // alive, so that a retry does not take its key over as abandoned and make it twice — for ten
        // times that at most: a handler that never ends does not hold its key for the process's life.
        let renewals = 0;
        const alive = setInterval(() => {
          if (++renewals > 40) return clearInterval(alive);
          void this.keys.stillAnswering(tenantId, header).catch((err: unknown) => this.logger.warn({ msg: 'could not keep an Idempotency-Key claimed', tenantId, err: loggableError(err) }));
        }, (this.keys.abandonedS * 1000) / 4);
        alive.unref();
        return next.handle().pipe(
          catchError((err: unknown) => from(this.keys.release(tenantId, header).then(() => Promise.reject(err)))),
          mergeMap((body) => from(this.keep(tenantId, header, reply.statusCode, body).then(() => body))),
          finalize(() => clearInterval(alive)),
        );
      }
    }
  }

  /** The answer kept for its key: tried twice; a failure is logged, never the request's. */
  private async keep(tenantId: string, key: string, status: number, body: unknown): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        return await this.keys.answer(tenantId, key, status, body);
      } catch (err) {
        if (tries < 2) continue;
        this.logger.error({ msg: 'an answer could not be kept for its Idempotency-Key (it is sent; a retry waits until the key is abandoned)', tenantId, err: loggableError(err) });
        return;
      }
    }
  }
}
