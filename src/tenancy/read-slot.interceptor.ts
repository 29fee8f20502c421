import { CallHandler, ExecutionContext, Injectable, NestInterceptor, UseInterceptors } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { from, lastValueFrom, Observable } from 'rxjs';
import type { AuthContext } from '../common/auth';
import { clientGoneSignal } from '../common/client-gone';
import { LimitsService } from './limits.service';

/**
 * Runs a tenant's list or export (a read whose size the tenant decides) within its `readsInFlight`
 * slot on this instance (LimitsService.read): more wait their turn, first come first served, 64 at
 * most, then 429; one whose client leaves while it waits is never read. The handler runs only once
 * the slot is held, and the slot is given back when its answer is ready or it fails.
 */
@Injectable()
export class ReadSlotInterceptor implements NestInterceptor {
  constructor(private readonly limits: LimitsService) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest & { auth?: AuthContext }>();
    if (req.auth?.kind !== 'tenant') return next.handle();
    const gone = clientGoneSignal(ctx.switchToHttp().getResponse<FastifyReply>());
    return from(this.limits.read(req.auth.tenantId, () => lastValueFrom(next.handle()), gone));
  }
}

/** A tenant's list or export: read within its readsInFlight slot (ReadSlotInterceptor). */
export const BoundedRead = () => UseInterceptors(ReadSlotInterceptor);
