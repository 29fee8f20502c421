import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { UUID } from '../common/ids';
import { AppConfig, CONFIG } from '../config/app-config';
import { Authenticator } from '../tenancy/authenticator';
import { LimitsService } from '../tenancy/limits.service';
import { EssayEvents } from './essay-events';
import { EssaysService } from './essays.service';

const TERMINAL = new Set(['graded', 'failed', 'needs_review']);

/**
 * GET /v1/essays/:id/events: Server-Sent Events for one essay — each status change, then the
 * finished grade (`grade`) and `end`. Woken by the essay's events from any instance (the cluster
 * bus), and between events by a keep-alive (HTTP_EVENTS_KEEP_ALIVE_MS) that reads the essay's
 * status alone: a missed event (a read that failed, a notice lost between instances) is caught up
 * on at the next one. It reads the whole essay again only when something happened. Each stream holds
 * one of the tenant's event-stream slots until it closes. The caller is identified again before
 * each read and with each keep-alive (from caches the revocation and the sign-out clear): a stream
 * whose key was revoked, or whose console session was signed out, ends (`end` with status
 * `unauthenticated`) and sends nothing more. (It went on sending the essay's grade to a key
 * revoked hours before, for as long as the essay waited for its window.)
 */
@Injectable()
export class EssayStreamService {
  /** how each open stream is ended when the instance stops */
  private readonly open = new Set<() => void>();
  private stopping = false;

  constructor(
    private readonly essays: EssaysService,
    private readonly events: EssayEvents,
    private readonly limits: LimitsService,
    private readonly authenticator: Authenticator,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * The server is closing (Fastify's preClose, AppFactory): every open stream ends, with a `retry`
   * hint and no `end` event, so an EventSource reconnects (to another instance) and reads the essay
   * again; one asked for from now on gets the same at once. A stream lasts as long as its essay
   * waits (a batch window, a deadline): the server's close waited for it, and a stop hung until the
   * client left or the process was killed, with none of the shutdown's own work done. (Not an
   * error status: an EventSource answered with one stops for good.)
   */
  closing(): void {
    this.stopping = true;
    for (const stop of [...this.open]) stop();
  }

  /** Ends a stream asked for while the server closes: the `retry` hint alone. */
  private sendRetry(reply: FastifyReply): void {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
    reply.raw.end('retry: 1000\n\n');
  }

  async stream(auth: TenantAuth, id: string, req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (this.stopping) return this.sendRetry(reply);
    // 404 for an id that is not this tenant's, before the stream starts: its status alone (one key
    // read); the whole view, which can be a few hundred kilobytes, only to say why it is not found
    // (erased, and when). The view is read within the tenant's read slots (readsInFlight), as
    // GET /v1/essays/:id is, and only once the stream holds its own slot: a flood of streams
    // refused 429 read every essay first, and the ones let in read outside every bound.
    if ((UUID.test(id) ? await this.essays.statusOf(auth, id) : null) === null) await this.essays.get(auth, id);
    const release = await this.limits.acquire(auth.tenantId, 'eventStreams');
    // (The server may have begun to close while the essay was read and the slot taken.)
    if (this.stopping) {
      release();
      return this.sendRetry(reply);
    }
    const gone = new AbortController();
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-request-id': String(req.id),
    });
    let last = '';
    let closed = false;
    let chain = Promise.resolve();
    const send = (event: string, data: unknown) => raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    const subscriptions: Array<() => void> = [];
    // Whether the caller may still read: false once its key is revoked or its session signed out
    // (another failure, the database away a moment, is not the caller's: it may).
    const allowed = async () => (await this.authenticator.refusalNow(req)) === null;
    const refused = () => {
      send('end', { id, status: 'unauthenticated' });
      finish();
    };
    const finish = () => {
      if (closed) return;
      closed = true;
      this.open.delete(stop);
      for (const unsubscribe of subscriptions) unsubscribe();
      clearInterval(keepAlive);
      gone.abort();
      release();
      raw.end();
    };
    // Reads the essay and sends what changed; runs one at a time, in order.
    const check = () => {
      chain = chain.then(async () => {
        if (closed) return;
        if (!(await allowed())) return closed ? undefined : refused();
        // Erased meanwhile (404): the stream says so and ends. Another failure (the database away a
        // moment, the tenant's reads queued past their bound): nothing is sent, and the next event
        // or keep-alive reads again.
        const view = await this.limits
          .read(auth.tenantId, () => this.essays.get(auth, id), gone.signal)
          .catch((err: unknown) => (err instanceof ApiError && err.code === 'NOT_FOUND' ? ('gone' as const) : null));
        if (!view || closed) return;
        if (view === 'gone') {
          send('end', { id, status: 'erased' });
          return finish();
        }
        if (view.status !== last) {
          last = view.status;
          send('status', { id, status: view.status, flags: view.flags, failure: view.failure });
        }
        if (TERMINAL.has(view.status)) {
          if (view.grade) send('grade', { id, status: view.status, grade: view.grade });
          send('end', { id, status: view.status });
          finish();
        }
      });
    };
    // Between events, each keep-alive also reads the essay's status alone: an event this stream
    // missed (its read failed, the database away a moment; the bus's notice lost between instances)
    // is caught up on at the next one, not never (a graded essay sends no other event).
    const keepAlive = setInterval(() => {
      if (closed) return;
      raw.write(': keep-alive\n\n');
      chain = chain.then(async () => {
        if (closed) return;
        if (!(await allowed())) return closed ? undefined : refused();
        const status = await this.essays.statusOf(auth, id).catch(() => last);
        if (!closed && status !== last) check();
      });
    }, this.config.http.eventsKeepAliveMs);
    const stop = () => {
      if (!closed) raw.write('retry: 1000\n\n');
      finish();
    };
    this.open.add(stop);
    subscriptions.push(this.events.on(id, check), this.events.onResync(check));
    raw.on('close', finish);
    // The client may have left while the essay was read and the slot taken: then nothing would say so.
    if (raw.destroyed || req.raw.socket?.destroyed) return finish();
    check();
  }
}
