import { createHash } from 'node:crypto';
/**
 * The fake provider's HTTP server: listening and closing, routing (chat routes, the Batch API, the
 * `/_fake/*` control endpoints), request recording and the settings behind the public
 * {@link FakeProvider} interface (latency, responder, context windows, batch latency and failures).
 * What a chat call is answered is completions.ts; how it is sent, delivery.ts.
 */
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { BatchApi, batchRoute } from './batches';
import { Completions, makeCall, parseChatBody } from './completions';
import { Delivery } from './delivery';
import { BASE_PATHS, CHAT_ROUTES, failureBody, isDialect } from './dialects';
import { gone, isRecord, readBody, sendJson, Sleeper, urlHost } from './http';
import { DIALECTS, type Dialect } from './presets';
import type { EnqueueOptions, Step } from './steps';
import type { BatchFailure, BatchObject, FakeProvider, RecordedRequest, Responder } from './types';

export class FakeProviderServer implements FakeProvider {
  url = '';
  readonly requests: RecordedRequest[] = [];
  /** answers billed (real-time ones sent whole with status 200, batch lines answered with 200), and how often each prompt was answered */
  private answered = 0;
  /** of those, batch lines */
  private answeredInBatches = 0;
  private readonly answeredPrompts = new Map<string, number>();
  private received = 0;
  private readonly sleeper = new Sleeper();
  private readonly completions: Completions;
  private readonly delivery: Delivery;
  private readonly batchApi: BatchApi;
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;
  private readonly maxRecorded: number;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly initialLatencyMs: number,
    maxRecorded: number,
    initialBatchLatencyMs = 0,
  ) {
    this.completions = new Completions(initialLatencyMs);
    this.delivery = new Delivery(this.sleeper, this.completions);
    this.batchApi = new BatchApi(
      {
        completions: this.completions,
        record: (r) => this.record(r),
        bill: (body) => {
          this.answeredInBatches++;
          this.tally(body);
        },
        closed: () => this.sleeper.closed,
        sleep: (ms) => this.sleeper.sleep(ms),
      },
      initialBatchLatencyMs,
    );
    this.maxRecorded = maxRecorded;
    this.server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
      res.on('error', () => undefined); // a client that went away is not our error
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get requestCount(): number {
    return this.received;
  }

  get batches(): readonly BatchObject[] {
    return this.batchApi.list(Date.now());
  }

  get files(): readonly string[] {
    return this.batchApi.fileIds();
  }

  async listen(port: number, host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://${urlHost(host)}:${addr.port}`;
  }

  baseUrl(d: Dialect): string {
    if (!isDialect(d)) throw new TypeError(`unknown dialect '${String(d)}'`);
    return this.url + BASE_PATHS[d];
  }

  enqueue(d: Dialect, steps: Step | Step[], opts: EnqueueOptions = {}): void {
    this.completions.steps.enqueue(d, steps, opts);
  }

  setLatency(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('latency must be a number >= 0');
    this.completions.latencyMs = ms;
  }

  setResponder(fn: Responder | null): void {
    this.completions.responder = fn;
  }

  setContextWindow(model: string, tokens: number): void {
    if (!Number.isInteger(tokens) || tokens <= 0) throw new TypeError('context window must be a positive integer');
    this.completions.contextWindows.set(model, tokens);
  }

  setBatchLatency(ms: number): void {
    this.batchApi.setLatency(ms);
  }

  setBatchCreateDelay(ms: number): void {
    this.batchApi.setCreateDelay(ms);
  }

  /** A new batch shows in `GET /batches` only this long after its creation (an eventually consistent list). */
  setBatchListLag(ms: number): void {
    this.batchApi.setListLag(ms);
  }

  failNextBatch(d: Dialect, outcome: BatchFailure, afterLines?: number): void {
    this.batchApi.failNext(d, outcome, afterLines);
  }

  reset(): void {
    this.requests.length = 0;
    this.received = 0;
    this.answered = 0;
    this.answeredInBatches = 0;
    this.answeredPrompts.clear();
    this.completions.reset(this.initialLatencyMs);
    this.batchApi.reset();
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.sleeper.close();
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  // ---- routing ---------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/_fake/')) return this.control(req, res, path);

    const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    const dialect = CHAT_ROUTES.get(trimmed);
    if (!dialect) {
      const route = batchRoute(trimmed);
      if (route) return this.batchApi.handle(req, res, route);
      req.resume();
      return sendJson(res, 404, {
        error: { message: `Not found: ${req.method ?? ''} ${path}`, type: 'invalid_request_error', code: 'not_found' },
      });
    }
    if (req.method !== 'POST') {
      req.resume();
      return sendJson(
        res,
        405,
        { error: { message: `Method ${req.method ?? ''} not allowed`, type: 'invalid_request_error', code: 'method_not_allowed' } },
        { allow: 'POST' },
      );
    }

    const text = await readBody(req);
    if (text === null) return sendJson(res, 413, { error: { message: 'Request body too large', type: 'invalid_request_error' } });
    const { body, valid } = parseChatBody(text);
    this.record({ dialect, path, model: body.model, body, headers: { ...req.headers }, at: Date.now() });

    const call = makeCall(dialect, body, valid, req.headers.authorization ?? '');
    await this.delivery.deliver(req, res, call, await this.completions.answer(call, 'http'));
    // What a real provider bills: an answer it finished sending, whether or not the caller lived to read it.
    if (res.statusCode === 200 && res.writableFinished) this.tally(body);
  }

  /** Counts a billed answer (real-time or a batch line), and how often the same prompt has been answered (a call paid twice). */
  private tally(body: { messages?: unknown }): void {
    this.answered++;
    const key = createHash('sha256').update(JSON.stringify(body.messages ?? null)).digest('base64');
    this.answeredPrompts.set(key, (this.answeredPrompts.get(key) ?? 0) + 1);
  }

  private record(r: RecordedRequest): void {
    this.received++;
    this.requests.push(r);
    // Trim in batches so a long benchmark keeps memory bounded without shifting on every request.
    const slack = Math.max(1, Math.floor(this.maxRecorded / 10));
    if (this.requests.length > this.maxRecorded + slack) this.requests.splice(0, this.requests.length - this.maxRecorded);
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    if (gone(res)) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, 500, failureBody(err));
  }

  // ---- control endpoints ---------------------------------------------------------------------

  private async control(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    const route = `${req.method ?? ''} ${path}`;
    if (req.method === 'GET') {
      req.resume();
      if (path === '/_fake/health') {
        const baseUrls = Object.fromEntries(DIALECTS.map((d) => [d, this.baseUrl(d)]));
        return sendJson(res, 200, { status: 'ok', url: this.url, baseUrls });
      }
      if (path === '/_fake/requests') {
        const requests = this.requests.slice(-100).map((r) => ({
          dialect: r.dialect,
          path: r.path,
          model: r.model,
          stream: r.body.stream === true,
          at: r.at,
          ...(r.batchId === undefined ? {} : { batchId: r.batchId }),
        }));
        let answeredAgain = 0;
        for (const n of this.answeredPrompts.values()) if (n > 1) answeredAgain++;
        // filesStored: the Batch API's files not deleted (uploads of requests, and results).
        return sendJson(res, 200, { count: this.received, answered: this.answered, answeredInBatches: this.answeredInBatches, answeredAgain, filesStored: this.files.length, requests });
      }
      return sendJson(res, 404, { error: { message: `Not found: ${route}` } });
    }
    if (req.method !== 'POST') {
      req.resume();
      return sendJson(res, 404, { error: { message: `Not found: ${route}` } });
    }
    const text = await readBody(req);
    let input: unknown = {};
    try {
      input = text ? (JSON.parse(text) as unknown) : {};
    } catch {
      return sendJson(res, 400, { error: { message: 'body must be JSON' } });
    }
    if (!isRecord(input)) return sendJson(res, 400, { error: { message: 'body must be a JSON object' } });
    try {
      switch (path) {
        case '/_fake/enqueue': {
          if (!isDialect(input.dialect)) throw new TypeError(`dialect must be one of ${DIALECTS.join(', ')}`);
          const model = input.model;
          if (model !== undefined && typeof model !== 'string') throw new TypeError('model must be a string');
          const steps: unknown[] = Array.isArray(input.steps) ? input.steps : [input.steps];
          this.enqueue(input.dialect, steps as Step[], { model }); // enqueue() validates each step
          return sendJson(res, 200, { ok: true, queued: this.completions.steps.length(input.dialect) });
        }
        case '/_fake/latency':
          this.setLatency(input.ms as number);
          return sendJson(res, 200, { ok: true, latencyMs: this.completions.latencyMs });
        case '/_fake/context-window':
          if (typeof input.model !== 'string') throw new TypeError('model must be a string');
          this.setContextWindow(input.model, input.tokens as number);
          return sendJson(res, 200, { ok: true });
        case '/_fake/batch-latency':
          this.setBatchLatency(input.ms as number);
          return sendJson(res, 200, { ok: true, batchLatencyMs: this.batchApi.latencyMs });
        case '/_fake/batch-failure':
          this.failNextBatch(input.dialect as Dialect, input.outcome as BatchFailure, input.afterLines as number | undefined); // validates them
          return sendJson(res, 200, { ok: true });
        case '/_fake/reset':
          this.reset();
          return sendJson(res, 200, { ok: true });
        default:
          return sendJson(res, 404, { error: { message: `Not found: ${route}` } });
      }
    } catch (err) {
      return sendJson(res, 400, { error: { message: err instanceof Error ? err.message : String(err) } });
    }
  }
}
