/**
 * Scripted answers: the {@link Step} kinds a test can queue, their validation (shared by enqueue()
 * and `POST /_fake/enqueue`, whose steps come as JSON), and the per-dialect FIFO queues that the
 * completion logic takes them from.
 */
import { isDialect } from './dialects';
import { isRecord } from './http';
import { BEHAVIOUR_PRESETS, DIALECTS, isPreset, PRESETS, type Dialect } from './presets';

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
      /** Usage fields reported instead of the real ones (e.g. DeepSeek's prompt_cache_hit_tokens), after inflateUsage. */
      usage?: Record<string, number>;
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
      /** usage on every chunk, counted so far (vLLM's `continuous_usage_stats`), not only at the end */
      usageEveryChunk?: boolean;
      /** each event written in two writes cut inside its first multi-byte character (the client reads them apart) */
      splitCharacters?: boolean;
    }
  /** DeepSeek's JSON-mode failure: 200, content of only spaces and newlines, finish_reason "stop". */
  | { kind: 'blank-json' }
  /** 200 with content that is not valid JSON (default: a truncated JSON object). */
  | { kind: 'invalid-json'; content?: string }
  /** Accept the request and never answer (for timeout tests); close() ends it. */
  | { kind: 'hang' }
  /** Destroy the socket at once, without an answer. */
  | { kind: 'reset' };

export interface EnqueueOptions {
  /** Only requests for this model consume the steps; others pass them by. */
  model?: string;
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

function optBoolean(o: Record<string, unknown>, key: string): void {
  const v = o[key];
  if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`step '${String(o.kind)}': ${key} must be true or false`);
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
      if (step.usage !== undefined && (typeof step.usage !== 'object' || step.usage === null || Object.values(step.usage).some((v) => typeof v !== 'number'))) {
        throw new TypeError("step 'ok': usage must be an object of numbers");
      }
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
      optBoolean(step, 'usageEveryChunk');
      optBoolean(step, 'splitCharacters');
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

interface Queued {
  step: Step;
  model?: string;
}

/** The queued steps of each dialect, in order. */
export class StepQueues {
  private readonly queues: Record<Dialect, Queued[]> = { deepseek: [], zhipu: [], dashscope: [], openai: [] };

  /** Validates the dialect, the model and every step, then queues them all (none when one is bad). */
  enqueue(d: Dialect, steps: Step | Step[], opts: EnqueueOptions = {}): void {
    if (!isDialect(d)) throw new TypeError(`unknown dialect '${String(d)}'`);
    if (opts.model !== undefined && typeof opts.model !== 'string') throw new TypeError('model must be a string');
    const list = (Array.isArray(steps) ? steps : [steps]).map((s) => validateStep(d, s));
    for (const step of list) this.queues[d].push(opts.model === undefined ? { step } : { step, model: opts.model });
  }

  /** Takes the first step queued for the dialect that applies to the model, if any. */
  take(d: Dialect, model: string): Step | undefined {
    const q = this.queues[d];
    const i = q.findIndex((e) => e.model === undefined || e.model === model);
    if (i < 0) return undefined;
    return q.splice(i, 1)[0].step;
  }

  /** How many steps are queued for the dialect. */
  length(d: Dialect): number {
    return this.queues[d].length;
  }

  clear(): void {
    for (const d of DIALECTS) this.queues[d].length = 0;
  }
}
