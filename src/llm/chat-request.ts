import { ApiError, FieldProblem } from '../common/errors';
import { TIERS, Tier } from './catalog';
import type { GatewayTarget } from './gateway.service';
import type { ChatMessage, Sampling } from './types';

/**
 * An OpenAI chat completion request, checked field by field. Unknown fields are ignored, as OpenAI
 * does; known ones this gateway does not honour (tools, log-probabilities, penalties) are refused by name.
 */
export interface ChatCompletionRequest extends Sampling {
  target: GatewayTarget;
  requestedModel: string;
  messages: ChatMessage[];
  maxTokens?: number;
  jsonMode: boolean;
  stream: boolean;
  includeUsage: boolean;
}

export const TIER_ALIASES: Record<string, Tier> = { 'inkstone-standard': 'standard', 'inkstone-deep': 'deep' };

const ROLES = ['system', 'user', 'assistant', 'developer'];
const MAX_MESSAGES = 500;

/**
 * POST /v1/chat/completions, as the OpenAI API takes it (the fields this gateway reads; a field it
 * cannot honour, such as `tools` or `logprobs`, is refused by name, never dropped). For the
 * OpenAPI document: parseChatRequest reads the body itself.
 */
export interface ChatCompletionBody {
  /** a tier alias (`inkstone-standard`, `inkstone-deep`) or a model of GET /v1/models, by id or `provider:id` */
  model: string;
  /** 1 to 500 messages; `developer` is taken as `system` */
  messages: Array<{ role: 'system' | 'developer' | 'user' | 'assistant'; content: string | Array<{ type: 'text'; text: string }> }>;
  /** 1 to 200,000 (`max_completion_tokens` wins when both are sent) */
  max_tokens?: number;
  max_completion_tokens?: number;
  /** 0 to 2 */
  temperature?: number;
  /** 0 to 1 */
  top_p?: number;
  seed?: number;
  /** 1 only */
  n?: number;
  /** a string or up to 4 */
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** `json_object`: the answer is checked to be JSON (an attempt that is not fails over) */
  response_format?: { type: 'text' | 'json_object' };
}

export function parseChatRequest(body: unknown): ChatCompletionRequest {
  const problems: FieldProblem[] = [];
  const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw ApiError.validation([{ field: 'body', message: 'must be a JSON object' }]);
  }

  let target: GatewayTarget = { tier: 'standard' };
  const model = b.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 200) {
    problems.push({ field: 'model', message: `model must be a tier alias (${Object.keys(TIER_ALIASES).join(', ')}) or a catalog model id` });
  } else if (Object.hasOwn(TIER_ALIASES, model)) {
    // (Own keys only: "constructor" or "__proto__" read from the object's prototype was a 500.)
    target = { tier: TIER_ALIASES[model] };
  } else if ((TIERS as readonly string[]).includes(model)) {
    target = { tier: model as Tier };
  } else {
    target = { model };
  }

  const messages: ChatMessage[] = [];
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    problems.push({ field: 'messages', message: 'messages must be a non-empty array' });
  } else if (b.messages.length > MAX_MESSAGES) {
    problems.push({ field: 'messages', message: `messages may hold at most ${MAX_MESSAGES} entries` });
  } else {
    b.messages.forEach((m: unknown, i: number) => {
      const msg = m as { role?: unknown; content?: unknown };
      if (!msg || typeof msg !== 'object' || typeof msg.role !== 'string' || !ROLES.includes(msg.role)) {
        problems.push({ field: `messages[${i}].role`, message: `role must be one of ${ROLES.join(', ')}` });
        return;
      }
      const content = textContent(msg.content);
      if (content === null) {
        problems.push({ field: `messages[${i}].content`, message: 'content must be a string or an array of text parts' });
        return;
      }
      messages.push({ role: msg.role === 'developer' ? 'system' : (msg.role as ChatMessage['role']), content });
    });
  }

  const num = (field: string, min: number, max: number, integer = false): number | undefined => {
    const v = b[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      problems.push({ field, message: `${field} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}` });
      return undefined;
    }
    return v;
  };
  const maxTokens = num('max_completion_tokens', 1, 200_000, true) ?? num('max_tokens', 1, 200_000, true);
  const temperature = num('temperature', 0, 2);
  const topP = num('top_p', 0, 1);
  const seed = num('seed', -(2 ** 31), 2 ** 31 - 1, true);
  const n = num('n', 1, 1, true);
  void n;

  let stop: string[] | undefined;
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.every((x) => typeof x === 'string') && b.stop.length <= 4) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) problems.push({ field: 'stop', message: 'stop must be a string or up to 4 strings' });

  let jsonMode = false;
  const rf = b.response_format as { type?: unknown } | undefined;
  if (rf !== undefined && rf !== null) {
    if (typeof rf !== 'object' || !['text', 'json_object'].includes(String(rf.type))) {
      problems.push({ field: 'response_format', message: 'response_format.type must be "text" or "json_object"' });
    } else jsonMode = rf.type === 'json_object';
  }

  // What this gateway does not do is refused by name, never ignored: an answer without the tool call,
  // the log-probabilities or the sampling asked for (and a cached answer shared with a request that
  // did not ask) would look like success. Their neutral values are taken (clients send them by default).
  const unsupported = (field: string, what: string) => problems.push({ field, message: `${field} is not supported by this gateway (${what})` });
  for (const field of ['tools', 'functions'] as const) {
    const v = b[field];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) unsupported(field, 'no tool or function calling');
  }
  if (b.tool_choice !== undefined && b.tool_choice !== null && b.tool_choice !== 'none' && b.tool_choice !== 'auto') unsupported('tool_choice', 'no tool calling');
  if (b.function_call !== undefined && b.function_call !== null && b.function_call !== 'none' && b.function_call !== 'auto') unsupported('function_call', 'no function calling');
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false) unsupported('logprobs', 'no log-probabilities');
  if (b.top_logprobs !== undefined && b.top_logprobs !== null && b.top_logprobs !== 0) unsupported('top_logprobs', 'no log-probabilities');
  for (const field of ['presence_penalty', 'frequency_penalty'] as const) {
    const v = b[field];
    if (v !== undefined && v !== null && v !== 0) unsupported(field, 'only 0');
  }
  const bias = b.logit_bias;
  if (bias !== undefined && bias !== null && !(typeof bias === 'object' && !Array.isArray(bias) && Object.keys(bias).length === 0)) unsupported('logit_bias', 'no token biases');

  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') {
    problems.push({ field: 'stream', message: 'stream must be true or false' });
  }
  const so = b.stream_options as { include_usage?: unknown } | undefined;

  if (problems.length) throw ApiError.validation(problems);
  return {
    target,
    requestedModel: model as string,
    messages,
    maxTokens,
    temperature,
    topP,
    stop,
    seed,
    jsonMode,
    stream: b.stream === true,
    includeUsage: !!so && typeof so === 'object' && so.include_usage === true,
  };
}

/** A message's text: a string, or OpenAI's array of `{type: "text", text}` parts. */
function textContent(content: unknown): string | null {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    const parts: string[] = [];
    for (const p of content) {
      const part = p as { type?: unknown; text?: unknown };
      if (!part || part.type !== 'text' || typeof part.text !== 'string') return null;
      parts.push(part.text);
    }
    return parts.join('');
  }
  return null;
}

/**
 * Meaning-preserving cleanup of chat content: invisible characters, CR line ends, trailing spaces.
 * Linear: each run of spaces and tabs is found once and dropped when a line ends after it (the
 * regular expression `/[ \t]+$/gm` this replaces retried every position of a run: 20,000 spaces
 * held the event loop for seconds).
 */
export function normalizeChatContent(text: string): string {
  const t = text.replace(/[\u200B-\u200D\u2060\uFEFF]/g, '').replace(/\r\n?/g, '\n');
  const runs = /[ \t]+/g;
  let out = '';
  let kept = 0;
  for (let m = runs.exec(t); m; m = runs.exec(t)) {
    const end = m.index + m[0].length;
    if (end === t.length || isLineEnd(t.charCodeAt(end))) {
      out += t.slice(kept, m.index);
      kept = end;
    }
  }
  return kept === 0 ? t : out + t.slice(kept);
}

/** The line terminators `$` matches before under the `m` flag (CR is gone by then). */
function isLineEnd(code: number): boolean {
  return code === 0x0a || code === 0x2028 || code === 0x2029;
}
