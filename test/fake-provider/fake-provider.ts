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
 * `POST /batches`, `GET /batches` (newest first, `limit`, `after`), `GET /batches/:id`, `POST /batches/:id/cancel`, `GET /files/:id/content`, under the dialect's base URL): each
 * line of a batch goes through the same completion logic as a real-time request (completions.ts,
 * `answer()`), without latency, and lands in the batch's output or error file. DeepSeek has no batch
 * API (404). See {@link FakeProvider.setBatchLatency}, {@link FakeProvider.setBatchCreateDelay} and {@link FakeProvider.failNextBatch}.
 *
 * A benchmark in another process can script it over HTTP (`/_fake/*`, see {@link startFakeProvider});
 * `main.ts` beside this file runs it as a standalone server.
 *
 * This file starts one ({@link startFakeProvider}) and is the public API: import from here. The
 * parts, each in a file of its own:
 * - types.ts: the public types (chat bodies, recorded requests, Batch API objects, FakeProvider);
 * - server.ts: the HTTP server, routing, the `/_fake/*` control endpoints, request recording;
 * - completions.ts: answering a chat call (steps, provider rules, completions and their usage);
 * - delivery.ts: sending an answer (JSON, blank lines, SSE streams, hangs and resets);
 * - steps.ts: the scripted {@link Step}s, their validation and queues;
 * - tokens.ts: o200k_base token counts and prompt token sequences;
 * - prefix-cache.ts: the providers' prefix caches (cached tokens in usage);
 * - dialects.ts: per-dialect paths, context windows, usage shapes and error bodies;
 * - presets.ts: the providers' real error answers;
 * - batches.ts, batch-run.ts, multipart.ts: the Batch API (files, batches, running their lines);
 * - http.ts: body reading, JSON answers and the closable waits behind every latency;
 * - grading-responder.ts: the well-formed grades Inkstone's grading prompts get by default.
 */
import { FakeProviderServer } from './server';
import { encodeTokens } from './tokens';
import type { FakeProvider, FakeProviderOptions } from './types';

export { DIALECTS, PRESETS } from './presets';
export type { Dialect, Preset } from './presets';
export { BATCH_COMPLETION_WINDOW, BATCH_DIALECTS, BATCH_ENDPOINT, DEFAULT_CONTEXT_WINDOWS } from './dialects';
export { PREFIX_CACHE_RULES } from './prefix-cache';
export { countPromptTokens, countTokens, encodeTokens, TOKENS_PER_MESSAGE, TOKENS_PER_PROMPT } from './tokens';
export { validateStep } from './steps';
export type { EnqueueOptions, Step } from './steps';
export type {
  BatchError,
  BatchFailure,
  BatchObject,
  BatchStatus,
  ChatMessage,
  ChatRequestBody,
  ContentPart,
  FakeProvider,
  FakeProviderOptions,
  FileObject,
  RecordedRequest,
  Responder,
  ResponderRequest,
} from './types';

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
 * - `GET /_fake/requests` → `{count, answered, answeredInBatches, answeredAgain, filesStored, requests}` (count since
 *   reset; answers billed: real-time ones sent whole with 200 and batch lines answered with 200, of
 *   which batch lines; prompts answered more than once, in real time or in a batch; the Batch API's
 *   files not deleted; the last 100,
 *   without bodies or headers; batch lines with their `batchId`)
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
