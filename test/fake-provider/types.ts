/**
 * The fake provider's public types: what a client sends (chat bodies), what the fake records, the
 * responder hook, the Batch API objects, the start options and the {@link FakeProvider} interface
 * itself. Types only; the scripted {@link Step}s live in steps.ts with their validation.
 */
import type { Dialect } from './presets';
import type { EnqueueOptions, Step } from './steps';

/** One part of a multi-part message content (`[{ type: 'text', text: '…' }]`). */
export interface ContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

/** A message as a client sent it. */
export interface ChatMessage {
  role: string;
  content?: string | ContentPart[] | null;
  [key: string]: unknown;
}

/**
 * A chat-completions request body as a client sent it. The fields the fake provider reads are typed;
 * anything else a client sends is kept under the index signature. A body that was not a JSON object
 * with a string `model` and an array `messages` is recorded with `model: ''`, `messages: []` and the
 * raw text (first 10,000 characters) under `unparsed`.
 */
export interface ChatRequestBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  response_format?: { type: string; [key: string]: unknown } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  [key: string]: unknown;
}

export interface RecordedRequest {
  dialect: Dialect;
  /** The request path, without the query string. */
  path: string;
  model: string;
  body: ChatRequestBody;
  headers: Record<string, string | string[] | undefined>;
  /** `Date.now()` when the body had been read (for a batch line: when the line was processed). */
  at: number;
  /**
   * Set when the request was a line of a batch (the batch's id): `path` is then the dialect's chat
   * path, `headers` those of the `POST /batches` request. Lines that are not a request at all (not
   * JSON, no custom_id or body) are not recorded.
   */
  batchId?: string;
}

/** What a {@link Responder} sees: the messages with their content flattened to text. */
export interface ResponderRequest {
  dialect: Dialect;
  model: string;
  messages: Array<{ role: string; content: string }>;
  /** `response_format.type` is `json_object` (or `json_schema`). */
  jsonMode: boolean;
  body: ChatRequestBody;
}

/** Generates the content of default answers (a thrown error becomes a 500). */
export type Responder = (req: ResponderRequest) => string | Promise<string>;

/** A file of the Batch API, as `POST /files` and `GET /files/:id` answer it. */
export interface FileObject {
  /** `file-batch-<uuid>` for uploads, `file-batch_output-<uuid>` / `file-batch_error-<uuid>` for a batch's results. */
  id: string;
  object: 'file';
  bytes: number;
  /** Unix seconds. */
  created_at: number;
  filename: string;
  /** 'batch' for uploads, 'batch_output' for the output and error files of a batch. */
  purpose: 'batch' | 'batch_output';
}

export type BatchStatus = 'validating' | 'in_progress' | 'completed' | 'failed' | 'expired' | 'cancelling' | 'cancelled';

/** How {@link FakeProvider.failNextBatch} makes a batch end. */
export type BatchFailure = 'failed' | 'expired';

/** One entry of a batch's `errors.data`. */
export interface BatchError {
  code: string;
  message: string;
  line: number | null;
  param: string | null;
}

/** A batch, as `POST /batches` and `GET /batches/:id` answer it (times in unix seconds). */
export interface BatchObject {
  /** `batch_<uuid>`. */
  id: string;
  object: 'batch';
  endpoint: string;
  errors: { object: 'list'; data: BatchError[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

export interface FakeProviderOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Default delay before answering, in ms (default 0); reset() returns to it. */
  latencyMs?: number;
  /** How many requests {@link FakeProvider.requests} keeps (oldest dropped first); default 10,000. */
  maxRecordedRequests?: number;
  /** Least time from a batch's creation to its end, in ms (default 0); reset() returns to it. */
  batchLatencyMs?: number;
}

export interface FakeProvider {
  /** Where the server listens, e.g. `http://127.0.0.1:43121`. */
  readonly url: string;
  /** The base URL a real client of that provider would configure (the client appends /chat/completions). */
  baseUrl(d: Dialect): string;
  /** Queue steps for a dialect (FIFO); with `opts.model` only requests for that model consume them. */
  enqueue(d: Dialect, steps: Step | Step[], opts?: EnqueueOptions): void;
  /** Default delay before answering (0 by default). */
  setLatency(ms: number): void;
  /** Content generator for default answers; null restores `Fake answer from <model>.`. */
  setResponder(fn: Responder | null): void;
  /** Context window (prompt + max_tokens) of a model, for the automatic context-length error. */
  setContextWindow(model: string, tokens: number): void;
  /** Chat requests received, in order (the last `maxRecordedRequests`). */
  readonly requests: RecordedRequest[];
  /** Chat requests received since start or the last reset(), including any dropped from `requests`. */
  readonly requestCount: number;
  /**
   * Least time from a batch's creation to its end ('completed', or the scripted failure): a batch
   * whose lines are all done stays 'in_progress' until then. 0 by default.
   */
  setBatchLatency(ms: number): void;
  /**
   * How long `POST /batches` takes to answer: the batch is created (and runs) at once, its answer
   * sent `ms` later, as a provider slow to answer would (a caller that dies meanwhile never learns
   * the batch's id). 0 by default; reset() sets it back.
   */
  setBatchCreateDelay(ms: number): void;
  /**
   * How long a new batch stays out of `GET /batches`: the list lags behind creations, as an
   * eventually consistent one does (`GET /batches/:id` knows the batch at once). 0 by default;
   * reset() sets it back.
   */
  setBatchListLag(ms: number): void;
  /**
   * The next batch created for that dialect (FIFO when called more than once) ends with that status
   * after the batch latency, with `errors` and no output file; its lines are not processed (no steps
   * consumed, no usage, nothing recorded). DeepSeek has no batch API: throws. With `afterLines`
   * (expired only), the batch runs that many lines first, as a real provider's batch that ran out of
   * its window partway does: those are answered in its output file (and billed), each other line is
   * in its error file with `batch_expired`.
   */
  failNextBatch(d: Dialect, outcome: BatchFailure, afterLines?: number): void;
  /** The batches since start or the last reset(), in creation order, each as `GET /batches/:id` would answer now. */
  readonly batches: readonly BatchObject[];
  /** The Batch API files it holds now (uploads and batch results that no `DELETE /files/:id` removed), by id. */
  readonly files: readonly string[];
  /**
   * Clears queues, requests, prefix caches, responder, context windows, latency (to the start value),
   * files, batches, scripted batch failures and the batch latency (to the start value).
   */
  reset(): void;
  /** Stops the server, destroying open sockets (hanging requests included). */
  close(): Promise<void>;
}
