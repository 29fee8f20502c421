import type { FakeProvider } from '../fake-provider/fake-provider';

/** Environment pointing every provider at the fake, with short timeouts and backoffs for tests. */
export function providerEnv(fake: FakeProvider, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DEEPSEEK_API_KEY: 'sk-test-deepseek',
    DEEPSEEK_BASE_URL: fake.baseUrl('deepseek'),
    ZHIPU_API_KEY: 'test-zhipu.key',
    ZHIPU_BASE_URL: fake.baseUrl('zhipu'),
    DASHSCOPE_API_KEY: 'sk-test-dashscope',
    DASHSCOPE_BASE_URL: fake.baseUrl('dashscope'),
    OPENAI_API_KEY: 'sk-test-openai',
    OPENAI_BASE_URL: fake.baseUrl('openai'),
    LLM_STANDARD_MODELS: 'deepseek:deepseek-flash,dashscope:qwen-flash,zhipu:glm-5.3-flash',
    LLM_DEEP_MODELS: 'dashscope:qwen3-max,zhipu:glm-5.3',
    LLM_RETRY_BASE_MS: '5',
    LLM_MAX_RETRIES: '2',
    LLM_MAX_RETRY_WAIT_MS: '2000',
    LLM_BREAKER_FAILURES: '3',
    LLM_BREAKER_COOLDOWN_MS: '300',
    LLM_PROVIDER_PROBE_MS: '300',
    LLM_CONNECT_TIMEOUT_MS: '1000',
    LLM_FIRST_BYTE_TIMEOUT_MS: '1500',
    LLM_TOTAL_TIMEOUT_MS: '4000',
    LLM_BATCH_WINDOW_MS: '100',
    LLM_BATCH_POLL_MS: '50',
    LLM_BATCH_LIST_SETTLE_MS: '300',
    LLM_BATCH_MAX_WAIT_MS: '10000',
    ...extra,
  };
}

/** A 429 answered without the preset's one-second Retry-After, so retries in tests are quick. */
export const quick = { 'retry-after': '0' };
