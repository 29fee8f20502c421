import { Injectable } from '@nestjs/common';
import type { TenantAuth } from '../common/auth';
import { ChatCompletionRequest, normalizeChatContent, parseChatRequest } from './chat-request';
import { GatewayResult, GatewayService } from './gateway.service';
import { gatewayToApiError } from './gateway-errors';
import { ResponseCache } from './response-cache';
import { samplingOf } from './types';
import type { GatewayRequest, GatewayStreamEvent, Validation } from './gateway-types';

/** A chat stream as the controller writes it: each event with its SSE `data:` payloads. */
export interface ChatStreamHandle {
  events: AsyncGenerator<{ type: 'start' | 'delta' | 'end'; provider: string; model: string; cache: 'hit' | 'miss'; sse: string[] }>;
  abort(): void;
  toApiError(err: unknown): unknown;
  /** The answer is whole (and paid for) before its first event: JSON mode, checked before it is sent. */
  whole: boolean;
}

/**
 * The OpenAI-compatible chat endpoint over the gateway: the request is normalized (invisible
 * characters, line ends, trailing spaces), cached by its normalized form, and answered in
 * OpenAI's shapes.
 */
@Injectable()
export class ChatService {
  constructor(private readonly gateway: GatewayService) {}

  parse(body: unknown): ChatCompletionRequest {
    return parseChatRequest(body);
  }

  private gatewayRequest(auth: TenantAuth, req: ChatCompletionRequest, opts: { noCache: boolean; requestId: string; clientGone?: () => AbortSignal }, signal?: AbortSignal) {
    const messages = req.messages.map((m) => ({ role: m.role, content: normalizeChatContent(m.content) }));
    const key = ResponseCache.key({
      v: 1,
      kind: 'chat',
      target: req.target,
      messages,
      maxTokens: req.maxTokens ?? null,
      temperature: req.temperature ?? null,
      topP: req.topP ?? null,
      stop: req.stop ?? null,
      seed: req.seed ?? null,
      json: req.jsonMode,
    });
    return {
      tenantId: auth.tenantId,
      apiKeyId: auth.keyId,
      requestId: opts.requestId,
      purpose: 'chat' as const,
      target: req.target,
      messages,
      maxTokens: req.maxTokens,
      ...samplingOf(req),
      jsonMode: req.jsonMode,
      // JSON mode: an answer that is not JSON is a failed attempt (the next candidate is tried), never a 200
      validate: req.jsonMode ? validJson : undefined,
      cache: { key, lookup: !opts.noCache, store: true },
      uncompressed: req.messages,
      signal,
      waitSignal: opts.clientGone,
    };
  }

  /** A whole answer; `clientGone` drops the call while it still waits for a provider slot (it is then never sent). */
  async complete(auth: TenantAuth, req: ChatCompletionRequest, opts: { noCache: boolean; requestId: string; clientGone?: () => AbortSignal }) {
    let result: GatewayResult<string>;
    try {
      result = await this.gateway.complete(this.gatewayRequest(auth, req, opts));
    } catch (err) {
      throw gatewayToApiError(err);
    }
    return { result, response: completionBody(result) };
  }

  stream(auth: TenantAuth, req: ChatCompletionRequest, opts: { noCache: boolean; requestId: string }): ChatStreamHandle {
    const abort = new AbortController();
    const request = this.gatewayRequest(auth, req, opts, abort.signal);
    // JSON mode is answered whole and checked before its first byte is sent (then relayed as one
    // chunk): a stream commits at its first token, and an answer that is not JSON must never be a 200.
    const source = req.jsonMode ? wholeAnswer(this.gateway, request) : this.gateway.stream(request);
    const created = Math.floor(Date.now() / 1000);
    async function* events(): ChatStreamHandle['events'] {
      let provider = '';
      let model = '';
      let cache: 'hit' | 'miss' = 'miss';
      let id = '';
      const chunk = (delta: object, finish: string | null) =>
        JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
      try {
        for await (const ev of source) {
          if (ev.type === 'start') {
            ({ provider, model, cache } = ev);
            id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
            yield { type: 'start', provider, model, cache, sse: [chunk({ role: 'assistant', content: '' }, null)] };
          } else if (ev.type === 'delta') {
            yield { type: 'delta', provider, model, cache, sse: [chunk({ content: ev.text }, null)] };
          } else {
            const r = ev.result;
            const sse = [chunk({}, r.finishReason)];
            if (req.includeUsage) {
              sse.push(JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageBody(r) }));
            }
            yield { type: 'end', provider, model, cache, sse };
          }
        }
      } finally {
        await source.return(undefined);
      }
    }
    return { events: events(), abort: () => abort.abort(), toApiError: gatewayToApiError, whole: req.jsonMode };
  }
}

/** JSON mode's promise: the content parses as JSON (an object or array, as the providers' JSON modes give). */
export function validJson(content: string): Validation<string> {
  try {
    const v: unknown = JSON.parse(content);
    if (v !== null && typeof v === 'object') return { ok: true, value: content };
    return { ok: false, problem: 'JSON mode: the answer is a JSON scalar, not an object' };
  } catch {
    return { ok: false, problem: 'JSON mode: the answer is not valid JSON' };
  }
}

/** A whole answer as the events of a stream: start, its content in one delta, end. */
async function* wholeAnswer(gateway: GatewayService, request: GatewayRequest<string>): AsyncGenerator<GatewayStreamEvent<string>> {
  const r = await gateway.complete(request);
  yield { type: 'start', provider: r.provider, model: r.model, cache: r.cache };
  yield { type: 'delta', text: r.content };
  yield { type: 'end', result: r };
}

/** A chat completion as OpenAI answers one (non-streaming); a cache hit reports no tokens, as it was not billed. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  /** the model that answered (GET /v1/models); `x-inkstone-provider` names its provider */
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    finish_reason: string;
    logprobs: null;
  }>;
  usage: ChatUsage;
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

function usageBody(r: GatewayResult<string>): ChatUsage {
  // A cache hit was not billed: it reports no tokens.
  const u = r.cache === 'hit' ? { inputTokens: 0, cachedInputTokens: 0, outputTokens: 0 } : r.usage;
  return {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.inputTokens + u.outputTokens,
    prompt_tokens_details: { cached_tokens: u.cachedInputTokens },
  };
}

function completionBody(r: GatewayResult<string>): ChatCompletion {
  return {
    id: `chatcmpl-${r.callGroup.replace(/-/g, '')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: r.model,
    choices: [{ index: 0, message: { role: 'assistant', content: r.content, refusal: null }, finish_reason: r.finishReason, logprobs: null }],
    usage: usageBody(r),
  };
}
