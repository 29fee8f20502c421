import { finished } from 'node:stream/promises';
import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor, SetMetadata, StreamableFile, UseInterceptors, applyDecorators } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { lastValueFrom, Observable } from 'rxjs';
import type { AuthContext } from '../common/auth';
import { clientGoneSignal } from '../common/client-gone';
import { AppConfig, CONFIG } from '../config/app-config';
import { LimitsService } from './limits.service';

/** The per-tenant limits a read is held within: lists, exports and essays, or ledger reports. */
export type ReadLimit = 'readsInFlight' | 'reportsInFlight';
const READ_LIMIT = 'inkstone:read-limit';

/**
 * Runs a tenant's read (one whose size the tenant decides) within its slot of the route's limit on
 * this instance: `readsInFlight` (LimitsService.read) or `reportsInFlight` (LimitsService.report).
 * More wait their turn, first come first served, then 429; one whose client leaves while it waits
 * is never read. The handler runs only once the slot is held, and the slot is given back when its
 * answer is ready or it fails — a streamed answer (a StreamableFile), once it has been sent.
 */
@Injectable()
export class ReadSlotInterceptor implements NestInterceptor {
  constructor(
    private readonly limits: LimitsService,
    private readonly reflector: Reflector,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = ctx.switchToHttp().getRequest<FastifyRequest & { auth?: AuthContext }>();
    if (req.auth?.kind !== 'tenant') return next.handle();
    const tenantId = req.auth.tenantId;
    const reply = ctx.switchToHttp().getResponse<FastifyReply>();
    const gone = clientGoneSignal(reply);
    const limit = this.reflector.get<ReadLimit>(READ_LIMIT, ctx.getHandler()) ?? 'readsInFlight';
    return new Observable((answer) => {
      // The answer goes out as soon as it is ready; a streamed one (an export sent a page at a time)
      // keeps the slot until it has been sent, or the client left: its reading is the read.
      const run = async () => {
        const out = await lastValueFrom(next.handle());
        const sent = out instanceof StreamableFile ? untilSent(out, reply, this.config.http.streamStallMs) : null;
        answer.next(out);
        answer.complete();
        await sent;
      };
      const held = limit === 'reportsInFlight' ? this.limits.report(tenantId, run, gone) : this.limits.read(tenantId, run, gone);
      held.catch((err: unknown) => answer.error(err));
    });
  }
}

/**
 * Until a streamed answer has been read to its end, failed, or its connection closed (whichever
 * comes first). A client that takes nothing of it for `stallMs` (the connection's buffer full, not
 * drained since the last look) is cut off: a paused download must not hold the tenant's read slot
 * for as long as its socket lives.
 */
function untilSent(file: StreamableFile, reply: FastifyReply, stallMs: number): Promise<void> {
  const raw = reply.raw;
  if (raw.closed || raw.destroyed) return Promise.resolve();
  let drained = false;
  const onDrain = () => (drained = true);
  raw.on('drain', onDrain);
  const watch = setInterval(() => {
    if (raw.writableNeedDrain && !drained) raw.destroy();
    drained = false;
  }, stallMs);
  return Promise.race([finished(file.getStream()).catch(() => undefined), new Promise<void>((resolve) => raw.once('close', () => resolve()))]).finally(() => {
    clearInterval(watch);
    raw.off('drain', onDrain);
  });
}

/** A tenant's list, export or essay view (`readsInFlight`), or with 'reportsInFlight' a ledger report: read within its slot. */
export const BoundedRead = (limit: ReadLimit = 'readsInFlight') => applyDecorators(SetMetadata(READ_LIMIT, limit), UseInterceptors(ReadSlotInterceptor));
