import { ProviderError } from '../types';
import { DialectAdapter, errorFields, genericError, openAiStyleBody, openAiStyleUsage } from './dialect';

/**
 * Zhipu BigModel (GLM). Errors carry a numeric business code: 1301 content filter (with a
 * top-level contentFilter list), 1113 account in arrears (sent as 429, but no retry helps), 1302
 * rate limit, 1261 prompt too long, 1000-1004 authentication. A stream stopped by its filter ends
 * with finish_reason "sensitive". Usage comes on the last stream chunk without stream_options.
 */
export const zhipu: DialectAdapter = {
  dialect: 'zhipu',
  chatPath: '/chat/completions',
  buildBody: (model, p) => openAiStyleBody(model, p, { streamUsage: false }),
  parseUsage: openAiStyleUsage,
  classifyError(status, body, retryAfterMs): ProviderError {
    const f = errorFields(body);
    const extra = { status, providerCode: f.code, retryAfterMs };
    const hasFilter = !!body && typeof body === 'object' && 'contentFilter' in (body as object);
    switch (f.code) {
      case '1301':
        return new ProviderError('content_rejected', 'content_filter', f.message, extra);
      case '1113':
        return new ProviderError('provider_down', 'insufficient_balance', f.message, extra);
      case '1302':
      case '1303':
      case '1305':
        return new ProviderError('retryable', 'rate_limited', f.message, extra);
      case '1261':
        return new ProviderError('fallback', 'context_length', f.message, extra);
      case '1000':
      case '1001':
      case '1002':
      case '1003':
      case '1004':
        return new ProviderError('provider_down', 'auth', f.message, extra);
      case '1211':
        return new ProviderError('fallback', 'model_not_found', f.message, extra);
    }
    if (hasFilter) return new ProviderError('content_rejected', 'content_filter', f.message, extra);
    return genericError(status, f, retryAfterMs);
  },
  isContentFilterFinish: (r) => r === 'sensitive' || r === 'content_filter',
  // "network_error": 模型推理异常, the model's inference failed mid-answer.
  isFailureFinish: (r) => r === 'network_error',
};
