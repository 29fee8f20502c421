import { Agent, errors as undiciErrors, fetch as undiciFetch, FormData, request } from 'undici';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { LlmConfig } from '../config/app-config';
import type { EnabledProvider } from './llm-models';
import type { CatalogModel } from './catalog';
import type { DialectAdapter } from './providers';
import { ChatParams, Completion, ProviderError, Usage } from './types';

export type StreamEvent =
  | { type: 'delta'; text: string }
  | { type: 'finish'; reason: string }
  | { type: 'usage'; usage: Usage };

/**
 * The total timeout of one provider call, and the caller's own cancellation, as one signal that
 * ends with the call: `clear()` on every path. (Not AbortSignal.timeout + AbortSignal.any: their
 * timer outlives the call by the whole timeout, two minutes, and with them each call promoted about
 * 0.4 KB more to the old generation; bench/probe-tail.ts with --trace-gc-nvp.)
 */
export class CallDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  timedOut = false;
  callerWentAway = false;

  constructor(
    ms: number,
    private readonly caller?: AbortSignal,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new DOMException('the call took longer than its total timeout', 'TimeoutError'));
    }, ms);
    if (caller?.aborted) this.onCallerAbort();
    else caller?.addEventListener('abort', this.onCallerAbort);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private readonly onCallerAbort = () => {
    this.callerWentAway = true;
    this.controller.abort(this.caller?.reason);
  };

  clear(): void {
    clearTimeout(this.timer);
    this.caller?.removeEventListener('abort', this.onCallerAbort);
  }
}

/**
 * HTTP to the providers over undici: one keep-alive connection pool per origin, a connect timeout,
 * a first-byte timeout (response headers), a body-idle timeout and a total timeout per call. Every
 * failure comes out as a ProviderError with its class.
 */
export class ProviderClient {
  private readonly agent: Agent;

  constructor(private readonly cfg: LlmConfig) {
    this.agent = new Agent({
      connect: { timeout: cfg.connectTimeoutMs },
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 300_000,
      connections: 512,
      headersTimeout: cfg.firstByteTimeoutMs,
      bodyTimeout: cfg.firstByteTimeoutMs,
    });
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.agent.close();
  }

  /** The request body a batch line carries for this call. */
  batchBody(adapter: DialectAdapter, model: CatalogModel, params: ChatParams): Record<string, unknown> {
    return adapter.buildBody(model, { ...params, stream: false });
  }

  private async send(
    provider: EnabledProvider,
    adapter: DialectAdapter,
    model: CatalogModel,
    params: ChatParams,
    deadline: CallDeadline,
  ): Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: Readable & { text(): Promise<string> } }> {
    // A caller gone before the call leaves: nothing is sent, so nothing may be billed (undici refuses
    // an aborted signal at once, and the refusal read as a call the caller left after it was sent).
    if (deadline.callerWentAway) throw new ProviderError('fatal', 'cancelled', 'the caller went away before the call was sent');
    try {
      const res = await request(`${provider.baseUrl}${adapter.chatPath}`, {
        method: 'POST',
        dispatcher: this.agent,
        headers: {
          authorization: `Bearer ${provider.apiKey}`,
          'content-type': 'application/json',
          accept: params.stream ? 'text/event-stream' : 'application/json',
        },
        body: JSON.stringify(adapter.buildBody(model, params)),
        signal: deadline.signal,
      });
      return res as never;
    } catch (err) {
      throw networkError(err, deadline);
    }
  }

  /** One non-streaming call. Blank or unparseable content is an error that still carries usage. */
  async complete(provider: EnabledProvider, adapter: DialectAdapter, model: CatalogModel, params: ChatParams, signal?: AbortSignal): Promise<Completion> {
    const deadline = new CallDeadline(this.cfg.totalTimeoutMs, signal);
    try {
      const res = await this.send(provider, adapter, model, { ...params, stream: false }, deadline);
      let text: string;
      try {
        text = await res.body.text();
      } catch (err) {
        throw networkError(err, deadline);
      }
      return readCompletion(adapter, res.statusCode, text, retryAfterMs(res.headers));
    } finally {
      deadline.clear();
    }
  }

  /** A request to the provider's Batch API (OpenAI-compatible files and batches), as JSON. */
  private async batchApi<T>(provider: EnabledProvider, adapter: DialectAdapter, path: string, init: { method: string; body?: unknown; form?: FormData }): Promise<T> {
    const deadline = new CallDeadline(this.cfg.totalTimeoutMs);
    let res;
    let text: string;
    try {
      res = await undiciFetch(`${provider.baseUrl}${path}`, {
        method: init.method,
        dispatcher: this.agent,
        headers: { authorization: `Bearer ${provider.apiKey}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: init.form ?? (init.body !== undefined ? JSON.stringify(init.body) : undefined),
        signal: deadline.signal,
      } as never);
      text = await res.text();
    } catch (err) {
      throw networkError(err, deadline);
    } finally {
      deadline.clear();
    }
    if (res.status >= 400) throw adapter.classifyError(res.status, parseJson(text) ?? text, undefined);
    return (path.endsWith('/content') ? text : parseJson(text)) as T;
  }

  /** Uploads a JSONL file of requests (purpose "batch"), and starts a batch over it. */
  async createBatch(provider: EnabledProvider, adapter: DialectAdapter, jsonl: string): Promise<BatchObject> {
    return this.createBatchFromFile(provider, adapter, await this.uploadBatchFile(provider, adapter, jsonl));
  }

  /** Uploads a JSONL file of requests (purpose "batch") with the file name given: its file id. */
  async uploadBatchFile(provider: EnabledProvider, adapter: DialectAdapter, jsonl: string, filename = 'requests.jsonl'): Promise<string> {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl], { type: 'application/jsonl' }), filename);
    return (await this.batchApi<{ id: string }>(provider, adapter, '/files', { method: 'POST', form })).id;
  }

  /**
   * Starts a batch over an uploaded file; if it cannot be started, the file is deleted — unless
   * `keepUploadUnanswered` and the error may have hidden a batch made all the same (a timeout, a cut
   * connection, a 5xx: no answer, or a server's fault), which the caller then looks for. A refusal
   * (4xx, 429 included) made no batch: the upload goes at once.
   */
  async createBatchFromFile(provider: EnabledProvider, adapter: DialectAdapter, fileId: string, opts: { keepUploadUnanswered?: boolean } = {}): Promise<BatchObject> {
    try {
      return await this.batchApi<BatchObject>(provider, adapter, '/batches', {
        method: 'POST',
        body: { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' },
      });
    } catch (err) {
      const status = err instanceof ProviderError ? err.extra.status : undefined;
      const unanswered = err instanceof ProviderError && (status === undefined || status >= 500);
      // No batch will read the upload (students' essays): it is not left at the provider.
      if (!(opts.keepUploadUnanswered && unanswered)) await this.deleteFile(provider, adapter, fileId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The batch made from an uploaded file, found in the provider's list of batches (`GET /batches`,
   * newest first, 100 a page) among those created since `sinceMs`; null only when the list was read
   * back past `sinceMs` (or to its end) without it. A page that is not a list is a malformed answer;
   * a batch still not found after `maxPages` pages is an error, not "none made".
   */
  async findBatchByFile(provider: EnabledProvider, adapter: DialectAdapter, fileId: string, sinceMs: number, maxPages = 50): Promise<BatchObject | null> {
    const found = await this.findInList<BatchObject>(provider, adapter, { path: '/batches', query: '', of: 'batches' }, (b) => b?.input_file_id === fileId, sinceMs, maxPages);
    if (found === undefined) throw new ProviderError('fatal', 'batch_failed', `the batch made from upload ${fileId} was not found in ${maxPages} pages of batches`);
    return found;
  }

  /**
   * The id of the upload (purpose "batch") sent with the file name `filename`, found in the
   * provider's list of files (`GET /files`, newest first, 100 a page) among those uploaded since
   * `sinceMs`; null only when the list was read back past `sinceMs` (or to its end) without it.
   */
  async findFileByName(provider: EnabledProvider, adapter: DialectAdapter, filename: string, sinceMs: number, maxPages = 50): Promise<string | null> {
    const found = await this.findInList<ListedFile>(provider, adapter, { path: '/files', query: 'purpose=batch&', of: 'files' }, (f) => f?.filename === filename, sinceMs, maxPages);
    if (found === undefined) throw new ProviderError('fatal', 'batch_failed', `the upload ${filename} was not found in ${maxPages} pages of files`);
    return found?.id ?? null;
  }

  /**
   * The first item of a provider's list (newest first, 100 a page, paged by `after`) that `match`
   * takes; null when the list was read back past `sinceMs` (or to its end) without one, undefined
   * when it was not found within `maxPages` pages. A page that is not a list is a malformed answer.
   */
  private async findInList<T extends { id: string; created_at?: number | null }>(
    provider: EnabledProvider,
    adapter: DialectAdapter,
    list: { path: string; query: string; of: string },
    match: (item: T | null) => boolean,
    sinceMs: number,
    maxPages: number,
  ): Promise<T | null | undefined> {
    let after: string | null = null;
    for (let page = 0; page < maxPages; page++) {
      const query: string = `?${list.query}limit=100${after === null ? '' : `&after=${encodeURIComponent(after)}`}`;
      const got: { data?: Array<T | null>; has_more?: boolean } | null = await this.batchApi<{ data?: Array<T | null>; has_more?: boolean } | null>(provider, adapter, `${list.path}${query}`, { method: 'GET' });
      if (!got || !Array.isArray(got.data)) throw new ProviderError('retryable', 'malformed_response', `the list of ${list.of} is not a list`);
      const found = got.data.find((x) => x !== null && typeof x?.id === 'string' && match(x));
      if (found) return found;
      const last = got.data.at(-1);
      if (!got.has_more || !last || (typeof last.created_at === 'number' && last.created_at * 1000 < sinceMs)) return null;
      after = last.id;
    }
    return undefined;
  }

  getBatch(provider: EnabledProvider, adapter: DialectAdapter, id: string): Promise<BatchObject> {
    return this.batchApi<BatchObject>(provider, adapter, `/batches/${encodeURIComponent(id)}`, { method: 'GET' });
  }

  /**
   * Asks the provider to stop a batch (`POST /batches/:id/cancel`): the requests it has not run
   * are not run, nor billed; those it ran stay in its output file, billed.
   */
  cancelBatch(provider: EnabledProvider, adapter: DialectAdapter, id: string): Promise<BatchObject> {
    return this.batchApi<BatchObject>(provider, adapter, `/batches/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  fileContent(provider: EnabledProvider, adapter: DialectAdapter, id: string): Promise<string> {
    return this.batchApi<string>(provider, adapter, `/files/${encodeURIComponent(id)}/content`, { method: 'GET' });
  }

  /** Deletes a file of the Batch API (`DELETE /files/:id`): the requests uploaded, or a batch's results. */
  async deleteFile(provider: EnabledProvider, adapter: DialectAdapter, id: string): Promise<void> {
    await this.batchApi<unknown>(provider, adapter, `/files/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /**
   * A streaming call. Yields deltas as they arrive. An error before any delta is thrown from the
   * first `next()`, so the caller can still fail over; one after is thrown mid-iteration.
   */
  async *stream(provider: EnabledProvider, adapter: DialectAdapter, model: CatalogModel, params: ChatParams, signal?: AbortSignal): AsyncGenerator<StreamEvent> {
    const deadline = new CallDeadline(this.cfg.totalTimeoutMs, signal);
    try {
      yield* this.streamWithin(provider, adapter, model, params, deadline);
    } finally {
      deadline.clear();
    }
  }

  private async *streamWithin(provider: EnabledProvider, adapter: DialectAdapter, model: CatalogModel, params: ChatParams, deadline: CallDeadline): AsyncGenerator<StreamEvent> {
    const res = await this.send(provider, adapter, model, { ...params, stream: true }, deadline);
    if (res.statusCode >= 400) {
      const text = await res.body.text().catch(() => '');
      throw adapter.classifyError(res.statusCode, parseJson(text) ?? text, retryAfterMs(res.headers));
    }
    let buffer = '';
    // Bytes, decoded as a stream: a character cut between two reads (a Chinese one is three bytes)
    // waits for the rest of its bytes. Decoded a read at a time, each half became U+FFFD, relayed
    // and cached.
    const utf8 = new StringDecoder('utf8');
    let done = false;
    let finished = false;
    // A content-filter stop: the stream is read to its end first, for the usage the provider bills it
    // with (Zhipu's in the same chunk, the others' in a chunk of their own after it).
    let filtered: string | undefined;
    /** the provider's finish reason for a failure mid-answer (isFailureFinish): the stream is cut */
    let broke: string | undefined;
    let usage: Usage | null = null;
    let lastChunkAt = performance.now();
    // Whether the caller was still holding the last event when the total timeout fired (a slow
    // reader): then the stream was not what was slow.
    let withCaller = false;
    let firedWithCaller = false;
    const onDeadline = () => {
      if (withCaller) firedWithCaller = true;
    };
    deadline.signal.addEventListener('abort', onDeadline);
    try {
      for await (const chunk of res.body) {
        buffer += utf8.write(chunk as Buffer);
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (!line.startsWith('data:')) continue; // blank separators and ": keep-alive" comments
          lastChunkAt = performance.now(); // (a keep-alive is no sign the model still answers)
          const data = line.slice(5).trim();
          if (data === '[DONE]') {
            done = true;
            continue;
          }
          const json = parseJson(data) as {
            choices?: Array<{ delta?: { content?: unknown }; finish_reason?: string | null }>;
            usage?: unknown;
            error?: unknown;
          } | null;
          if (!json) continue;
          const reported = json.usage ? adapter.parseUsage(json.usage) : null;
          if (reported) usage = reported;
          if (filtered !== undefined || broke !== undefined) continue; // nothing after the filter's stop (or a failure) is relayed
          if (json.error) throw adapter.classifyError(inBandStatus(json.error), json, undefined);
          const choice = json.choices?.[0];
          if (choice) {
            if (adapter.isContentFilterFinish(choice.finish_reason)) {
              filtered = String(choice.finish_reason);
              continue;
            }
            if (adapter.isFailureFinish?.(choice.finish_reason)) {
              broke = String(choice.finish_reason);
              continue;
            }
            const text = typeof choice.delta?.content === 'string' ? choice.delta.content.replace(/\u0000/g, '') : '';
            if (text.length > 0) {
              withCaller = true;
              yield { type: 'delta', text };
              withCaller = false;
            }
            if (choice.finish_reason) {
              finished = true;
              withCaller = true;
              yield { type: 'finish', reason: choice.finish_reason };
              withCaller = false;
            }
          }
          if (reported) {
            withCaller = true;
            yield { type: 'usage', usage: reported };
            withCaller = false;
          }
        }
      }
    } catch (err) {
      if (err instanceof ProviderError) throw err;
      if (filtered !== undefined) throw contentFiltered(filtered, usage);
      if (broke !== undefined) throw brokeOff(broke, usage);
      const e = networkError(err, deadline);
      // The connection broke while the answer was streaming in.
      if (e.reason === 'network') throw new ProviderError('retryable', 'stream_cut', 'the provider closed the stream before it finished');
      // Our own limit on a stream still arriving (its last chunk a moment ago): the model works, the
      // request was long. One that had gone quiet stalled: a failure of the model like any timeout.
      if (deadline.timedOut && (firedWithCaller || performance.now() - lastChunkAt <= stillArrivingMs(this.cfg.totalTimeoutMs))) {
        throw new ProviderError('retryable', 'total_timeout', 'the stream went on past LLM_TOTAL_TIMEOUT_MS');
      }
      throw e;
    }
    finally {
      deadline.signal.removeEventListener('abort', onDeadline);
    }
    if (filtered !== undefined) throw contentFiltered(filtered, usage);
    if (broke !== undefined) throw brokeOff(broke, usage);
    if (!done && !finished) {
      throw new ProviderError('retryable', 'stream_cut', 'the provider closed the stream before it finished');
    }
  }
}

/**
 * A stream cut by its total timeout was still arriving when its last chunk came at most this long
 * before: 5 s, or a quarter of the total timeout when that is shorter.
 */
export function stillArrivingMs(totalTimeoutMs: number): number {
  return Math.min(5_000, totalTimeoutMs / 4);
}

/** An answer the provider cut itself by a failure (isFailureFinish), with the usage it billed (null when none came). */
function brokeOff(finishReason: string, usage: Usage | null): ProviderError {
  return new ProviderError('retryable', 'interrupted', `the provider failed mid-answer (${finishReason})`, { status: 200, usage });
}

/** A stream the provider's content filter stopped, with the usage it billed (null when none came). */
function contentFiltered(finishReason: string, usage: Usage | null): ProviderError {
  return new ProviderError('content_rejected', 'content_filter', `provider stopped the stream (${finishReason})`, { status: 200, usage });
}

/** A page of `GET /batches`. */
/** A file object of `GET /files` (with the name it was uploaded with). */
interface ListedFile {
  id: string;
  filename?: string;
  created_at?: number;
}

export interface BatchObject {
  id: string;
  status: string;
  /** seconds since the epoch */
  created_at?: number;
  input_file_id?: string | null;
  output_file_id?: string | null;
  error_file_id?: string | null;
  errors?: unknown;
}

/**
 * Reads a chat completion answer (a real-time one, or one line of a batch's output): errors by
 * the dialect's taxonomy; blank or filtered content is an error that still carries its usage.
 */
export function readCompletion(adapter: DialectAdapter, status: number, text: string | unknown, retryAfter?: number): Completion {
  const body = typeof text === 'string' ? parseJson(text) : text;
  if (status >= 400) throw adapter.classifyError(status, body ?? text, retryAfter);
  const json = body as {
    choices?: Array<{ message?: { content?: unknown }; finish_reason?: string }>;
    usage?: unknown;
    error?: unknown;
  } | null;
  if (!json || typeof json !== 'object') {
    throw new ProviderError('retryable', 'malformed_response', 'provider answered 200 with a body that is not JSON', { status });
  }
  if (json.error) throw adapter.classifyError(inBandStatus(json.error), json, undefined);
  const usage = adapter.parseUsage(json.usage);
  const choice = json.choices?.[0];
  // NUL cannot be stored in PostgreSQL text or jsonb: a model that emits one must not break the settlement.
  const content = typeof choice?.message?.content === 'string' ? choice.message.content.replace(/\u0000/g, '') : '';
  const finishReason = choice?.finish_reason ?? 'stop';
  if (adapter.isContentFilterFinish(finishReason)) {
    throw new ProviderError('content_rejected', 'content_filter', `provider stopped the answer (${finishReason})`, { status: 200, usage });
  }
  if (adapter.isFailureFinish?.(finishReason)) throw brokeOff(finishReason, usage);
  if (content.trim() === '') {
    throw new ProviderError('fallback', 'blank_output', 'provider answered with blank content', { status: 200, usage });
  }
  return { content, finishReason, usage };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Retry-After in seconds or as an HTTP date; retry-after-ms when a provider sends it. */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>): number | undefined {
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const ra = headers['retry-after'];
  if (typeof ra !== 'string') return undefined;
  if (/^\d+(\.\d+)?$/.test(ra.trim())) return Math.ceil(Number(ra) * 1000);
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function networkError(err: unknown, deadline?: CallDeadline): ProviderError {
  if (err instanceof ProviderError) return err;
  const e = err as { code?: string; name?: string; message?: string };
  if (deadline?.callerWentAway) return new ProviderError('fatal', 'cancelled', 'the caller went away', { sent: true });
  if (deadline?.timedOut || e.name === 'TimeoutError') return new ProviderError('retryable', 'timeout', 'the call took longer than LLM_TOTAL_TIMEOUT_MS');
  if (err instanceof undiciErrors.ConnectTimeoutError) return new ProviderError('retryable', 'connect_timeout', 'could not connect in time');
  if (err instanceof undiciErrors.HeadersTimeoutError) return new ProviderError('retryable', 'timeout', 'no answer within LLM_FIRST_BYTE_TIMEOUT_MS');
  if (err instanceof undiciErrors.BodyTimeoutError) return new ProviderError('retryable', 'timeout', 'the answer stalled');
  if (e.name === 'AbortError') return new ProviderError('retryable', 'timeout', 'the call was aborted');
  return new ProviderError('retryable', 'network', `network error: ${e.code ?? e.name ?? 'unknown'}`);
}

/**
 * The HTTP status an error sent inside a 200 answer (or as a stream's event) stands for: its own
 * numeric status or code when it carries one, 400 when it says the request was invalid, otherwise
 * 500 — a provider's fault, retried and failed over (it was read as a 400: the caller got a 400
 * for a passing fault at the provider, and no other model was tried).
 */
function inBandStatus(error: unknown): number {
  if (!error || typeof error !== 'object') return 500;
  const e = error as { status?: unknown; code?: unknown; type?: unknown };
  for (const v of [e.status, e.code]) {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{3}$/.test(v) ? Number(v) : NaN;
    if (n >= 400 && n <= 599) return n;
  }
  return typeof e.type === 'string' && /invalid_request/i.test(e.type) ? 400 : 500;
}
