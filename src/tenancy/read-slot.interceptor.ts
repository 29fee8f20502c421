import { CallHandler, ExecutionContext, Injectable, NestInterceptor, SetMetadata, UseInterceptors, applyDecorators } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { from, lastValueFrom, Observable } from 'rxjs';
import type { AuthContext } from '../common/auth';
import { clientGoneSignal } from '../common/client-gone';
import { LimitsService } from './limits.service';

/** The per-tenant limits a read is held within: lists, exports and essays, or ledger reports. */
export type ReadLimit = 'readsInFlight' | 'reportsInFlight';
const READ_LIMIT = 'inkstone:read-limit';

/**
 * Runs a tenant's read (one whose size the tenant decides) within its slot of the route's limit on
 * this instance: `readsInFlight` (LimitsService.read) or `reportsInFlight` (LimitsService.report).
 * More wait their turn, first come first served, then 429; one whose client leaves while it waits
 * is never read. The handler runs only once the slot is held, and the slot is given back when its
 * answer is ready or it fails.
 */
@Injectable()
export class ReadSlotInterceptor implements NestInterceptor {
  constructor(
    private readonly limits: LimitsService,
    private readonly reflector: Reflector,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest & { auth?: AuthContext }>();
    if (req.auth?.kind !== 'tenant') return next.handle();
    const gone = clientGoneSignal(ctx.switchToHttp().getResponse<FastifyReply>());
    const run = () => lastValueFrom(next.handle());
    const limit = this.reflector.get<ReadLimit>(READ_LIMIT, ctx.getHandler()) ?? 'readsInFlight';
    return from(limit === 'reportsInFlight' ? this.limits.report(req.auth.tenantId, run, gone) : this.limits.read(req.auth.tenantId, run, gone));
  }
}

/** A tenant's list, export or essay view (`readsInFlight`), or with 'reportsInFlight' a ledger report: read within its slot. */
export const BoundedRead = (limit: ReadLimit = 'readsInFlight') => applyDecorators(SetMetadata(READ_LIMIT, limit), UseInterceptors(ReadSlotInterceptor));
