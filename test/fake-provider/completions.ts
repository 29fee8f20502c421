/**
 * Answering a chat call, whatever way it arrived (a chat request or a line of a batch), before
 * anything is sent: the dialect's 401, the body check, the next scripted step, or the provider's
 * own rules (DashScope's JSON-mode word, the context window) and a normal completion whose usage
 * is counted with the real tokenizer and the prefix cache. Sending the answer is delivery.ts.
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_CONTEXT_WINDOWS, invalidChatBodyError, usageFor, type Usage } from './dialects';
import { gradingAnswer } from './grading-responder';
import { isRecord } from './http';
import { PrefixCaches } from './prefix-cache';
import { contextLengthPreset, dashScopeJsonWordPreset, materializePreset, PRESETS, type Dialect, type Preset } from './presets';
import { StepQueues } from './steps';
import { countPromptTokens, countTokens, encodeTokens, promptSequence } from './tokens';
import type { ChatRequestBody, Responder } from './types';

/**
 * A chat call, however it arrived: a request to a chat route or a line of a batch. Everything the
 * completion logic ({@link Completions.answer}) needs, and no HTTP objects.
 */
export interface Call {
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

export function makeCall(dialect: Dialect, body: ChatRequestBody, valid: boolean, auth: string): Call {
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

export interface Completion {
  content: string;
  finishReason: string;
  /** Delay before the first byte; default: the server's latency. */
  latencyMs?: number;
  blankLinesBefore?: number;
  chunks?: number;
  chunkDelayMs?: number;
  splitCharacters?: boolean;
  cutAfterChunks?: number;
  keepAliveComments?: number;
  inflateUsage?: number;
  usage?: Record<string, number>;
  usageEveryChunk?: boolean;
}

/**
 * What the completion logic answers to a call, before anything is sent:
 * - 'completion': a 200 completion; `body` is the `chat.completion` object a non-streaming request
 *   gets (a streaming request gets the same content, id and usage as chunks);
 * - 'reply': a status and a body (a string is sent verbatim), e.g. a preset or an error step;
 * - 'hang' / 'reset': no answer (over HTTP only; a batch line gets a 500 instead).
 */
export type Answer =
  | { kind: 'completion'; completion: Completion; usage: Usage; id: string; created: number; body: Record<string, unknown> }
  | { kind: 'reply'; status: number; body: unknown; headers?: Record<string, string>; latencyMs: number }
  | { kind: 'hang' }
  | { kind: 'reset' };

/** How a call arrived: over HTTP, or as a line of a batch (no streaming, no socket to hang or reset). */
export type Via = 'http' | 'batch';

const BLANK_JSON_CONTENT = '\n\n  \n\n \n\n';

/**
 * The completion logic and the state it reads: the scripted steps, the responder, the context
 * windows set by tests, the prefix caches and the default latency of replies.
 */
export class Completions {
  readonly steps = new StepQueues();
  /** Default delay before answering, in ms. */
  latencyMs: number;
  responder: Responder | null = null;
  readonly contextWindows = new Map<string, number>();
  private readonly caches = new PrefixCaches();

  constructor(latencyMs: number) {
    this.latencyMs = latencyMs;
  }

  /** Forgets steps, responder, context windows and prefix caches; the latency goes back to `latencyMs`. */
  reset(latencyMs: number): void {
    this.steps.clear();
    this.caches.clear();
    this.responder = null;
    this.contextWindows.clear();
    this.latencyMs = latencyMs;
  }

  /**
   * The completion logic, without HTTP: the dialect's 401, the body check, then the next queued step
   * for the dialect and model, or the provider's own checks and a normal completion. Consumes the
   * step and records the prompt in the prefix cache; a throwing responder rejects.
   */
  async answer(call: Call, via: Via): Promise<Answer> {
    const { dialect } = call;
    if (!/^Bearer\s+\S/i.test(call.auth)) return this.presetReply(PRESETS[dialect].auth);
    if (!call.valid) {
      return { kind: 'reply', status: 400, body: invalidChatBodyError(), latencyMs: this.latencyMs };
    }

    const step = this.steps.take(dialect, call.model);
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
          usage: step.usage,
        });
      case 'stream':
        return this.completion(call, {
          content: step.content ?? (await this.generate(call)),
          finishReason: step.finishReason ?? 'stop',
          chunks: step.chunks,
          chunkDelayMs: step.chunkDelayMs,
          cutAfterChunks: step.cutAfterChunks,
          keepAliveComments: step.keepAliveComments,
          usageEveryChunk: step.usageEveryChunk,
          splitCharacters: step.splitCharacters,
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
    if (c.usage) Object.assign(usage, c.usage);
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

  /** Usage in the dialect's shape; records the prompt in the prefix cache. */
  private usage(call: Call, content: string): Usage {
    const perMessage = call.messages.map((m) => ({ role: m.role, tokens: encodeTokens(m.content) }));
    const seq = promptSequence(perMessage);
    const promptTokens = seq.length; // = Σ (tokens + 4) + 3
    const completionTokens = countTokens(content);

    const cached = this.caches.cachedTokens(call.dialect, call.model, call.auth, seq);
    return usageFor(call.dialect, promptTokens, completionTokens, cached);
  }
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

/** A request body as a chat request (see {@link toChatBody}). */
export function parseChatBody(text: string): { body: ChatRequestBody; valid: boolean } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  return toChatBody(raw, text);
}

/** A parsed body as a chat request, or (when it is not one) the recorded stand-in with `unparsed` text. */
export function toChatBody(raw: unknown, text: string): { body: ChatRequestBody; valid: boolean } {
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
