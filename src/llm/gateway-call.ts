import { createHash } from 'node:crypto';
import type { LedgerEntry } from '../billing/ledger.service';
import type { BatchRef, Reservation, TokenIncident } from '../billing/budget.service';
import type { Nanos } from '../common/money';
import type { CatalogModel, Pricing } from './catalog';
import { GatewayError, GatewayRequest, GatewayResult } from './gateway-types';
import type { StreamEvent } from './provider-client';
import { estimateTextTokens } from './tokens';
import { ChatParams, ProviderError, samplingOf, Usage } from './types';

/** One gateway call's internal state, and the small rules its attempts are accounted by. */

export type AttemptOutcome<T, R = GatewayResult<T>> =
  | { kind: 'ok'; result: R }
  | { kind: 'invalid'; content: string; problem: string; finishReason?: string }
  | { kind: 'error'; error: ProviderError }
  | { kind: 'budget' }
  | { kind: 'skip'; reason: string };

/** An attempt admission let through: its reservation, prompt estimate and parameters. */
export interface Admitted {
  reservation: Reservation;
  estimate: number;
  saved: number;
  params: ChatParams;
  /** taken over from a process that sent it in a provider batch and stopped: wait for that batch */
  adopted?: BatchRef;
}

/** An admitted call as it is made: priced at its start, timed, batch or streamed. */
export interface PaidCall extends Admitted {
  pricing: Pricing;
  priceWindow: string | null;
  t0: number;
  batch: boolean;
  streamed: boolean;
}

/** A stream that produced its first token: the model is committed to. */
export interface OpenStream {
  model: CatalogModel;
  call: PaidCall;
  events: AsyncGenerator<StreamEvent>;
  release: () => void;
  first: string;
  usage: Usage | null;
  finishReason: string;
}

export interface CallContext<T> {
  req: GatewayRequest<T>;
  group: string;
  attempt: number;
  started: number;
  tried: string[];
  budgetRefused: boolean;
  /** the refusal was a pause after an incident, not an empty budget */
  admissionPaused?: boolean;
  /** the least worst case the budget refused, of the models tried (the refused-call alert's `needed`) */
  refusedNeeded?: Nanos;
  /** a candidate was passed over while its breaker is open (its provider failing of late) */
  passedCooling?: boolean;
  /** the candidate whose guard holds this guarded call's answer (or its batch), found on a cache hit: tried first */
  keptBy?: CatalogModel;
  contentRejected: boolean;
  /** candidates passed over because the request does not fit their context window */
  tooLong?: number;
  /** after a first try through a batch, repairs, retries and fallbacks go in real time */
  realtimeOnly: boolean;
  /** with req.priceAsOf: what the paid calls so far cost less than in real time then */
  scheduleSaved: Nanos;
  lastError?: ProviderError;
  /** what this call's earlier attempts were charged (failures a provider billed, invalid answers): its cost adds them */
  charged: Nanos;
  /** the answer that succeeded came after a repair (the model's first answer was invalid) */
  repairedAnswer?: boolean;
}

export function toProviderError(err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  if (err instanceof GatewayError) throw err;
  return new ProviderError('retryable', 'unexpected', (err as Error)?.message ?? String(err));
}

export function usageFields(usage: Usage | null | undefined, source: 'provider' | 'estimated'): Partial<LedgerEntry> {
  if (!usage) return { usageSource: 'none' };
  return { inputTokens: usage.inputTokens, cachedInputTokens: usage.cachedInputTokens, outputTokens: usage.outputTokens, usageSource: source };
}

/**
 * When a provider reports no usage (a stream cut before its usage chunk): the input estimate (an
 * upper bound) and the output as produced, at most `maxTokens` — the provider stops there, and the
 * estimate of Chinese text from its bytes runs well past its real tokens (a call priced past the
 * bound it was admitted with would be booked as a budget incident and pause the tenant).
 */
export function estimatedUsage(estimate: number, content: string, model: CatalogModel, maxTokens: number): Usage {
  return { inputTokens: estimate, cachedInputTokens: 0, outputTokens: Math.min(estimateTextTokens(content, model.tokenizer), maxTokens) };
}

/**
 * Provider-reported usage above the bound the call was admitted with: more input tokens than the
 * prompt's byte bound (tokens.ts), or more output than max_tokens. Such a call is an incident.
 */
export function overBound(usage: Usage | null | undefined, estimate: number, maxTokens: number): TokenIncident | undefined {
  if (!usage || (usage.inputTokens <= estimate && usage.outputTokens <= maxTokens)) return undefined;
  return { estimatedInputTokens: estimate, reportedInputTokens: usage.inputTokens, maxOutputTokens: maxTokens, reportedOutputTokens: usage.outputTokens };
}

/**
 * What makes two attempts of a guarded call the same request: its scope, the model and the whole
 * body, not how it is sent. A job's retry that now goes in real time (its deadline no longer leaves
 * a batch's turnaround) must still find the call an earlier attempt sent in a batch, and wait for
 * that batch rather than pay for the call again. (`batch: true` stays in what is hashed, so guards
 * written before this rule keep their keys: those of batched calls are the ones that last.)
 */
export function guardKey(scope: string, model: CatalogModel, p: ChatParams): string {
  const body = { scope, model: model.key, batch: true, maxTokens: p.maxTokens, jsonMode: p.jsonMode ?? false, sampling: samplingOf(p), messages: p.messages };
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

/** Exponential backoff with full jitter, never shorter than the provider's Retry-After. */
export function backoff(retry: number, baseMs: number, retryAfterMs?: number): number {
  const ceiling = baseMs * 2 ** retry;
  const jittered = ceiling / 2 + Math.random() * (ceiling / 2);
  return Math.max(Math.round(jittered), retryAfterMs ?? 0);
}
