/**
 * A fake model provider: one `node:http` server that speaks the OpenAI-style chat-completions
 * dialects of DeepSeek, Zhipu (BigModel), DashScope (Alibaba Model Studio, compatible mode) and
 * OpenAI, for the gateway's tests and benchmarks.
 *
 * What it does, per request to a chat route:
 * 1. records the request ({@link FakeProvider.requests});
 * 2. answers the dialect's 401 when `Authorization: Bearer …` is missing or empty;
 * 3. plays the next scripted {@link Step} queued for that dialect (and model), if any;
 * 4. otherwise answers like the real provider would: DashScope's JSON-mode rule, the context-window
 *    check, then a completion whose usage is counted with the real o200k_base tokenizer and whose
 *    cached-token count follows the provider's prefix cache (per dialect + model + API key).
 *
 * The DashScope, OpenAI and Zhipu dialects also have the OpenAI-compatible Batch API (`POST /files`,
 * `POST /batches`, `GET /batches/:id`, `GET /files/:id/content`, under the dialect's base URL): each
 * line of a batch goes through the same completion logic as a real-time request ({@link Call},
 * `answer()`), without latency, and lands in the batch's output or error file. DeepSeek has no batch
 * API (404). See {@link FakeProvider.setBatchLatency} and {@link FakeProvider.failNextBatch}.
 *
 * A benchmark in another process can script it over HTTP (`/_fake/*`, see {@link startFakeProvider});
 * `main.ts` beside this file runs it as a standalone server.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { getEncoding, type Tiktoken } from 'js-tiktoken';
import {
  BEHAVIOUR_PRESETS,
  contextLengthPreset,
  dashScopeJsonWordPreset,
  DIALECTS,
  isPreset,
  materializePreset,
  PRESETS,
  type Dialect,
  type Preset,
} from './presets';

import { gradingAnswer } from './grading-responder';
export { PRESETS, DIALECTS, type Dialect, type Preset } from './presets';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

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

/**
 * One scripted answer. Queued per dialect with {@link FakeProvider.enqueue} and played in order.
 * A step that produces a completion ('ok', 'invalid-json', 'blank-json') is streamed when the request
 * asked for a stream; a 'stream' step on a non-streaming request answers as a plain completion.
 * Lines of a batch consume steps like requests do, without any latency; there 'hang', 'reset' and
 * 'stream' make no sense and answer the dialect's 500 `server_error` preset instead.
 */
export type Step =
  /**
   * A completion. `content` defaults to the responder's (or the default) answer; `latencyMs` replaces
   * the default latency; `blankLinesBefore` sends the headers at once, then that many "\n" lines spread
   * over the latency, then the JSON body (DeepSeek does this under load). Ignored when streaming.
   */
  | {
      kind: 'ok';
      content?: string;
      latencyMs?: number;
      finishReason?: string;
      blankLinesBefore?: number;
      /** Report this many times the real prompt and completion tokens (a provider that over-bills). */
      inflateUsage?: number;
    }
  /** Any status and body; a string body is sent verbatim. Headers default to JSON content type. */
  | { kind: 'error'; status: number; body: unknown; headers?: Record<string, string>; latencyMs?: number }
  /** A real error of this dialect from presets.ts (e.g. 'insufficient_balance'); headers override its own. */
  | { kind: 'preset'; name: string; headers?: Record<string, string> }
  /**
   * A stream: `content` split into about `chunks` pieces (default 4), `chunkDelayMs` between writes,
   * `keepAliveComments` ": keep-alive" lines first; `cutAfterChunks` destroys the socket after that
   * many content chunks (no finish chunk, no [DONE]).
   */
  | {
      kind: 'stream';
      content?: string;
      chunks?: number;
      chunkDelayMs?: number;
      cutAfterChunks?: number;
      keepAliveComments?: number;
      finishReason?: string;
    }
  /** DeepSeek's JSON-mode failure: 200, content of only spaces and newlines, finish_reason "stop". */
  | { kind: 'blank-json' }
  /** 200 with content that is not valid JSON (default: a truncated JSON object). */
  | { kind: 'invalid-json'; content?: string }
  /** Accept the request and never answer (for timeout tests); close() ends it. */
  | { kind: 'hang' }
  /** Destroy the socket at once, without an answer. */
  | { kind: 'reset' };

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

export type BatchStatus = 'validating' | 'in_progress' | 'completed' | 'failed' | 'expired';

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
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

export interface EnqueueOptions {
  /** Only requests for this model consume the steps; others pass them by. */
  model?: string;
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
   * The next batch created for that dialect (FIFO when called more than once) ends with that status
   * after the batch latency, with `errors` and no output file; its lines are not processed (no steps
   * consumed, no usage, nothing recorded). DeepSeek has no batch API: throws.
   */
  failNextBatch(d: Dialect, outcome: BatchFailure): void;
  /** The batches since start or the last reset(), in creation order, each as `GET /batches/:id` would answer now. */
  readonly batches: readonly BatchObject[];
  /**
   * Clears queues, requests, prefix caches, responder, context windows, latency (to the start value),
   * files, batches, scripted batch failures and the batch latency (to the start value).
   */
  reset(): void;
  /** Stops the server, destroying open sockets (hanging requests included). */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Dialect facts
// ---------------------------------------------------------------------------------------------

/** Path prefix that baseUrl() returns, per dialect. */
const BASE_PATHS: Record<Dialect, string> = {
  deepseek: '/deepseek',
  zhipu: '/zhipu/api/paas/v4',
  dashscope: '/dashscope/compatible-mode/v1',
  openai: '/openai/v1',
};

const ROUTES = new Map<string, Dialect>([
  ['/deepseek/chat/completions', 'deepseek'],
  ['/deepseek/v1/chat/completions', 'deepseek'],
  ['/zhipu/api/paas/v4/chat/completions', 'zhipu'],
  ['/dashscope/compatible-mode/v1/chat/completions', 'dashscope'],
  ['/openai/v1/chat/completions', 'openai'],
]);

/** The dialects with an OpenAI-compatible Batch API (DeepSeek has none). */
export const BATCH_DIALECTS: readonly Dialect[] = ['zhipu', 'dashscope', 'openai'];

/** The only batch endpoint and completion window the fake provider accepts. */
export const BATCH_ENDPOINT = '/v1/chat/completions';
export const BATCH_COMPLETION_WINDOW = '24h';

/**
 * Default context windows (tokens) of the providers' current models (deepseek-flash, glm-5.3,
 * qwen-flash, gpt-6-luna; 2026-11), overridable per model with setContextWindow().
 */
export const DEFAULT_CONTEXT_WINDOWS: Record<Dialect, number> = {
  deepseek: 1_000_000,
  zhipu: 1_000_000,
  dashscope: 1_000_000,
  openai: 1_050_000,
};

/**
 * Prefix-cache granularity: cached tokens are a multiple of `unit`, and 0 below `min`. DashScope's
 * implicit cache starts at 1,024 tokens; DeepSeek states no unit size any more (64 is kept).
 */
export const PREFIX_CACHE_RULES: Record<Dialect, { unit: number; min: number }> = {
  deepseek: { unit: 64, min: 64 },
  dashscope: { unit: 64, min: 1024 },
  zhipu: { unit: 64, min: 64 },
  openai: { unit: 128, min: 1024 },
};

/** Tokens added per message (role and delimiters) and once per prompt (the reply primer). */
export const TOKENS_PER_MESSAGE = 4;
export const TOKENS_PER_PROMPT = 3;

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

let encoder: Tiktoken | undefined;
const tokenCache = new Map<string, number[]>();
const TOKEN_CACHE_MAX_TOKENS = 2_000_000; // about 16 MB of token ids
let tokenCacheSize = 0;

/**
 * The o200k_base tokens of a text; special-token strings (e.g. "<|endoftext|>") count as plain text
 * (for any other text this is exactly `encode(text)`). Results are kept in a least-recently-used
 * cache because prompts repeat their instructions.
 */
export function encodeTokens(text: string): readonly number[] {
  const hit = tokenCache.get(text);
  if (hit) {
    tokenCache.delete(text);
    tokenCache.set(text, hit);
    return hit;
  }
  encoder ??= getEncoding('o200k_base');
  const tokens = encodeByPieces(encoder, text);
  tokenCache.set(text, tokens);
  tokenCacheSize += tokens.length;
  while (tokenCacheSize > TOKEN_CACHE_MAX_TOKENS) {
    const oldest = tokenCache.entries().next();
    if (oldest.done) break;
    tokenCache.delete(oldest.value[0]);
    tokenCacheSize -= oldest.value[1].length;
  }
  return tokens;
}

/**
 * Byte-pair encoding is the expensive part, and it works on the pieces the encoding's regex cuts
 * the text into, each on its own; the same piece always gives the same tokens. Remembering pieces
 * (words, phrases between punctuation) makes new essays cheap to count, so the fake provider is
 * not what limits a benchmark. Same tokens as encoding the whole text at once.
 */
const pieceCache = new Map<string, number[]>();
const PIECE_CACHE_MAX = 400_000;

function encodeByPieces(enc: Tiktoken, text: string): number[] {
  const pattern = (enc as unknown as { patStr: string }).patStr;
  const out: number[] = [];
  for (const m of text.matchAll(new RegExp(pattern, 'ug'))) {
    const piece = m[0];
    let tokens = pieceCache.get(piece);
    if (!tokens) {
      tokens = enc.encode(piece, [], []);
      if (pieceCache.size >= PIECE_CACHE_MAX) pieceCache.clear();
      pieceCache.set(piece, tokens);
    }
    for (const t of tokens) out.push(t);
  }
  return out;
}

/** Number of o200k_base tokens in a text. */
export function countTokens(text: string): number {
  return encodeTokens(text).length;
}

/** prompt_tokens as the fake provider reports them: Σ (tokens(content) + 4) + 3. */
export function countPromptTokens(messages: ReadonlyArray<{ content: string }>): number {
  let n = TOKENS_PER_PROMPT;
  for (const m of messages) n += countTokens(m.content) + TOKENS_PER_MESSAGE;
  return n;
}

// Token ids outside the o200k vocabulary that stand for the chat template around each message, so
// that the prompt's token sequence is exactly prompt_tokens long.
const T_START = 0x100000;
const T_SEP = 0x100001;
const T_END = 0x100002;
const T_ROLE_BASE = 0x100010;

function roleToken(role: string): number {
  let h = 0;
  for (let i = 0; i < role.length; i++) h = (h * 31 + role.charCodeAt(i)) & 0xffff;
  return T_ROLE_BASE + h;
}

/** The prompt as one token sequence: per message [START, role, SEP, …content, END], then [START, assistant, SEP]. */
function promptSequence(messages: ReadonlyArray<{ role: string; tokens: readonly number[] }>): number[] {
  const seq: number[] = [];
  for (const m of messages) {
    seq.push(T_START, roleToken(m.role), T_SEP);
    for (const t of m.tokens) seq.push(t);
    seq.push(T_END);
  }
  seq.push(T_START, roleToken('assistant'), T_SEP);
  return seq;
}

// ---------------------------------------------------------------------------------------------
// Prefix cache
// ---------------------------------------------------------------------------------------------

const CACHE_BLOCK = 64; // the greatest common divisor of the dialects' units
const PROMPTS_PER_CACHE = 2000;
const MAX_CACHES = 1000;

/**
 * Remembers the last {@link PROMPTS_PER_CACHE} prompts of one (dialect, model, key) as a trie of
 * 64-token blocks and tells how many leading full blocks a new prompt shares with any of them.
 * Each trie node is keyed by its parent's id and its block's tokens (exact, no hashing) and counts
 * the remembered prompts that pass through it, so evicting the oldest prompt frees its nodes.
 */
class PrefixCache {
  private readonly nodes = new Map<string, { id: number; refs: number }>();
  private readonly prompts: string[][] = [];
  private head = 0; // index of the oldest prompt in `prompts` (a ring once full)
  private nextId = 1;

  /** Records the prompt and returns the tokens of its longest full-block prefix seen before. */
  lookupAndAdd(seq: readonly number[]): number {
    const blocks = Math.floor(seq.length / CACHE_BLOCK);
    const path: string[] = [];
    let parent = 0;
    let matched = 0;
    let matching = true;
    for (let b = 0; b < blocks; b++) {
      const key = `${parent}:${blockKey(seq, b * CACHE_BLOCK)}`;
      let node = matching ? this.nodes.get(key) : undefined;
      if (node) {
        matched++;
        node.refs++;
      } else {
        matching = false; // no node below a missing one can exist
        node = { id: this.nextId++, refs: 1 };
        this.nodes.set(key, node);
      }
      path.push(key);
      parent = node.id;
    }
    this.remember(path);
    return matched * CACHE_BLOCK;
  }

  private remember(path: string[]): void {
    if (this.prompts.length < PROMPTS_PER_CACHE) {
      this.prompts.push(path);
      return;
    }
    for (const key of this.prompts[this.head]) {
      const node = this.nodes.get(key);
      if (node && --node.refs <= 0) this.nodes.delete(key);
    }
    this.prompts[this.head] = path;
    this.head = (this.head + 1) % PROMPTS_PER_CACHE;
  }
}

/** A block of 64 token ids (each < 2^32) as a 128-character string. */
function blockKey(seq: readonly number[], start: number): string {
  const codes = new Array<number>(CACHE_BLOCK * 2);
  for (let i = 0; i < CACHE_BLOCK; i++) {
    const t = seq[start + i];
    codes[2 * i] = t >>> 16;
    codes[2 * i + 1] = t & 0xffff;
  }
  return String.fromCharCode(...codes);
}

// ---------------------------------------------------------------------------------------------
// Step validation (shared by enqueue() and POST /_fake/enqueue)
// ---------------------------------------------------------------------------------------------

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isDialect(v: unknown): v is Dialect {
  return typeof v === 'string' && (DIALECTS as readonly string[]).includes(v);
}

function optNumber(o: Record<string, unknown>, key: string, min = 0): void {
  const v = o[key];
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new TypeError(`step '${String(o.kind)}': ${key} must be a number >= ${min}`);
  }
}

function optString(o: Record<string, unknown>, key: string): void {
  const v = o[key];
  if (v !== undefined && typeof v !== 'string') throw new TypeError(`step '${String(o.kind)}': ${key} must be a string`);
}

function optHeaders(o: Record<string, unknown>): void {
  const h = o.headers;
  if (h === undefined) return;
  if (!isRecord(h) || Object.values(h).some((v) => typeof v !== 'string')) {
    throw new TypeError(`step '${String(o.kind)}': headers must be an object of strings`);
  }
}

/** Checks a step (which may come from JSON) and returns it typed; throws a TypeError naming the problem. */
export function validateStep(d: Dialect, step: unknown): Step {
  if (!isRecord(step)) throw new TypeError('a step must be an object with a kind');
  switch (step.kind) {
    case 'ok':
      optString(step, 'content');
      optString(step, 'finishReason');
      optNumber(step, 'latencyMs');
      optNumber(step, 'blankLinesBefore');
      optNumber(step, 'inflateUsage');
      break;
    case 'error':
      if (typeof step.status !== 'number' || !Number.isInteger(step.status) || step.status < 100 || step.status > 599) {
        throw new TypeError("step 'error': status must be an HTTP status (100-599)");
      }
      if (!('body' in step)) throw new TypeError("step 'error': body is required");
      optHeaders(step);
      optNumber(step, 'latencyMs');
      break;
    case 'preset':
      if (typeof step.name !== 'string' || !isPreset(d, step.name)) {
        const known = [...Object.keys(PRESETS[d]), ...BEHAVIOUR_PRESETS[d]].join(', ');
        throw new TypeError(`step 'preset': ${d} has no preset '${String(step.name)}' (known: ${known})`);
      }
      optHeaders(step);
      break;
    case 'stream':
      optString(step, 'content');
      optString(step, 'finishReason');
      optNumber(step, 'chunks', 1);
      optNumber(step, 'chunkDelayMs');
      optNumber(step, 'cutAfterChunks');
      optNumber(step, 'keepAliveComments');
      break;
    case 'invalid-json':
      optString(step, 'content');
      break;
    case 'blank-json':
    case 'hang':
    case 'reset':
      break;
    default:
      throw new TypeError(`unknown step kind '${String(step.kind)}'`);
  }
  return step as Step;
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

interface Queued {
  step: Step;
  model?: string;
}

/**
 * A chat call, however it arrived: a request to a chat route or a line of a batch. Everything the
 * completion logic ({@link FakeProviderServer.answer}) needs, and no HTTP objects.
 */
interface Call {
  dialect: Dialect;
  body: ChatRequestBody;
  /** The body is a chat request (a JSON object with a string `model` and an array `messages`). */
  valid: boolean;
  model: string;
  /** The Authorization header, part of the prefix-cache key. */
  auth: string;
  messages: Array<{ role: string; content: string }>;
  jsonMode: boolean;
  streaming: boolean;
  includeUsage: boolean;
}

function makeCall(dialect: Dialect, body: ChatRequestBody, valid: boolean, auth: string): Call {
  return {
    dialect,
    body,
    valid,
    model: body.model,
    auth,
    messages: body.messages.map((m) => ({ role: String(m.role), content: contentText(m.content) })),
    jsonMode: body.response_format?.type === 'json_object' || body.response_format?.type === 'json_schema',
    streaming: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
  };
}

interface Completion {
  content: string;
  finishReason: string;
  /** Delay before the first byte; default: the server's latency. */
  latencyMs?: number;
  blankLinesBefore?: number;
  chunks?: number;
  chunkDelayMs?: number;
  cutAfterChunks?: number;
  keepAliveComments?: number;
  inflateUsage?: number;
}

type Usage = Record<string, number | Record<string, number>>;

/**
 * What the completion logic answers to a call, before anything is sent:
 * - 'completion': a 200 completion; `body` is the `chat.completion` object a non-streaming request
 *   gets (a streaming request gets the same content, id and usage as chunks);
 * - 'reply': a status and a body (a string is sent verbatim), e.g. a preset or an error step;
 * - 'hang' / 'reset': no answer (over HTTP only; a batch line gets a 500 instead).
 */
type Answer =
  | { kind: 'completion'; completion: Completion; usage: Usage; id: string; created: number; body: Record<string, unknown> }
  | { kind: 'reply'; status: number; body: unknown; headers?: Record<string, string>; latencyMs: number }
  | { kind: 'hang' }
  | { kind: 'reset' };

/** How a call arrived: over HTTP, or as a line of a batch (no streaming, no socket to hang or reset). */
type Via = 'http' | 'batch';

interface StoredFile {
  dialect: Dialect;
  info: FileObject;
  content: Buffer;
}

interface BatchState {
  dialect: Dialect;
  id: string;
  endpoint: string;
  inputFileId: string;
  completionWindow: string;
  metadata: Record<string, string> | null;
  /** Headers of the `POST /batches` request (recorded with each line; their Authorization keys the prefix cache). */
  headers: Record<string, string | string[] | undefined>;
  auth: string;
  /** The input file's lines, blank ones left out. */
  lines: string[];
  createdMs: number;
  /** The batch latency when it was created. */
  latencyMs: number;
  startedMs?: number;
  /** When every line had been processed. */
  doneMs?: number;
  completed: number;
  failed: number;
  outputFileId: string | null;
  errorFileId: string | null;
  /** A scripted failure (or the processing itself failing): the batch ends with it, not 'completed'. */
  failure?: { outcome: BatchFailure; code: string; message: string; atMs: number };
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const BLANK_JSON_CONTENT = '\n\n  \n\n \n\n';

class FakeProviderServer implements FakeProvider {
  url = '';
  readonly requests: RecordedRequest[] = [];
  private received = 0;
  private readonly queues: Record<Dialect, Queued[]> = { deepseek: [], zhipu: [], dashscope: [], openai: [] };
  private latencyMs: number;
  private responder: Responder | null = null;
  private readonly contextWindows = new Map<string, number>();
  private readonly caches = new Map<string, PrefixCache>();
  private readonly files = new Map<string, StoredFile>();
  private readonly batchStates = new Map<string, BatchState>();
  private readonly batchFailures: Record<Dialect, BatchFailure[]> = { deepseek: [], zhipu: [], dashscope: [], openai: [] };
  private batchLatencyMs: number;
  private readonly sockets = new Set<Socket>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: (ok: boolean) => void }>();
  private readonly server: http.Server;
  private readonly maxRecorded: number;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly initialLatencyMs: number,
    maxRecorded: number,
    private readonly initialBatchLatencyMs = 0,
  ) {
    this.latencyMs = initialLatencyMs;
    this.batchLatencyMs = initialBatchLatencyMs;
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
    const now = Date.now();
    return [...this.batchStates.values()].map((b) => this.batchObject(b, now));
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
    if (!isDialect(d)) throw new TypeError(`unknown dialect '${String(d)}'`);
    if (opts.model !== undefined && typeof opts.model !== 'string') throw new TypeError('model must be a string');
    const list = (Array.isArray(steps) ? steps : [steps]).map((s) => validateStep(d, s));
    for (const step of list) this.queues[d].push(opts.model === undefined ? { step } : { step, model: opts.model });
  }

  setLatency(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('latency must be a number >= 0');
    this.latencyMs = ms;
  }

  setResponder(fn: Responder | null): void {
    this.responder = fn;
  }

  setContextWindow(model: string, tokens: number): void {
    if (!Number.isInteger(tokens) || tokens <= 0) throw new TypeError('context window must be a positive integer');
    this.contextWindows.set(model, tokens);
  }

  setBatchLatency(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new TypeError('batch latency must be a number >= 0');
    this.batchLatencyMs = ms;
  }

  failNextBatch(d: Dialect, outcome: BatchFailure): void {
    if (!isDialect(d)) throw new TypeError(`unknown dialect '${String(d)}'`);
    if (!BATCH_DIALECTS.includes(d)) throw new TypeError(`${d} has no batch API`);
    if (outcome !== 'failed' && outcome !== 'expired') throw new TypeError("outcome must be 'failed' or 'expired'");
    this.batchFailures[d].push(outcome);
  }

  reset(): void {
    for (const d of DIALECTS) this.queues[d].length = 0;
    this.requests.length = 0;
    this.received = 0;
    this.caches.clear();
    this.responder = null;
    this.contextWindows.clear();
    this.latencyMs = this.initialLatencyMs;
    // A batch still being processed notices it is gone and stops (see processBatch()).
    this.files.clear();
    this.batchStates.clear();
    for (const d of DIALECTS) this.batchFailures[d].length = 0;
    this.batchLatencyMs = this.initialBatchLatencyMs;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const s of this.sleepers) {
        clearTimeout(s.timer);
        s.wake(false);
      }
      this.sleepers.clear();
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  // ---- request handling ----------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/_fake/')) return this.control(req, res, path);

    const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    const dialect = ROUTES.get(trimmed);
    if (!dialect) {
      const route = batchRoute(trimmed);
      if (route) return this.batchApi(req, res, route);
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
    return this.deliver(req, res, call, await this.answer(call, 'http'));
  }

  /**
   * The completion logic, without HTTP: the dialect's 401, the body check, then the next queued step
   * for the dialect and model, or the provider's own checks and a normal completion. Consumes the
   * step and records the prompt in the prefix cache; a throwing responder rejects.
   */
  private async answer(call: Call, via: Via): Promise<Answer> {
    const { dialect } = call;
    if (!/^Bearer\s+\S/i.test(call.auth)) return this.presetReply(PRESETS[dialect].auth);
    if (!call.valid) {
      return {
        kind: 'reply',
        status: 400,
        body: {
          error: {
            message: 'Invalid request: the body must be a JSON object with a string "model" and an array "messages"',
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_request_error',
          },
        },
        latencyMs: this.latencyMs,
      };
    }

    const step = this.dequeue(dialect, call.model);
    if (!step) return this.answerDefault(call);
    if (via === 'batch' && (step.kind === 'hang' || step.kind === 'reset' || step.kind === 'stream')) {
      // No socket to hold or cut, no stream to send: the batch line fails like a server error.
      return this.presetReply(PRESETS[dialect].server_error);
    }

    switch (step.kind) {
      case 'ok':
        return this.completion(call, {
          content: step.content ?? (await this.generate(call)),
          finishReason: step.finishReason ?? 'stop',
          latencyMs: step.latencyMs,
          blankLinesBefore: step.blankLinesBefore,
          inflateUsage: step.inflateUsage,
        });
      case 'stream':
        return this.completion(call, {
          content: step.content ?? (await this.generate(call)),
          finishReason: step.finishReason ?? 'stop',
          chunks: step.chunks,
          chunkDelayMs: step.chunkDelayMs,
          cutAfterChunks: step.cutAfterChunks,
          keepAliveComments: step.keepAliveComments,
        });
      case 'invalid-json':
        return this.completion(call, {
          content: step.content ?? `{"answer": "Fake answer from ${call.model}.`,
          finishReason: 'stop',
        });
      case 'blank-json':
        return this.completion(call, { content: BLANK_JSON_CONTENT, finishReason: 'stop' });
      case 'error':
        return { kind: 'reply', status: step.status, body: step.body, headers: step.headers, latencyMs: step.latencyMs ?? this.latencyMs };
      case 'preset':
        if (step.name === 'stream_sensitive') return this.completion(call, { content: '', finishReason: 'sensitive' });
        return this.presetReply(PRESETS[dialect][step.name], step.headers);
      case 'hang':
        return { kind: 'hang' };
      case 'reset':
        return { kind: 'reset' };
    }
  }

  /** No step queued: the provider's own checks, then a normal answer. */
  private async answerDefault(call: Call): Promise<Answer> {
    const { dialect } = call;
    if (
      dialect === 'dashscope' &&
      call.body.response_format?.type === 'json_object' &&
      !call.messages.some((m) => /json/i.test(m.content))
    ) {
      return this.presetReply(dashScopeJsonWordPreset());
    }
    const promptTokens = countPromptTokens(call.messages);
    const maxTokens = typeof call.body.max_tokens === 'number' ? call.body.max_tokens : typeof call.body.max_completion_tokens === 'number' ? call.body.max_completion_tokens : 0;
    const window = this.contextWindows.get(call.model) ?? DEFAULT_CONTEXT_WINDOWS[dialect];
    if (promptTokens + maxTokens > window) {
      return this.presetReply(contextLengthPreset(dialect, { window, promptTokens, maxTokens }));
    }
    return this.completion(call, { content: await this.generate(call), finishReason: 'stop' });
  }

  /** The responder's content, or the deterministic default. */
  private async generate(call: Call): Promise<string> {
    if (this.responder) {
      const out = await this.responder({
        dialect: call.dialect,
        model: call.model,
        messages: call.messages,
        jsonMode: call.jsonMode,
        body: call.body,
      });
      if (typeof out !== 'string') throw new TypeError('the responder must return a string');
      return out;
    }
    // Inkstone's grading prompts get a well-formed grade for the rubric in the prompt.
    const graded = gradingAnswer(call.messages);
    if (graded !== null) return graded;
    const answer = `Fake answer from ${call.model}.`;
    return call.jsonMode ? JSON.stringify({ answer }) : answer;
  }

  /** A 200 completion: counts the usage (recording the prompt in the prefix cache) and builds the body. */
  private completion(call: Call, c: Completion): Answer {
    const usage = this.usage(call, c.content);
    if (c.inflateUsage) {
      const k = c.inflateUsage;
      for (const f of ['prompt_tokens', 'completion_tokens', 'total_tokens', 'prompt_cache_miss_tokens'] as const) {
        if (typeof usage[f] === 'number') usage[f] = Math.round((usage[f] as number) * k);
      }
    }
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const body = {
      id,
      object: 'chat.completion',
      created,
      model: call.model,
      choices: [{ index: 0, message: { role: 'assistant', content: c.content }, finish_reason: c.finishReason }],
      usage,
    };
    return { kind: 'completion', completion: c, usage, id, created, body };
  }

  /** A preset as a reply after the default latency (DashScope's request_id made fresh). */
  private presetReply(preset: Preset, headers?: Record<string, string>): Answer {
    const p = materializePreset(preset, headers);
    return { kind: 'reply', status: p.status, body: p.body, headers: p.headers, latencyMs: this.latencyMs };
  }

  // ---- sending an answer over HTTP -------------------------------------------------------------

  private async deliver(req: http.IncomingMessage, res: http.ServerResponse, call: Call, a: Answer): Promise<void> {
    switch (a.kind) {
      case 'reply':
        return this.sendAfter(res, a.latencyMs, a.status, a.body, a.headers);
      case 'completion':
        return call.streaming ? this.stream(req, res, call, a) : this.sendCompletion(res, a);
      case 'hang':
        return; // the socket stays open until the client gives up or close() destroys it
      case 'reset':
        req.socket.destroy();
        return;
    }
  }

  /** Answers a 200 completion as JSON, after the latency (or with blank lines first, like DeepSeek). */
  private async sendCompletion(res: http.ServerResponse, a: Extract<Answer, { kind: 'completion' }>): Promise<void> {
    const c = a.completion;
    const payload = JSON.stringify(a.body);
    const delay = c.latencyMs ?? this.latencyMs;
    const blank = Math.floor(c.blankLinesBefore ?? 0);
    if (blank <= 0) return this.sendAfter(res, delay, 200, payload);

    // DeepSeek under load: headers at once, then "\n" lines while it works, then the body.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    const gap = Math.max(5, Math.floor(delay / (blank + 1)));
    for (let i = 0; i < blank; i++) {
      if (!(await this.sleep(gap)) || gone(res)) return;
      res.write('\n');
    }
    if (!(await this.sleep(Math.max(0, delay - gap * blank))) || gone(res)) return;
    res.end(payload);
  }

  private async stream(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    call: Call,
    a: Extract<Answer, { kind: 'completion' }>,
  ): Promise<void> {
    const { dialect } = call;
    const { completion: c, usage, id, created } = a;
    if (!(await this.sleep(c.latencyMs ?? this.latencyMs)) || gone(res)) return;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const delay = c.chunkDelayMs ?? 0;
    const chunk = (choices: unknown[], extra?: Record<string, unknown>): string =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: call.model, choices, ...extra })}\n\n`;
    let flushed: Promise<void> = Promise.resolve(); // the last write, handed to the socket
    const send = async (data: string): Promise<boolean> => {
      if (gone(res)) return false;
      flushed = new Promise<void>((resolve) => res.write(data, () => resolve()));
      return delay > 0 ? (await this.sleep(delay)) && !gone(res) : true;
    };

    for (let i = 0; i < (c.keepAliveComments ?? 0); i++) if (!(await send(': keep-alive\n\n'))) return;

    const zhipuUsage = dialect === 'zhipu' ? { usage } : undefined;
    if (c.finishReason === 'sensitive' && c.content === '') {
      // Zhipu's content filter: the first chunk already stops.
      if (!(await send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: 'sensitive' }], zhipuUsage)))) return;
    } else {
      if (!(await send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])))) return;
      const pieces = splitContent(c.content, Math.max(1, Math.floor(c.chunks ?? 4)));
      const cut = c.cutAfterChunks === undefined ? Infinity : Math.floor(c.cutAfterChunks);
      for (let i = 0; i < pieces.length && i < cut; i++) {
        if (!(await send(chunk([{ index: 0, delta: { content: pieces[i] }, finish_reason: null }])))) return;
      }
      if (cut <= pieces.length) {
        // Let what was written reach the client, then drop the connection mid-stream.
        await Promise.race([flushed, this.sleep(1000)]);
        req.socket.destroy();
        return;
      }
      if (!(await send(chunk([{ index: 0, delta: {}, finish_reason: c.finishReason }], zhipuUsage)))) return;
    }
    if (call.includeUsage && dialect !== 'zhipu') if (!(await send(chunk([], { usage })))) return;
    if (!gone(res)) res.end('data: [DONE]\n\n');
  }

  /** Usage in the dialect's shape; records the prompt in the prefix cache. */
  private usage(call: Call, content: string): Usage {
    const perMessage = call.messages.map((m) => ({ role: m.role, tokens: encodeTokens(m.content) }));
    const seq = promptSequence(perMessage);
    const promptTokens = seq.length; // = Σ (tokens + 4) + 3
    const completionTokens = countTokens(content);

    const key = `${call.dialect}\u0000${call.model}\u0000${call.auth}`;
    let cache = this.caches.get(key);
    if (cache) {
      this.caches.delete(key); // keep the map in least-recently-used order
    } else {
      cache = new PrefixCache();
      if (this.caches.size >= MAX_CACHES) {
        const oldest = this.caches.keys().next();
        if (!oldest.done) this.caches.delete(oldest.value);
      }
    }
    this.caches.set(key, cache);
    const { unit, min } = PREFIX_CACHE_RULES[call.dialect];
    let cached = Math.floor(cache.lookupAndAdd(seq) / unit) * unit;
    if (cached < min) cached = 0;

    const base = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    if (call.dialect === 'deepseek') {
      return { ...base, prompt_cache_hit_tokens: cached, prompt_cache_miss_tokens: promptTokens - cached };
    }
    return { ...base, prompt_tokens_details: { cached_tokens: cached } };
  }

  private dequeue(d: Dialect, model: string): Step | undefined {
    const q = this.queues[d];
    const i = q.findIndex((e) => e.model === undefined || e.model === model);
    if (i < 0) return undefined;
    return q.splice(i, 1)[0].step;
  }

  private record(r: RecordedRequest): void {
    this.received++;
    this.requests.push(r);
    // Trim in batches so a long benchmark keeps memory bounded without shifting on every request.
    const slack = Math.max(1, Math.floor(this.maxRecorded / 10));
    if (this.requests.length > this.maxRecorded + slack) this.requests.splice(0, this.requests.length - this.maxRecorded);
  }

  /** Waits `delay` ms, then sends status and body (a string verbatim, anything else as JSON). */
  private async sendAfter(
    res: http.ServerResponse,
    delay: number,
    status: number,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<void> {
    if (!(await this.sleep(delay)) || gone(res)) return;
    sendJson(res, status, body, headers);
  }

  /** Resolves true after `ms`, or false at once when the server is closing. */
  private sleep(ms: number): Promise<boolean> {
    if (this.closing) return Promise.resolve(false);
    if (ms <= 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.sleepers.delete(entry);
          resolve(true);
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(entry);
    });
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    if (gone(res)) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, 500, failureBody(err));
  }

  // ---- the Batch API (Files + Batches) ---------------------------------------------------------

  private async batchApi(req: http.IncomingMessage, res: http.ServerResponse, route: BatchRoute): Promise<void> {
    const { dialect } = route;
    const auth = req.headers.authorization ?? '';
    if (!/^Bearer\s+\S/i.test(auth)) {
      req.resume();
      const p = materializePreset(PRESETS[dialect].auth);
      return sendJson(res, p.status, p.body, p.headers);
    }
    const method = route.kind === 'files' || route.kind === 'batches' ? 'POST' : 'GET';
    if (req.method !== method) {
      req.resume();
      return sendJson(res, 405, apiError(`Method ${req.method ?? ''} not allowed`, 'method_not_allowed'), { allow: method });
    }
    switch (route.kind) {
      case 'files':
        return this.uploadFile(req, res, dialect);
      case 'batches':
        return this.createBatch(req, res, dialect, auth);
      case 'file':
      case 'file-content': {
        req.resume();
        const file = this.files.get(route.id);
        if (!file || file.dialect !== dialect) return sendJson(res, 404, apiError(`No such File object: ${route.id}`, null, 'id'));
        if (route.kind === 'file') return sendJson(res, 200, file.info);
        res.writeHead(200, { 'content-type': 'application/jsonl', 'content-length': file.content.length });
        res.end(file.content);
        return;
      }
      case 'batch': {
        req.resume();
        const b = this.batchStates.get(route.id);
        if (!b || b.dialect !== dialect) return sendJson(res, 404, apiError(`No such Batch object: ${route.id}`, null, 'batch_id'));
        return sendJson(res, 200, this.batchObject(b, Date.now()));
      }
    }
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

  private addFile(dialect: Dialect, idPrefix: string, filename: string, purpose: FileObject['purpose'], content: Buffer): FileObject {
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
      latencyMs: this.batchLatencyMs,
      completed: 0,
      failed: 0,
      outputFileId: null,
      errorFileId: null,
    };
    const scripted = this.batchFailures[dialect].shift();
    if (scripted === 'failed') {
      b.failure = { outcome: 'failed', code: 'batch_failed', message: 'The batch failed (scripted by the fake provider).', atMs: now };
    } else if (scripted === 'expired') {
      b.failure = { outcome: 'expired', code: 'batch_expired', message: 'This batch could not be completed within the 24h time window.', atMs: now };
    }
    this.batchStates.set(b.id, b);
    const created = this.batchObject(b, now); // 'validating'
    setImmediate(() => {
      if (scripted === 'expired') b.startedMs = Date.now(); // it ran out of time while in progress
      if (scripted) return;
      this.processBatch(b).catch((err: unknown) => {
        b.failure = { outcome: 'failed', code: 'server_error', message: `fake provider: ${err instanceof Error ? err.message : String(err)}`, atMs: Date.now() };
      });
    });
    return sendJson(res, 200, created);
  }

  /** Whether the batch is still there (reset() drops it) and the server still running. */
  private live(b: BatchState): boolean {
    return !this.closing && this.batchStates.get(b.id) === b;
  }

  /** Runs every line, in order, through the completion logic; then writes the output and error files. */
  private async processBatch(b: BatchState): Promise<void> {
    if (!this.live(b)) return;
    b.startedMs = Date.now();
    const output: string[] = [];
    const errors: string[] = [];
    const chatPath = `${BASE_PATHS[b.dialect]}/chat/completions`;
    let yielded = Date.now();
    for (const line of b.lines) {
      if (Date.now() - yielded > 10) {
        // Token counting is synchronous: let real-time requests in between lines.
        await new Promise<void>((resolve) => setImmediate(resolve));
        yielded = Date.now();
      }
      if (!this.live(b)) return;
      const parsed = parseBatchLine(line, b.endpoint);
      if ('error' in parsed) {
        errors.push(
          JSON.stringify({
            id: `batch_req_${randomUUID()}`,
            custom_id: parsed.customId,
            response: null,
            error: { code: 'invalid_request', message: parsed.error },
          }),
        );
        b.failed++;
        continue;
      }
      const { body, valid } = toChatBody(parsed.body, line);
      this.record({ dialect: b.dialect, path: chatPath, model: body.model, body, headers: { ...b.headers }, at: Date.now(), batchId: b.id });
      const call = makeCall(b.dialect, body, valid, b.auth);
      call.streaming = false; // a batch line is answered as a whole completion
      call.includeUsage = false;
      const result = await this.respond(call);
      if (!this.live(b)) return;
      const ok = result.status >= 200 && result.status < 300;
      const requestId = isRecord(result.body) && typeof result.body.request_id === 'string' ? result.body.request_id : randomUUID();
      (ok ? output : errors).push(
        JSON.stringify({
          id: `batch_req_${randomUUID()}`,
          custom_id: parsed.customId,
          response: { status_code: result.status, request_id: requestId, body: result.body },
          error: null,
        }),
      );
      if (ok) b.completed++;
      else b.failed++;
    }
    b.outputFileId = this.addFile(b.dialect, 'file-batch_output-', `${b.id}_output.jsonl`, 'batch_output', jsonl(output)).id;
    if (errors.length > 0) {
      b.errorFileId = this.addFile(b.dialect, 'file-batch_error-', `${b.id}_error.jsonl`, 'batch_output', jsonl(errors)).id;
    }
    b.doneMs = Date.now();
  }

  /** A call answered as a status and a body, as a non-streaming HTTP request would get them (no latency). */
  private async respond(call: Call): Promise<{ status: number; body: unknown }> {
    try {
      const a = await this.answer(call, 'batch');
      if (a.kind === 'completion') return { status: 200, body: a.body };
      if (a.kind === 'reply') return { status: a.status, body: a.body };
      return { status: 500, body: materializePreset(PRESETS[call.dialect].server_error).body }; // not for batches
    } catch (err) {
      return { status: 500, body: failureBody(err) };
    }
  }

  /** The batch as the API shows it at `now`: it ends once its lines are done and its latency has passed. */
  private batchObject(b: BatchState, now: number): BatchObject {
    const sec = (ms: number): number => Math.floor(ms / 1000);
    const readyMs = b.createdMs + b.latencyMs;
    const out: BatchObject = {
      id: b.id,
      object: 'batch',
      endpoint: b.endpoint,
      errors: null,
      input_file_id: b.inputFileId,
      completion_window: b.completionWindow,
      status: b.startedMs === undefined ? 'validating' : 'in_progress',
      output_file_id: null,
      error_file_id: null,
      created_at: sec(b.createdMs),
      in_progress_at: b.startedMs === undefined ? null : sec(b.startedMs),
      completed_at: null,
      failed_at: null,
      expired_at: null,
      request_counts: { total: b.lines.length, completed: b.completed, failed: b.failed },
      metadata: b.metadata === null ? null : { ...b.metadata },
    };
    if (b.failure) {
      const endMs = Math.max(readyMs, b.failure.atMs);
      if (now >= endMs) {
        out.status = b.failure.outcome;
        out.errors = { object: 'list', data: [{ code: b.failure.code, message: b.failure.message, line: null, param: null }] };
        if (b.failure.outcome === 'failed') out.failed_at = sec(endMs);
        else out.expired_at = sec(endMs);
      }
    } else if (b.doneMs !== undefined && now >= readyMs) {
      out.status = 'completed';
      out.completed_at = sec(Math.max(b.doneMs, readyMs));
      out.output_file_id = b.outputFileId;
      out.error_file_id = b.errorFileId;
    }
    return out;
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
        return sendJson(res, 200, { count: this.received, requests });
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
          return sendJson(res, 200, { ok: true, queued: this.queues[input.dialect].length });
        }
        case '/_fake/latency':
          this.setLatency(input.ms as number);
          return sendJson(res, 200, { ok: true, latencyMs: this.latencyMs });
        case '/_fake/context-window':
          if (typeof input.model !== 'string') throw new TypeError('model must be a string');
          this.setContextWindow(input.model, input.tokens as number);
          return sendJson(res, 200, { ok: true });
        case '/_fake/batch-latency':
          this.setBatchLatency(input.ms as number);
          return sendJson(res, 200, { ok: true, batchLatencyMs: this.batchLatencyMs });
        case '/_fake/batch-failure':
          this.failNextBatch(input.dialect as Dialect, input.outcome as BatchFailure); // validates both
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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function gone(res: http.ServerResponse): boolean {
  return res.destroyed || res.writableEnded;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  if (gone(res)) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const h: Record<string, string | number> = { 'content-type': 'application/json' };
  for (const [k, v] of Object.entries(headers ?? {})) h[k.toLowerCase()] = v;
  h['content-length'] = Buffer.byteLength(text);
  res.writeHead(status, h);
  res.end(text);
}

/** An OpenAI-style error body, as the Batch API endpoints answer. */
function apiError(message: string, code: string | null = null, param: string | null = null) {
  return { error: { message, type: 'invalid_request_error', param, code } };
}

/** The 500 body for an answer that threw (e.g. the responder). */
function failureBody(err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
  return { error: { message: `fake provider: ${message}`, type: 'fake_provider_error', param: null, code: null } };
}

/** The body as bytes, or null when it exceeds {@link MAX_BODY_BYTES}. */
async function readBodyBuffer(req: http.IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      req.resume();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The body as text, or null when it exceeds {@link MAX_BODY_BYTES}. */
async function readBody(req: http.IncomingMessage): Promise<string | null> {
  const buf = await readBodyBuffer(req);
  return buf === null ? null : buf.toString('utf8');
}

function parseChatBody(text: string): { body: ChatRequestBody; valid: boolean } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  return toChatBody(raw, text);
}

/** A parsed body as a chat request, or (when it is not one) the recorded stand-in with `unparsed` text. */
function toChatBody(raw: unknown, text: string): { body: ChatRequestBody; valid: boolean } {
  if (
    isRecord(raw) &&
    typeof raw.model === 'string' &&
    Array.isArray(raw.messages) &&
    raw.messages.every((m) => isRecord(m) && typeof m.role === 'string')
  ) {
    return { body: raw as ChatRequestBody, valid: true };
  }
  const base = isRecord(raw) ? raw : {};
  return {
    body: {
      ...base,
      model: typeof base.model === 'string' ? base.model : '',
      messages: [],
      unparsed: text.slice(0, 10_000),
    },
    valid: false,
  };
}

// ---- Batch API helpers -----------------------------------------------------------------------

type BatchRoute =
  | { dialect: Dialect; kind: 'files' | 'batches' }
  | { dialect: Dialect; kind: 'file' | 'file-content' | 'batch'; id: string };

/** The Batch API route of a path (without a trailing slash), or null. */
function batchRoute(path: string): BatchRoute | null {
  for (const dialect of BATCH_DIALECTS) {
    const prefix = BASE_PATHS[dialect];
    if (!path.startsWith(`${prefix}/`)) continue;
    const rest = path.slice(prefix.length);
    if (rest === '/files') return { dialect, kind: 'files' };
    if (rest === '/batches') return { dialect, kind: 'batches' };
    const m = /^\/(files|batches)\/([^/]+)(\/content)?$/.exec(rest);
    if (!m || (m[1] === 'batches' && m[3])) return null;
    let id: string;
    try {
      id = decodeURIComponent(m[2]);
    } catch {
      return null;
    }
    if (m[1] === 'batches') return { dialect, kind: 'batch', id };
    return { dialect, kind: m[3] ? 'file-content' : 'file', id };
  }
  return null;
}

/**
 * One line of a batch input file: `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`.
 * Not JSON, no custom_id, no body object, or another method or url: an error for the error file.
 */
function parseBatchLine(line: string, endpoint: string): { customId: string; body: unknown } | { customId: string | null; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { customId: null, error: 'The line is not valid JSON.' };
  }
  if (!isRecord(raw)) return { customId: null, error: 'The line is not a JSON object.' };
  const customId = typeof raw.custom_id === 'string' && raw.custom_id !== '' ? raw.custom_id : null;
  if (customId === null) return { customId: null, error: "The line has no 'custom_id' string." };
  if (raw.method !== undefined && raw.method !== 'POST') return { customId, error: "The line's 'method' must be POST." };
  if (raw.url !== undefined && raw.url !== endpoint) {
    return { customId, error: `The line's 'url' must be the batch's endpoint, ${endpoint}.` };
  }
  if (!isRecord(raw.body)) return { customId, error: "The line has no 'body' object." };
  return { customId, body: raw.body };
}

/** Lines as a JSONL file: each line ends with "\n". */
function jsonl(lines: readonly string[]): Buffer {
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
}

interface MultipartPart {
  name: string;
  /** Present (possibly empty) for a file part. */
  filename?: string;
  contentType?: string;
  data: Buffer;
}

const CRLF = Buffer.from('\r\n');
const HEADERS_END = Buffer.from('\r\n\r\n');

/**
 * The parts of a `multipart/form-data` body (RFC 7578 on RFC 2046): the boundary from the
 * content-type, CRLF line breaks, an optional preamble and epilogue. Null when the content-type is
 * not multipart/form-data or the body is not well formed (no closing delimiter, a part without a
 * content-disposition name).
 */
function parseMultipart(contentType: string | undefined, body: Buffer): MultipartPart[] | null {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return null;
  const m = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary || boundary.length > 200) return null;
  const delimiter = Buffer.from(`--${boundary}`);
  const nextDelimiter = Buffer.concat([CRLF, delimiter]);

  // The first delimiter opens the body, or follows a preamble and its CRLF.
  let pos: number;
  if (body.subarray(0, delimiter.length).equals(delimiter)) {
    pos = 0;
  } else {
    pos = body.indexOf(nextDelimiter);
    if (pos < 0) return null;
    pos += CRLF.length;
  }
  const parts: MultipartPart[] = [];
  for (;;) {
    let p = pos + delimiter.length;
    if (body[p] === 0x2d && body[p + 1] === 0x2d) return parts; // "--boundary--": the end (an epilogue may follow)
    while (body[p] === 0x20 || body[p] === 0x09) p++; // transport padding
    if (body[p] !== 0x0d || body[p + 1] !== 0x0a) return null;
    p += 2;
    let headersEnd: number;
    let dataStart: number;
    if (body[p] === 0x0d && body[p + 1] === 0x0a) {
      headersEnd = p; // no headers at all
      dataStart = p + 2;
    } else {
      headersEnd = body.indexOf(HEADERS_END, p);
      if (headersEnd < 0) return null;
      dataStart = headersEnd + HEADERS_END.length;
    }
    const dataEnd = body.indexOf(nextDelimiter, dataStart);
    if (dataEnd < 0) return null;

    const headers = new Map<string, string>();
    for (const line of body.subarray(p, headersEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const disposition = headers.get('content-disposition');
    if (!disposition || !/^form-data\s*(;|$)/i.test(disposition)) return null;
    const params = dispositionParams(disposition);
    const name = params.get('name');
    if (name === undefined) return null;
    parts.push({ name, filename: params.get('filename'), contentType: headers.get('content-type'), data: body.subarray(dataStart, dataEnd) });
    pos = dataEnd + CRLF.length;
  }
}

/** The parameters of a Content-Disposition value (names lower-cased; `filename*` wins over `filename`). */
function dispositionParams(value: string): Map<string, string> {
  const plain = new Map<string, string>();
  const extended = new Map<string, string>();
  for (const m of value.matchAll(/;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g)) {
    const key = m[1].toLowerCase();
    const v = m[2] !== undefined ? m[2].replace(/\\(["\\])/g, '$1') : m[3].trim();
    if (key.endsWith('*')) {
      // RFC 8187: charset'language'percent-encoded
      const ext = /^[^']*'[^']*'(.*)$/.exec(v);
      try {
        extended.set(key.slice(0, -1), decodeURIComponent(ext ? ext[1] : v));
      } catch {
        // not valid percent-encoding: keep the plain parameter
      }
    } else if (!plain.has(key)) {
      plain.set(key, v);
    }
  }
  for (const [k, v] of extended) plain.set(k, v);
  return plain;
}

/** A message's content as text: strings as they are, text parts joined, anything else empty. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p: unknown) => (isRecord(p) && typeof p.text === 'string' ? p.text : ''))
      .join('');
  }
  return '';
}

/** Splits text into about `n` pieces without breaking characters. */
function splitContent(text: string, n: number): string[] {
  const chars = Array.from(text);
  if (chars.length === 0) return [];
  const size = Math.ceil(chars.length / Math.min(n, chars.length));
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Starts a fake provider on loopback (port 0 = any free port).
 *
 * Control over HTTP, for a benchmark in another process:
 * - `POST /_fake/enqueue` `{dialect, steps, model?}` (steps: one step or an array)
 * - `POST /_fake/latency` `{ms}`
 * - `POST /_fake/context-window` `{model, tokens}`
 * - `POST /_fake/batch-latency` `{ms}`
 * - `POST /_fake/batch-failure` `{dialect, outcome: 'failed' | 'expired'}`
 * - `POST /_fake/reset`
 * - `GET /_fake/requests` → `{count, requests}` (count since reset; the last 100, without bodies or
 *   headers; batch lines with their `batchId`)
 * - `GET /_fake/health` → `{status: 'ok', url, baseUrls}`
 */
export async function startFakeProvider(opts: FakeProviderOptions = {}): Promise<FakeProvider> {
  const latency = opts.latencyMs ?? 0;
  if (!Number.isFinite(latency) || latency < 0) throw new TypeError('latencyMs must be a number >= 0');
  const batchLatency = opts.batchLatencyMs ?? 0;
  if (!Number.isFinite(batchLatency) || batchLatency < 0) throw new TypeError('batchLatencyMs must be a number >= 0');
  encodeTokens('warm up'); // load the tokenizer now (~0.5 s once per process), not on the first request
  const server = new FakeProviderServer(latency, Math.max(1, opts.maxRecordedRequests ?? 10_000), batchLatency);
  await server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  return server;
}
