import { ProviderError } from '../types';
import { DialectAdapter, errorFields, genericError, openAiStyleBody, openAiStyleUsage } from './dialect';

/**
 * OpenAI and compatible servers (Ollama, vLLM, a local model). Here 429 insufficient_quota means
 * the account has no credit: the provider is taken out, not retried.
 */
export const openai: DialectAdapter = {
  dialect: 'openai',
  chatPath: '/chat/completions',
  buildBody: (model, p) => openAiStyleBody(model, p, { streamUsage: true }),
  parseUsage: openAiStyleUsage,
  classifyError(status, body, retryAfterMs): ProviderError {
    const f = errorFields(body);
    const extra = { status, providerCode: f.code, retryAfterMs };
    if (f.code === 'insufficient_quota' || f.type === 'insufficient_quota') {
      return new ProviderError('provider_down', 'insufficient_balance', f.message, extra);
    }
    if (f.code === 'context_length_exceeded' || /maximum context length/i.test(f.message)) {
      return new ProviderError('fallback', 'context_length', f.message, extra);
    }
    if (f.code === 'content_filter' || f.code === 'content_policy_violation') {
      return new ProviderError('content_rejected', 'content_filter', f.message, extra);
    }
    if (f.code === 'invalid_api_key') return new ProviderError('provider_down', 'auth', f.message, extra);
    if (f.code === 'model_not_found' || /model .* not found/i.test(f.message)) {
      return new ProviderError('fallback', 'model_not_found', f.message, extra);
    }
    return genericError(status, f, retryAfterMs);
  },
  isContentFilterFinish: (r) => r === 'content_filter',
};
