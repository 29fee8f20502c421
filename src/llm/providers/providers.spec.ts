import { Catalog } from '../catalog';
import { ProviderError } from '../types';
import { ADAPTERS } from './index';

/** Error bodies and usage objects as the providers send them. */
const catalog = Catalog.load();
const model = (key: string) => catalog.models.get(key)!;

function expectClass(err: ProviderError, errorClass: string, reason: string): void {
  expect({ errorClass: err.errorClass, reason: err.reason }).toEqual({ errorClass, reason });
}

describe('DeepSeek dialect', () => {
  const a = ADAPTERS.deepseek;

  it('maps prompt_cache_hit_tokens and prompt_cache_miss_tokens', () => {
    expect(a.parseUsage({ prompt_tokens: 1200, completion_tokens: 300, total_tokens: 1500, prompt_cache_hit_tokens: 1024, prompt_cache_miss_tokens: 176 })).toEqual({
      inputTokens: 1200,
      cachedInputTokens: 1024,
      outputTokens: 300,
    });
  });

  it.each([
    [402, { error: { message: 'Insufficient Balance', type: 'unknown_error', param: null, code: 'invalid_request_error' } }, 'provider_down', 'insufficient_balance'],
    [429, { error: { message: 'Rate Limit Reached', type: 'rate_limit_error', param: null, code: 'rate_limit_reached' } }, 'retryable', 'rate_limited'],
    [400, { error: { message: 'Content Exists Risk', type: 'invalid_request_error', param: null, code: 'invalid_request_error' } }, 'content_rejected', 'content_filter'],
    [
      400,
      { error: { message: "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens (62000 in the messages, 8000 in the completion).", type: 'invalid_request_error', param: null, code: 'invalid_request_error' } },
      'fallback',
      'context_length',
    ],
    [401, { error: { message: 'Authentication Fails', type: 'authentication_error', param: null, code: 'invalid_request_error' } }, 'provider_down', 'auth'],
    [500, { error: { message: 'Internal Server Error', type: 'api_error', param: null, code: 'internal_server_error' } }, 'retryable', 'server_error'],
    [503, { error: { message: 'Server overloaded', type: 'api_error', param: null, code: 'server_overloaded' } }, 'retryable', 'overloaded'],
    [422, { error: { message: 'Invalid Parameters', type: 'invalid_request_error', param: null, code: 'invalid_request_error' } }, 'fatal', 'bad_request'],
  ])('classifies %i %j', (status, body, errorClass, reason) => {
    expectClass(a.classifyError(status, body), errorClass, reason);
  });

  it('asks for usage in streams and JSON mode where the model supports it', () => {
    const body = a.buildBody(model('deepseek:deepseek-flash'), { messages: [{ role: 'user', content: 'hi' }], maxTokens: 10, stream: true, jsonMode: true });
    expect(body).toMatchObject({ model: 'deepseek-flash', max_tokens: 10, stream: true, stream_options: { include_usage: true }, response_format: { type: 'json_object' } });
  });

  it("sends the catalog's request options: thinking mode off (DeepSeek V4 thinks by default)", () => {
    const body = a.buildBody(model('deepseek:deepseek-flash'), { messages: [{ role: 'user', content: 'hi' }], maxTokens: 10, stream: false });
    expect(body.thinking).toEqual({ type: 'disabled' });
    expect(ADAPTERS.dashscope.buildBody(model('dashscope:qwen-flash'), { messages: [], maxTokens: 5, stream: false }).enable_thinking).toBe(false);
    expect(ADAPTERS.openai.buildBody(model('openai:gpt-6-luna'), { messages: [], maxTokens: 5, stream: false }).reasoning_effort).toBe('none');
    expect(ADAPTERS.openai.buildBody(model('openai:gpt-6.2-sol'), { messages: [], maxTokens: 5, stream: false })).not.toHaveProperty('reasoning_effort');
  });
});

describe('Zhipu dialect', () => {
  const a = ADAPTERS.zhipu;
  it.each([
    [400, { contentFilter: [{ level: 1, role: 'user' }], error: { code: '1301', message: '系统检测到输入或生成内容可能包含不安全或敏感内容' } }, 'content_rejected', 'content_filter'],
    [429, { error: { code: '1113', message: '您的账户已欠费，请充值后重试。' } }, 'provider_down', 'insufficient_balance'],
    [429, { error: { code: '1302', message: '您当前使用该API的并发数过高' } }, 'retryable', 'rate_limited'],
    [400, { error: { code: '1261', message: 'Prompt 超长' } }, 'fallback', 'context_length'],
    [401, { error: { code: '1000', message: '身份验证失败。' } }, 'provider_down', 'auth'],
    [500, { error: { code: '500', message: 'Internal Error' } }, 'retryable', 'server_error'],
  ])('classifies %i %j', (status, body, errorClass, reason) => {
    expectClass(a.classifyError(status, body), errorClass, reason);
  });

  it('treats finish_reason "sensitive" as a content filter stop', () => {
    expect(a.isContentFilterFinish('sensitive')).toBe(true);
    expect(a.isContentFilterFinish('stop')).toBe(false);
  });

  it('treats finish_reason "network_error" (模型推理异常) as a failure mid-answer, not a whole answer', () => {
    expect(a.isFailureFinish?.('network_error')).toBe(true);
    expect(a.isFailureFinish?.('stop')).toBe(false);
    expect(a.isFailureFinish?.('length')).toBe(false);
  });

  it('reads cached tokens from prompt_tokens_details and does not send stream_options', () => {
    expect(a.parseUsage({ prompt_tokens: 100, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 64 } })).toEqual({ inputTokens: 100, cachedInputTokens: 64, outputTokens: 5 });
    expect(a.buildBody(model('zhipu:glm-5.3-flash'), { messages: [], maxTokens: 5, stream: true })).not.toHaveProperty('stream_options');
  });
});

describe('DashScope dialect', () => {
  const a = ADAPTERS.dashscope;
  const rid = { request_id: '3f2a' };
  it.each([
    [400, { error: { message: 'Input data may contain inappropriate content.', type: 'data_inspection_failed', param: null, code: 'data_inspection_failed' }, ...rid }, 'content_rejected', 'content_filter'],
    [400, { error: { message: 'Access denied, please make sure your account is in good standing.', type: 'Arrearage', param: null, code: 'Arrearage' }, ...rid }, 'provider_down', 'insufficient_balance'],
    [429, { error: { message: 'You exceeded your current requests list.', type: 'limit_requests', param: null, code: 'limit_requests' }, ...rid }, 'retryable', 'rate_limited'],
    [429, { error: { message: 'You exceeded your current quota', type: 'insufficient_quota', param: null, code: 'insufficient_quota' }, ...rid }, 'retryable', 'rate_limited'],
    [400, { error: { message: '<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 129024]', type: 'invalid_request_error', param: null, code: 'invalid_parameter_error' }, ...rid }, 'fallback', 'context_length'],
    [401, { error: { message: 'Incorrect API key provided. ', type: 'invalid_request_error', param: null, code: 'invalid_api_key' }, ...rid }, 'provider_down', 'auth'],
  ])('classifies %i %j', (status, body, errorClass, reason) => {
    expectClass(a.classifyError(status, body), errorClass, reason);
  });

  it('waits for the next minute on a per-minute insufficient_quota even without Retry-After', () => {
    const e = a.classifyError(429, { error: { code: 'insufficient_quota', message: 'quota' } });
    expect(e.extra.retryAfterMs).toBeGreaterThan(0);
  });

  it('puts the word "json" in the messages when JSON mode is asked for', () => {
    const body = a.buildBody(model('dashscope:qwen-flash'), { messages: [{ role: 'system', content: '批改作文' }, { role: 'user', content: '作文' }], maxTokens: 5, stream: false, jsonMode: true });
    expect(JSON.stringify(body.messages)).toMatch(/json/i);
    expect(body.response_format).toEqual({ type: 'json_object' });
    const already = a.buildBody(model('dashscope:qwen-flash'), { messages: [{ role: 'user', content: 'answer in JSON' }], maxTokens: 5, stream: false, jsonMode: true });
    expect(already.messages).toEqual([{ role: 'user', content: 'answer in JSON' }]);
  });
});

describe('OpenAI-compatible dialect', () => {
  const a = ADAPTERS.openai;
  it.each([
    [429, { error: { message: 'You exceeded your current quota', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }, 'provider_down', 'insufficient_balance'],
    [429, { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, 'retryable', 'rate_limited'],
    [400, { error: { message: "This model's maximum context length is 128000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } }, 'fallback', 'context_length'],
    [400, { error: { message: 'filtered', type: null, param: 'prompt', code: 'content_filter', status: 400 } }, 'content_rejected', 'content_filter'],
    [401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, 'provider_down', 'auth'],
    [404, { error: 'model "llama3" not found, try pulling it first' }, 'fallback', 'model_not_found'],
    [500, { error: { message: 'The server had an error', type: 'server_error', param: null, code: null } }, 'retryable', 'server_error'],
    [502, '<html>Bad Gateway</html>', 'retryable', 'server_error'],
  ])('classifies %i %j', (status, body, errorClass, reason) => {
    expectClass(a.classifyError(status, body), errorClass, reason);
  });

  it('reads prompt_tokens_details.cached_tokens and tolerates missing or broken usage', () => {
    expect(a.parseUsage({ prompt_tokens: 2000, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 1920 } })).toEqual({ inputTokens: 2000, cachedInputTokens: 1920, outputTokens: 10 });
    expect(a.parseUsage({ prompt_tokens: 20, completion_tokens: 1 })).toEqual({ inputTokens: 20, cachedInputTokens: 0, outputTokens: 1 });
    expect(a.parseUsage(null)).toBeNull();
    expect(a.parseUsage({ prompt_tokens: '20' })).toBeNull();
  });
});
