/**
 * Facts about each provider's dialect that are not canned errors (those are in presets.ts): where
 * its API lives (base paths, chat routes, which dialects have a Batch API), its models' default
 * context windows, the shape of its `usage` object and the error bodies the fake writes itself.
 */
import { DIALECTS, type Dialect } from './presets';

/** Path prefix that baseUrl() returns, per dialect. */
export const BASE_PATHS: Record<Dialect, string> = {
  deepseek: '/deepseek',
  zhipu: '/zhipu/api/paas/v4',
  dashscope: '/dashscope/compatible-mode/v1',
  openai: '/openai/v1',
};

/** The chat-completions paths (without a trailing slash) and the dialect each one speaks. */
export const CHAT_ROUTES = new Map<string, Dialect>([
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

export function isDialect(v: unknown): v is Dialect {
  return typeof v === 'string' && (DIALECTS as readonly string[]).includes(v);
}

/** A completion's `usage` object, in the dialect's shape. */
export type Usage = Record<string, number | Record<string, number>>;

/**
 * Usage as the dialect reports it: DeepSeek with `prompt_cache_hit_tokens` / `…_miss_tokens`, the
 * others with `prompt_tokens_details.cached_tokens`.
 */
export function usageFor(dialect: Dialect, promptTokens: number, completionTokens: number, cached: number): Usage {
  const base = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
  if (dialect === 'deepseek') {
    return { ...base, prompt_cache_hit_tokens: cached, prompt_cache_miss_tokens: promptTokens - cached };
  }
  return { ...base, prompt_tokens_details: { cached_tokens: cached } };
}

/** The 400 body for a chat request whose body is not a chat request (every dialect, OpenAI-style). */
export function invalidChatBodyError() {
  return {
    error: {
      message: 'Invalid request: the body must be a JSON object with a string "model" and an array "messages"',
      type: 'invalid_request_error',
      param: null,
      code: 'invalid_request_error',
    },
  };
}

/** An OpenAI-style error body, as the Batch API endpoints answer. */
export function apiError(message: string, code: string | null = null, param: string | null = null) {
  return { error: { message, type: 'invalid_request_error', param, code } };
}

/** The 500 body for an answer that threw (e.g. the responder). */
export function failureBody(err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
  return { error: { message: `fake provider: ${message}`, type: 'fake_provider_error', param: null, code: null } };
}
