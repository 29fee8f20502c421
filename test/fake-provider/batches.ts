/**
 * The OpenAI-compatible Batch API of the DashScope, OpenAI and Zhipu dialects (DeepSeek has none):
 * `POST /files` (multipart upload), `GET /files` (newest first, `purpose`, `limit` and `after`), `GET` and `DELETE /files/:id`, `GET /files/:id/content`, `POST /batches`,
 * `GET /batches` (newest first, `limit` and `after`), `GET /batches/:id` and `POST /batches/:id/cancel` under the dialect's base URL; the stored files and batches, the batch latency
 * and scripted batch failures. Running a batch's lines is batch-run.ts.
 */
import { randomUUID } from 'node:crypto';
import type * as http from 'node:http';
import { batchObject, runBatch, type BatchRunContext, type BatchState } from './batch-run';
import type { Completions } from './completions';
import { apiError, BASE_PATHS, BATCH_COMPLETION_WINDOW, BATCH_DIALECTS, BATCH_ENDPOINT, isDialect } from './dialects';
import { isRecord, readBody, readBodyBuffer, sendJson } from './http';
import { parseMultipart } from './multipart';
import { DIALECTS, materializePreset, PRESETS, type Dialect } from './presets';
import type { BatchFailure, BatchObject, FileObject, RecordedRequest } from './types';

/** A file of the Batch API with its bytes; a file is only seen under its own dialect. */
interface StoredFile {
  dialect: Dialect;
  info: FileObject;
  content: Buffer;
}

export type BatchRoute =
  | { dialect: Dialect; kind: 'files' | 'batches' }
  | { dialect: Dialect; kind: 'file' | 'file-content' | 'batch' | 'batch-cancel'; id: string };

/** The Batch API route of a path (without a trailing slash), or null. */
export function batchRoute(path: string): BatchRoute | null {
  for (const dialect of BATCH_DIALECTS) {
    const prefix = BASE_PATHS[dialect];
    if (!path.startsWith(`${prefix}/`)) continue;
    const rest = path.slice(prefix.length);
    if (rest === '/files') return { dialect, kind: 'files' };
    if (rest === '/batches') return { dialect, kind: 'batches' };
    const m = /^\/(files|batches)\/([^/]+)(\/content|\/cancel)?$/.exec(rest);
    if (!m || (m[1] === 'batches' && m[3] === '/content') || (m[1] === 'files' && m[3] === '/cancel')) return null;
    let id: string;
    try {
      id = decodeURIComponent(m[2]);
    } catch {
      return null;
    }
    if (m[1] === 'batches') return { dialect, kind: m[3] ? 'batch-cancel' : 'batch', id };
    return { dialect, kind: m[3] ? 'file-content' : 'file', id };
  }
  return null;
}

/** What the Batch API needs from the rest of the fake provider. */
export interface BatchApiDeps {
  readonly completions: Completions;
  /** Records a batch line as a chat request. */
  record(r: RecordedRequest): void;
  /** Counts a batch line's answer as billed. */
  bill(body: { messages?: unknown }): void;
  /** close() was called. */
  closed(): boolean;
  /** Waits `ms`: false at once when the server closes. */
  sleep(ms: number): Promise<boolean>;
}

export class BatchApi implements BatchRunContext {
  private readonly files = new Map<string, StoredFile>();
  private readonly batchStates = new Map<string, BatchState>();
  private readonly failures: Record<Dialect, Array<{ outcome: BatchFailure; afterLines?: number }>> = { deepseek: [], zhipu: [], dashscope: [], openai: [] };
  /** Least time from a batch's creation to its end, in ms. */
  latencyMs: number;
  /** How long `POST /batches` takes to answer, in ms (the batch is created at once). */
  private createDelayMs = 0;
  /** How long a new batch stays out of `GET /batches` (a list that lags behind, as eventually consistent ones do), in ms. */
  private listLagMs = 0;

  constructor(
    private readonly deps: BatchApiDeps,
    private readonly initialLatencyMs: number,
  ) {
    this.latencyMs = initialLatencyMs;
  }

  get completions(): Completions {
    return this.deps.completions;
  }

  record(r: RecordedRequest): void {
    this.deps.record(r);
  }

  bill(body: { messages?: unknown }): void {
    this.deps.bill(body);
  }

  /** The files stored now (uploads and results not deleted), by id. */
  fileIds(): string[] {
    return [...this.files.keys()];
  }

  /** The batches in creation order, as `GET /batches/:id` would answer at `now`. */
  list(now: number): BatchObject[] {
    return [...this.batchStates.values()].map((b) => batchObject(b, now));
  }

  setCreateDelay(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('batch create delay must be a number >= 0');
    this.createDelayMs = ms;
  }

  setListLag(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('batch list lag must be a number >= 0');
    this.listLagMs = ms;
  }

  setLatency(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('batch latency must be a number >= 0');
    this.latencyMs = ms;
  }

  failNext(d: Dialect, outcome: BatchFailure, afterLines?: number): void {
    if (!isDialect(d)) throw new TypeError(`unknown dialect '${String(d)}'`);
    if (!BATCH_DIALECTS.includes(d)) throw new TypeError(`${d} has no batch API`);
    if (outcome !== 'failed' && outcome !== 'expired') throw new TypeError("outcome must be 'failed' or 'expired'");
    if (afterLines !== undefined && (outcome !== 'expired' || !Number.isInteger(afterLines) || afterLines < 1)) {
      throw new TypeError('afterLines is a whole number of lines ≥ 1, for an expired batch');
    }
    this.failures[d].push({ outcome, afterLines });
  }

  /** Drops files, batches and scripted failures; the latency goes back to its start value. */
  reset(): void {
    // A batch still being processed notices it is gone and stops (see runBatch()).
    this.files.clear();
    this.batchStates.clear();
    for (const d of DIALECTS) this.failures[d].length = 0;
    this.latencyMs = this.initialLatencyMs;
    this.createDelayMs = 0;
    this.listLagMs = 0;
  }

  /** Answers a request to a Batch API route (the dialect's 401 without a key, 405 for another method). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, route: BatchRoute): Promise<void> {
    const { dialect } = route;
    const auth = req.headers.authorization ?? '';
    if (!/^Bearer\s+\S/i.test(auth)) {
      req.resume();
      const p = materializePreset(PRESETS[dialect].auth);
      return sendJson(res, p.status, p.body, p.headers);
    }
    const methods =
      route.kind === 'batch-cancel' ? ['POST'] : route.kind === 'batches' || route.kind === 'files' ? ['GET', 'POST'] : route.kind === 'file' ? ['GET', 'DELETE'] : ['GET'];
    if (!methods.includes(req.method ?? '')) {
      req.resume();
      return sendJson(res, 405, apiError(`Method ${req.method ?? ''} not allowed`, 'method_not_allowed'), { allow: methods.join(', ') });
    }
    switch (route.kind) {
      case 'files':
        if (req.method === 'GET') {
          req.resume();
          return this.listFiles(req, res, dialect);
        }
        return this.uploadFile(req, res, dialect);
      case 'batches':
        if (req.method === 'GET') {
          req.resume();
          return this.listBatches(req, res, dialect);
        }
        return this.createBatch(req, res, dialect, auth);
      case 'file':
      case 'file-content': {
        req.resume();
        const file = this.files.get(route.id);
        if (!file || file.dialect !== dialect) return sendJson(res, 404, apiError(`No such File object: ${route.id}`, null, 'id'));
        if (req.method === 'DELETE') {
          // `DELETE /files/:id`, as OpenAI answers it (DashScope's and Zhipu's compatible APIs answer alike).
          this.files.delete(route.id);
          return sendJson(res, 200, { id: route.id, object: 'file', deleted: true });
        }
        if (route.kind === 'file') return sendJson(res, 200, file.info);
        res.writeHead(200, { 'content-type': 'application/jsonl', 'content-length': file.content.length });
        res.end(file.content);
        return;
      }
      case 'batch': {
        req.resume();
        const b = this.batchStates.get(route.id);
        if (!b || b.dialect !== dialect) return sendJson(res, 404, apiError(`No such Batch object: ${route.id}`, null, 'batch_id'));
        return sendJson(res, 200, batchObject(b, Date.now()));
      }
      case 'batch-cancel': {
        // `POST /batches/:id/cancel`, as OpenAI answers it: 'cancelling' now, 'cancelled' after; a
        // batch that has ended already cannot be cancelled.
        req.resume();
        const b = this.batchStates.get(route.id);
        if (!b || b.dialect !== dialect) return sendJson(res, 404, apiError(`No such Batch object: ${route.id}`, null, 'batch_id'));
        const now = Date.now();
        const shown = batchObject(b, now);
        if (!['validating', 'in_progress'].includes(shown.status)) {
          return sendJson(res, 400, apiError(`Cannot cancel a batch with status '${shown.status}'.`));
        }
        b.cancelledMs = now;
        return sendJson(res, 200, { ...batchObject(b, now), status: 'cancelling' });
      }
    }
  }

  /**
   * `GET /batches?limit=&after=`, as OpenAI answers it: the dialect's batches newest first, `limit`
   * of them (1–100, default 20) after the batch `after`, with `has_more`; a batch made less than the
   * list lag ago is not in it yet.
   */
  private listBatches(req: http.IncomingMessage, res: http.ServerResponse, dialect: Dialect): void {
    const now = Date.now();
    const mine = [...this.batchStates.values()].filter((b) => b.dialect === dialect && b.createdMs <= now - this.listLagMs).reverse();
    listPage(req, res, 'Batch', { max: 100, byDefault: 20 }, mine.map((b) => batchObject(b, now)));
  }

  /**
   * `GET /files?purpose=&limit=&after=`, as OpenAI answers it: the dialect's files newest first (of
   * one purpose, when given), `limit` of them (1–10,000, default 10,000) after the file `after`, with
   * `has_more`.
   */
  private listFiles(req: http.IncomingMessage, res: http.ServerResponse, dialect: Dialect): void {
    const purpose = new URL(req.url ?? '/', 'http://fake').searchParams.get('purpose');
    const mine = [...this.files.values()].filter((f) => f.dialect === dialect && (purpose === null || f.info.purpose === purpose)).reverse();
    listPage(req, res, 'File', { max: 10_000, byDefault: 10_000 }, mine.map((f) => f.info));
  }

  /** `POST /files`: multipart/form-data with `purpose=batch` and a `file` part. */
  private async uploadFile(req: http.IncomingMessage, res: http.ServerResponse, dialect: Dialect): Promise<void> {
    const raw = await readBodyBuffer(req);
    if (raw === null) return sendJson(res, 413, apiError('Request body too large'));
    const parts = parseMultipart(req.headers['content-type'], raw);
    if (!parts) {
      return sendJson(res, 400, apiError("The body must be multipart/form-data with a 'purpose' field and a 'file' part."));
    }
    const file = parts.find((p) => p.name === 'file' && p.filename !== undefined);
    if (!file) return sendJson(res, 400, apiError("Missing required parameter: 'file'.", null, 'file'));
    const purpose = parts.find((p) => p.name === 'purpose' && p.filename === undefined)?.data.toString('utf8');
    if (purpose === undefined) return sendJson(res, 400, apiError("Missing required parameter: 'purpose'.", null, 'purpose'));
    if (purpose !== 'batch') {
      return sendJson(res, 400, apiError(`Invalid value for 'purpose': '${purpose}'. Only 'batch' is supported.`, null, 'purpose'));
    }
    const info = this.addFile(dialect, 'file-batch-', file.filename || 'file.jsonl', 'batch', Buffer.from(file.data));
    return sendJson(res, 200, info);
  }

  addFile(dialect: Dialect, idPrefix: string, filename: string, purpose: FileObject['purpose'], content: Buffer): FileObject {
    const info: FileObject = {
      id: `${idPrefix}${randomUUID()}`,
      object: 'file',
      bytes: content.length,
      created_at: Math.floor(Date.now() / 1000),
      filename,
      purpose,
    };
    this.files.set(info.id, { dialect, info, content });
    return info;
  }

  /** `POST /batches` `{input_file_id, endpoint, completion_window, metadata?}`. */
  private async createBatch(req: http.IncomingMessage, res: http.ServerResponse, dialect: Dialect, auth: string): Promise<void> {
    const text = await readBody(req);
    if (text === null) return sendJson(res, 413, apiError('Request body too large'));
    let input: unknown;
    try {
      input = JSON.parse(text) as unknown;
    } catch {
      return sendJson(res, 400, apiError('The body must be JSON.'));
    }
    if (!isRecord(input)) return sendJson(res, 400, apiError('The body must be a JSON object.'));
    const { input_file_id: fileId, endpoint, completion_window: window } = input;
    if (typeof fileId !== 'string' || fileId === '') {
      return sendJson(res, 400, apiError("Missing required parameter: 'input_file_id'.", null, 'input_file_id'));
    }
    if (endpoint !== BATCH_ENDPOINT) {
      return sendJson(res, 400, apiError(`Invalid value for 'endpoint': only '${BATCH_ENDPOINT}' is supported.`, null, 'endpoint'));
    }
    if (window !== BATCH_COMPLETION_WINDOW) {
      return sendJson(
        res,
        400,
        apiError(`Invalid value for 'completion_window': only '${BATCH_COMPLETION_WINDOW}' is supported.`, null, 'completion_window'),
      );
    }
    const metadata = input.metadata ?? null;
    if (metadata !== null && (!isRecord(metadata) || Object.values(metadata).some((v) => typeof v !== 'string'))) {
      return sendJson(res, 400, apiError("Invalid value for 'metadata': an object of strings.", null, 'metadata'));
    }
    const file = this.files.get(fileId);
    if (!file || file.dialect !== dialect) return sendJson(res, 404, apiError(`No such File object: ${fileId}`, null, 'input_file_id'));
    if (file.info.purpose !== 'batch') {
      return sendJson(res, 400, apiError(`File ${fileId} has purpose '${file.info.purpose}', not 'batch'.`, null, 'input_file_id'));
    }
    const lines = file.content
      .toString('utf8')
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '');
    if (lines.length === 0) return sendJson(res, 400, apiError(`File ${fileId} contains no requests.`, null, 'input_file_id'));

    const now = Date.now();
    const b: BatchState = {
      dialect,
      id: `batch_${randomUUID()}`,
      endpoint,
      inputFileId: fileId,
      completionWindow: window,
      metadata: metadata as Record<string, string> | null,
      headers: { ...req.headers },
      auth,
      lines,
      createdMs: now,
      latencyMs: this.latencyMs,
      completed: 0,
      failed: 0,
      outputFileId: null,
      errorFileId: null,
    };
    const scripted = this.failures[dialect].shift();
    if (scripted?.outcome === 'failed') {
      b.failure = { outcome: 'failed', code: 'batch_failed', message: 'The batch failed (scripted by the fake provider).', atMs: now };
    } else if (scripted?.outcome === 'expired') {
      b.failure = { outcome: 'expired', code: 'batch_expired', message: 'This batch could not be completed within the 24h time window.', atMs: now };
      b.runLines = scripted.afterLines;
    }
    this.batchStates.set(b.id, b);
    const created = batchObject(b, now); // 'validating'
    setImmediate(() => {
      if (scripted?.outcome === 'expired') b.startedMs = Date.now(); // it ran out of time while in progress
      if (scripted && b.runLines === undefined) return;
      runBatch(this, b).catch((err: unknown) => {
        b.failure = { outcome: 'failed', code: 'server_error', message: `fake provider: ${err instanceof Error ? err.message : String(err)}`, atMs: Date.now() };
      });
    });
    if (this.createDelayMs > 0 && !(await this.deps.sleep(this.createDelayMs))) return;
    return sendJson(res, 200, created);
  }

  /** Whether the batch is still there (reset() drops it) and the server still running. */
  live(b: BatchState): boolean {
    return !this.deps.closed() && this.batchStates.get(b.id) === b;
  }
}

/**
 * One page of a list, newest first, as OpenAI answers it (`limit` and `after`, with `first_id`,
 * `last_id` and `has_more`): a limit out of range is 400, an `after` not in the list 404.
 */
function listPage(req: http.IncomingMessage, res: http.ServerResponse, what: 'Batch' | 'File', limits: { max: number; byDefault: number }, all: Array<{ id: string }>): void {
  const query = new URL(req.url ?? '/', 'http://fake').searchParams;
  const limitText = query.get('limit');
  const limit = limitText === null ? limits.byDefault : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > limits.max) {
    return sendJson(res, 400, apiError(`Invalid 'limit': integer between 1 and ${limits.max} expected, got '${limitText}'.`, null, 'limit'));
  }
  const after = query.get('after');
  const from = after === null ? 0 : all.findIndex((x) => x.id === after) + 1;
  if (after !== null && from === 0) return sendJson(res, 404, apiError(`No such ${what} object: ${after}`, null, 'after'));
  const data = all.slice(from, from + limit);
  return sendJson(res, 200, { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: from + limit < all.length });
}
