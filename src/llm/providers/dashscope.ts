import type { CatalogModel } from '../catalog';
import { ChatMessage, ChatParams, ProviderError } from '../types';
import { DialectAdapter, errorFields, genericError, openAiStyleBody, openAiStyleUsage } from './dialect';

/**
 * Alibaba DashScope (Qwen) in its OpenAI-compatible mode. Its 429 insufficient_quota is a
 * per-minute quota that clears within a minute: a retry, not an empty account (unlike OpenAI's).
 * "Arrearage" is the empty account. JSON mode needs the word "json" somewhere in the messages.
 */
export const dashscope: DialectAdapter = {
  dialect: 'dashscope',
  chatPath: '/chat/completions',
  buildBody(model: CatalogModel, p: ChatParams) {
    const body = openAiStyleBody(model, { ...p, messages: withJsonWord(model, p.messages, p.jsonMode) }, { streamUsage: true });
    return body;
  },
  sentMessages: withJsonWord,
  parseUsage: openAiStyleUsage,
  classifyError(status, body, retryAfterMs): ProviderError {
    const f = errorFields(body);
    const extra = { status, providerCode: f.code, retryAfterMs };
    const code = f.code ?? f.type;
    if (code === 'data_inspection_failed' || f.type === 'data_inspection_failed') {
      return new ProviderError('content_rejected', 'content_filter', f.message, extra);
    }
    if (code === 'Arrearage' || f.type === 'Arrearage') {
      return new ProviderError('provider_down', 'insufficient_balance', f.message, extra);
    }
    if (code === 'limit_requests' || code === 'insufficient_quota' || code === 'Throttling') {
      // insufficient_quota here is the per-minute token quota: wait for the next minute.
      return new ProviderError('retryable', 'rate_limited', f.message, { ...extra, retryAfterMs: retryAfterMs ?? (code === 'insufficient_quota' ? 5_000 : undefined) });
    }
    if (code === 'invalid_parameter_error' && /input length|too long|max.*tokens/i.test(f.message)) {
      return new ProviderError('fallback', 'context_length', f.message, extra);
    }
    if (code === 'invalid_api_key') return new ProviderError('provider_down', 'auth', f.message, extra);
    if (code === 'model_not_found') return new ProviderError('fallback', 'model_not_found', f.message, extra);
    return genericError(status, f, retryAfterMs);
  },
  isContentFilterFinish: (r) => r === 'content_filter',
};

/** DashScope refuses JSON mode unless a message mentions "json": say so in the system message. */
function withJsonWord(model: CatalogModel, sent: ChatMessage[], jsonMode: boolean | undefined): ChatMessage[] {
  if (!jsonMode || !model.jsonMode || sent.some((m) => /json/i.test(m.content))) return sent;
  const messages = [...sent];
  const i = messages.findIndex((m) => m.role === 'system');
  if (i >= 0) messages[i] = { ...messages[i], content: `${messages[i].content}\nAnswer in JSON.` };
  else messages.unshift({ role: 'system', content: 'Answer in JSON.' });
  return messages;
}
