
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The caller's sampling options, passed to the model as given. */
export interface Sampling {
  temperature?: number;
  topP?: number;
  stop?: string[];
  seed?: number;
}

export function samplingOf(s: Sampling): Sampling {
  return { temperature: s.temperature, topP: s.topP, stop: s.stop, seed: s.seed };
}

/** What the gateway asks of one model in one call. */
export interface ChatParams extends Sampling {
  messages: ChatMessage[];
  maxTokens: number;
  jsonMode?: boolean;
  stream: boolean;
}

/** Token counts as the provider reported them, mapped to one shape. */
export interface Usage {
  inputTokens: number;
  /** input tokens served from the provider's prefix cache (priced as cached input) */
  cachedInputTokens: number;
  outputTokens: number;
}

export interface Completion {
  content: string;
  finishReason: string;
  usage: Usage | null;
}

/**
 * What to do about a failed call:
 * - retryable: the same model may answer if asked again after a pause (rate limit, 5xx, timeout)
 * - fallback: this model cannot serve this request; try the next one (context too long, bad output)
 * - provider_down: the provider's account cannot serve anything (no balance, bad key); take it out
 * - content_rejected: the provider's content filter refused; another provider may accept
 * - fatal: the request itself is wrong; no provider will accept it
 */
export type ErrorClass = 'retryable' | 'fallback' | 'provider_down' | 'content_rejected' | 'fatal';

export class ProviderError extends Error {
  constructor(
    readonly errorClass: ErrorClass,
    /** a short stable reason: rate_limited, insufficient_balance, content_filter, context_length, … */
    readonly reason: string,
    message: string,
    readonly extra: {
      status?: number;
      providerCode?: string;
      retryAfterMs?: number;
      usage?: Usage | null;
      /** the request had gone to the provider (a call cancelled after that may still be billed for its prompt) */
      sent?: boolean;
    } = {},
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}
