/**
 * Real error answers of the four model providers the gateway talks to, as their OpenAI-compatible
 * chat-completions endpoints send them (status, JSON body and, for 429s, a `retry-after` header).
 *
 * The bodies are copied from the providers' answers (and checked against their published error-code
 * pages), so the gateway's error mapping can be tested against what it will really receive.
 *
 * DashScope puts a fresh `request_id` (a UUID) in every error body; the value stored here is a
 * placeholder that the fake provider replaces on every answer ({@link materializePreset}).
 *
 * Not every provider behaviour is a status and a body: Zhipu's streamed content-filter stop
 * (`stream_sensitive`) is a 200 stream, so it is listed in {@link BEHAVIOUR_PRESETS} and produced by
 * the server itself.
 */
import { randomUUID } from 'node:crypto';

/** The four providers, named after the API dialect each one speaks. */
export type Dialect = 'deepseek' | 'zhipu' | 'dashscope' | 'openai';

export const DIALECTS: readonly Dialect[] = ['deepseek', 'zhipu', 'dashscope', 'openai'];

/** One canned error answer. */
export interface Preset {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The placeholder `request_id` in DashScope bodies; replaced by a fresh UUID on every answer. */
export const REQUEST_ID_PLACEHOLDER = '00000000-0000-0000-0000-000000000000';

const RETRY_AFTER_1 = { 'retry-after': '1' } as const;

/** OpenAI-style error object: `{ error: { message, type, param, code } }`. */
function openAiError(message: string, type: string | null, code: string | null, param: string | null = null) {
  return { error: { message, type, param, code } };
}

/** DashScope's compatible mode: an OpenAI-style error plus a top-level `request_id`. */
function dashScopeError(message: string, type: string, code: string) {
  return { ...openAiError(message, type, code), request_id: REQUEST_ID_PLACEHOLDER };
}

/** Zhipu (BigModel): `{ error: { code: "<business code>", message } }`, messages in Chinese. */
function zhipuError(code: string, message: string) {
  return { error: { code, message } };
}

export const PRESETS: Record<Dialect, Record<string, Preset>> = {
  deepseek: {
    insufficient_balance: {
      status: 402,
      body: openAiError('Insufficient Balance', 'unknown_error', 'invalid_request_error'),
    },
    rate_limit: {
      status: 429,
      body: openAiError('Rate Limit Reached', 'rate_limit_error', 'rate_limit_reached'),
      headers: { ...RETRY_AFTER_1 },
    },
    content_risk: {
      status: 400,
      body: openAiError('Content Exists Risk', 'invalid_request_error', 'invalid_request_error'),
    },
    context_length: {
      status: 400,
      body: openAiError(
        deepSeekContextMessage(65536, 62000, 8000),
        'invalid_request_error',
        'invalid_request_error',
      ),
    },
    auth: {
      status: 401,
      body: openAiError(
        'Authentication Fails, Your api key: ****abcd is invalid',
        'authentication_error',
        'invalid_request_error',
      ),
    },
    server_error: {
      status: 500,
      body: openAiError('Internal Server Error', 'api_error', 'internal_server_error'),
    },
    overloaded: {
      status: 503,
      body: openAiError('Server overloaded, please try again later', 'api_error', 'server_overloaded'),
    },
  },
  zhipu: {
    content_filter: {
      status: 400,
      body: {
        contentFilter: [{ level: 1, role: 'user' }],
        ...zhipuError(
          '1301',
          '系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。',
        ),
      },
    },
    arrears: {
      status: 429,
      body: zhipuError('1113', '您的账户已欠费，请充值后重试。'),
      headers: { ...RETRY_AFTER_1 },
    },
    rate_limit: {
      status: 429,
      body: zhipuError('1302', '您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。'),
      headers: { ...RETRY_AFTER_1 },
    },
    prompt_too_long: {
      status: 400,
      body: zhipuError('1261', 'Prompt 超长'),
    },
    auth: {
      status: 401,
      body: zhipuError('1000', '身份验证失败。'),
    },
    server_error: {
      status: 500,
      body: zhipuError('500', 'Internal Error'),
    },
  },
  dashscope: {
    data_inspection_failed: {
      status: 400,
      body: dashScopeError('Input data may contain inappropriate content.', 'data_inspection_failed', 'data_inspection_failed'),
    },
    arrearage: {
      status: 400,
      body: dashScopeError('Access denied, please make sure your account is in good standing.', 'Arrearage', 'Arrearage'),
    },
    limit_requests: {
      status: 429,
      body: dashScopeError('You exceeded your current requests list.', 'limit_requests', 'limit_requests'),
      headers: { ...RETRY_AFTER_1 },
    },
    insufficient_quota: {
      status: 429,
      body: dashScopeError(
        'You exceeded your current quota, please check your plan and billing details.',
        'insufficient_quota',
        'insufficient_quota',
      ),
      headers: { ...RETRY_AFTER_1 },
    },
    input_length: {
      status: 400,
      body: dashScopeError(dashScopeInputLengthMessage(129024), 'invalid_request_error', 'invalid_parameter_error'),
    },
    auth: {
      status: 401,
      body: dashScopeError('Incorrect API key provided. ', 'invalid_request_error', 'invalid_api_key'),
    },
    server_error: {
      status: 500,
      body: dashScopeError(
        'An internal error has occured, please try again later or contact service support.',
        'internal_error',
        'internal_error',
      ),
    },
  },
  openai: {
    rate_limit: {
      status: 429,
      body: openAiError('Rate limit reached for requests', 'requests', 'rate_limit_exceeded'),
      headers: { ...RETRY_AFTER_1 },
    },
    insufficient_quota: {
      status: 429,
      body: openAiError(
        'You exceeded your current quota, please check your plan and billing details.',
        'insufficient_quota',
        'insufficient_quota',
      ),
      headers: { ...RETRY_AFTER_1 },
    },
    context_length: {
      status: 400,
      body: openAiError(openAiContextMessage(128000, 130000, 0), 'invalid_request_error', 'context_length_exceeded', 'messages'),
    },
    content_filter: {
      status: 400,
      body: {
        error: {
          message: 'The response was filtered due to the prompt triggering content management policy.',
          type: null,
          param: 'prompt',
          code: 'content_filter',
          status: 400,
        },
      },
    },
    auth: {
      status: 401,
      body: openAiError(
        'Incorrect API key provided: sk-****. You can find your API key at https://platform.openai.com/account/api-keys.',
        'invalid_request_error',
        'invalid_api_key',
      ),
    },
    server_error: {
      status: 500,
      body: openAiError('The server had an error while processing your request. Sorry about that!', 'server_error', null),
    },
    model_not_found: {
      status: 404,
      body: openAiError(
        'The model `x` does not exist or you do not have access to it.',
        'invalid_request_error',
        'model_not_found',
      ),
    },
  },
};

/**
 * Presets that are behaviours rather than a status and a body; the server produces them.
 * - zhipu `stream_sensitive`: a 200 answer whose first chunk stops with finish_reason "sensitive"
 *   and empty content (Zhipu's content filter firing mid-generation). Non-streaming requests get the
 *   same as a plain completion with empty content.
 */
export const BEHAVIOUR_PRESETS: Record<Dialect, readonly string[]> = {
  deepseek: [],
  zhipu: ['stream_sensitive'],
  dashscope: [],
  openai: [],
};

/** True when `name` is a preset (status/body or behaviour) of dialect `d`. */
export function isPreset(d: Dialect, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(PRESETS[d], name) || BEHAVIOUR_PRESETS[d].includes(name);
}

/**
 * A copy of a preset ready to send: DashScope's placeholder `request_id` replaced by a fresh UUID and
 * `extraHeaders` merged over the preset's own headers (so a step can override `retry-after`).
 */
export function materializePreset(preset: Preset, extraHeaders?: Record<string, string>): Preset {
  const body = structuredClone(preset.body);
  if (isRecord(body) && body.request_id === REQUEST_ID_PLACEHOLDER) body.request_id = randomUUID();
  const headers = { ...(preset.headers ?? {}), ...lowerCaseKeys(extraHeaders ?? {}) };
  return { status: preset.status, body, headers };
}

/** What the prompt and completion sizes were when a request did not fit the model's window. */
export interface ContextOverflow {
  /** The model's context window in tokens. */
  window: number;
  /** Tokens in the messages (the answer's would-be prompt_tokens). */
  promptTokens: number;
  /** The request's max_tokens (0 when it set none). */
  maxTokens: number;
}

/**
 * The dialect's "context too long" answer with the real numbers filled in: DeepSeek and OpenAI
 * state the window and the sizes, DashScope the allowed input range, Zhipu only says 1261.
 * Like the entries of {@link PRESETS}, pass it through {@link materializePreset} before sending.
 */
export function contextLengthPreset(d: Dialect, o: ContextOverflow): Preset {
  switch (d) {
    case 'deepseek':
      return {
        status: 400,
        body: openAiError(
          deepSeekContextMessage(o.window, o.promptTokens, o.maxTokens),
          'invalid_request_error',
          'invalid_request_error',
        ),
      };
    case 'openai':
      return {
        status: 400,
        body: openAiError(
          openAiContextMessage(o.window, o.promptTokens, o.maxTokens),
          'invalid_request_error',
          'context_length_exceeded',
          'messages',
        ),
      };
    case 'dashscope':
      return {
        status: 400,
        body: dashScopeError(dashScopeInputLengthMessage(o.window), 'invalid_request_error', 'invalid_parameter_error'),
      };
    case 'zhipu':
      return PRESETS.zhipu.prompt_too_long;
  }
}

/** DashScope's answer to JSON mode without the word "json" in the messages (to be materialized). */
export function dashScopeJsonWordPreset(): Preset {
  return {
    status: 400,
    body: dashScopeError(
      "<400> InternalError.Algo.InvalidParameter: 'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
      'invalid_request_error',
      'invalid_parameter_error',
    ),
  };
}

function deepSeekContextMessage(window: number, prompt: number, completion: number): string {
  return (
    `This model's maximum context length is ${window} tokens. However, you requested ${prompt + completion} tokens ` +
    `(${prompt} in the messages, ${completion} in the completion). Please reduce the length of the messages or completion.`
  );
}

/** OpenAI's wording differs when the request set max_tokens (then it names both parts). */
function openAiContextMessage(window: number, prompt: number, completion: number): string {
  if (completion > 0) {
    return (
      `This model's maximum context length is ${window} tokens. However, you requested ${prompt + completion} tokens ` +
      `(${prompt} in the messages, ${completion} in the completion). Please reduce the length of the messages or completion.`
    );
  }
  return (
    `This model's maximum context length is ${window} tokens. However, your messages resulted in ${prompt} tokens. ` +
    'Please reduce the length of the messages.'
  );
}

function dashScopeInputLengthMessage(window: number): string {
  return `<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, ${window}]`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function lowerCaseKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}
