import type { CatalogModel, Dialect } from '../catalog';
import { ChatMessage, ChatParams, ProviderError, Usage } from '../types';

/**
 * One provider's dialect of OpenAI-style chat completions: how to write the request body, how to
 * read its usage, and what its error answers mean. Pure functions, unit-tested on recorded bodies.
 */
export interface DialectAdapter {
  dialect: Dialect;
  /** appended to the provider's base URL */
  chatPath: string;
  buildBody(model: CatalogModel, params: ChatParams): Record<string, unknown>;
  parseUsage(usage: unknown): Usage | null;
  classifyError(status: number, body: unknown, retryAfterMs?: number): ProviderError;
  /** A finish reason that means the provider's filter stopped the answer. */
  isContentFilterFinish(finishReason: string | null | undefined): boolean;
  /**
   * A finish reason that means the provider failed mid-answer (out of resources, an inference
   * error): the answer is cut, a failed attempt to try elsewhere, not a whole answer.
   */
  isFailureFinish?(finishReason: string | null | undefined): boolean;
  /**
   * The messages as the provider receives them, when buildBody adds to them: the prompt's admission
   * bound is estimated on these (an addition left out of it was billed past the bound: an incident).
   */
  sentMessages?(model: CatalogModel, messages: ChatMessage[], jsonMode: boolean | undefined): ChatMessage[];
}

export interface ErrorFields {
  message: string;
  code?: string;
  type?: string;
}

/** Reads `{ error: { message, code, type } }` (or a bare `{ error: "..." }`) without trusting its shape. */
export function errorFields(body: unknown): ErrorFields {
  if (typeof body === 'string') return { message: body.slice(0, 500) };
  const b = body as { error?: unknown; message?: unknown } | null;
  if (b && typeof b === 'object') {
    const e = b.error;
    if (typeof e === 'string') return { message: e };
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return {
        message: typeof o.message === 'string' ? o.message : JSON.stringify(o).slice(0, 500),
        code: o.code === null || o.code === undefined ? undefined : String(o.code),
        type: typeof o.type === 'string' ? o.type : undefined,
      };
    }
    if (typeof b.message === 'string') return { message: b.message };
  }
  return { message: 'no error body' };
}

/** The common body of an OpenAI-style chat completion request. */
export function openAiStyleBody(model: CatalogModel, p: ChatParams, opts: { streamUsage: boolean }): Record<string, unknown> {
  const body: Record<string, unknown> = {
    // The catalog's provider-specific options (thinking mode off, …); they may not set the fields below.
    ...model.requestOptions,
    model: model.id,
    messages: p.messages,
    max_tokens: p.maxTokens,
    stream: p.stream,
  };
  if (p.temperature !== undefined) body.temperature = p.temperature;
  if (p.topP !== undefined) body.top_p = p.topP;
  if (p.stop?.length) body.stop = p.stop;
  if (p.seed !== undefined) body.seed = p.seed;
  if (p.jsonMode && model.jsonMode) body.response_format = { type: 'json_object' };
  if (p.stream && opts.streamUsage) body.stream_options = { include_usage: true };
  return body;
}

/** Usage with `prompt_tokens_details.cached_tokens` (OpenAI, DashScope, Zhipu). */
export function openAiStyleUsage(usage: unknown): Usage | null {
  const u = usage as {
    prompt_tokens?: unknown;
    completion_tokens?: unknown;
    prompt_tokens_details?: { cached_tokens?: unknown } | null;
  } | null;
  if (!u || typeof u !== 'object') return null;
  const input = count(u.prompt_tokens);
  const output = count(u.completion_tokens);
  if (input === null || output === null) return null;
  const cached = count(u.prompt_tokens_details?.cached_tokens) ?? 0;
  return { inputTokens: input, cachedInputTokens: Math.min(cached, input), outputTokens: output };
}

/**
 * The most tokens a count is taken as: what the ledger's and incidents' integer columns hold. A
 * provider that reports more (no call uses that many) is held to it, and the report, far over the
 * call's bound, is booked as an incident; past it, the settlement could not be written at all and
 * was retried for ever, the call's reservation held.
 */
export const MAX_COUNTED_TOKENS = 2_147_483_647;

export function count(v: unknown): number | null {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? Math.min(v, MAX_COUNTED_TOKENS) : null;
}

/** Errors every dialect shares: HTTP status classes with no dialect-specific meaning. */
export function genericError(status: number, f: ErrorFields, retryAfterMs?: number): ProviderError {
  const extra = { status, providerCode: f.code, retryAfterMs };
  if (status === 401 || status === 403) return new ProviderError('provider_down', 'auth', `authentication failed: ${f.message}`, extra);
  if (status === 402) return new ProviderError('provider_down', 'insufficient_balance', f.message, extra);
  if (status === 404) return new ProviderError('fallback', 'model_not_found', f.message, extra);
  if (status === 408 || status === 409 || status === 425 || status === 429 || status >= 500) {
    return new ProviderError('retryable', status === 429 ? 'rate_limited' : 'server_error', f.message, extra);
  }
  if (status === 413) return new ProviderError('fallback', 'context_length', f.message, extra);
  return new ProviderError('fatal', 'bad_request', f.message, extra);
}
