import { ProviderError, Usage } from '../types';
import { count, DialectAdapter, errorFields, genericError, MAX_COUNTED_TOKENS, openAiStyleBody, openAiStyleUsage } from './dialect';

/**
 * DeepSeek (api.deepseek.com). Usage splits input into prompt_cache_hit_tokens and
 * prompt_cache_miss_tokens. 402 "Insufficient Balance" empties the account; 400 "Content Exists
 * Risk" is its content filter; its context error is a 400 whose message names the maximum length.
 */
export const deepseek: DialectAdapter = {
  dialect: 'deepseek',
  chatPath: '/chat/completions',
  buildBody: (model, p) => openAiStyleBody(model, p, { streamUsage: true }),
  parseUsage(usage): Usage | null {
    const u = usage as { prompt_cache_hit_tokens?: unknown; prompt_cache_miss_tokens?: unknown; completion_tokens?: unknown } | null;
    const hit = count(u?.prompt_cache_hit_tokens);
    const miss = count(u?.prompt_cache_miss_tokens);
    const out = count(u?.completion_tokens);
    if (hit !== null && miss !== null && out !== null) {
      // Each count is held to what the ledger counts, and so is their sum (two such counts overflowed
      // its column: the settlement was refused and retried for ever, the answer lost).
      return { inputTokens: Math.min(hit + miss, MAX_COUNTED_TOKENS), cachedInputTokens: hit, outputTokens: out };
    }
    return openAiStyleUsage(usage);
  },
  classifyError(status, body, retryAfterMs): ProviderError {
    const f = errorFields(body);
    const extra = { status, providerCode: f.code, retryAfterMs };
    if (status === 402 || /insufficient balance/i.test(f.message)) {
      return new ProviderError('provider_down', 'insufficient_balance', f.message, extra);
    }
    if (status === 400 && /content exists risk/i.test(f.message)) {
      return new ProviderError('content_rejected', 'content_filter', f.message, extra);
    }
    if (status === 400 && /maximum context length/i.test(f.message)) {
      return new ProviderError('fallback', 'context_length', f.message, extra);
    }
    if (status === 503) return new ProviderError('retryable', 'overloaded', f.message, extra);
    return genericError(status, f, retryAfterMs);
  },
  isContentFilterFinish: (r) => r === 'content_filter',
  // "insufficient_system_resource": the backend ran out of resources and interrupted the output.
  isFailureFinish: (r) => r === 'insufficient_system_resource',
};
