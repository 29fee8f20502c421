import type { CallPurpose } from '../billing/ledger.service';
import type { Nanos } from '../common/money';
import type { CatalogModel, Tier } from './catalog';
import type { ChatMessage, Sampling, Usage } from './types';

/** The gateway's request and result: one model call under a tenant's budget, cache, routing and ledger. */

export type GatewayTarget = { tier: Tier } | { model: string };

export type Validation<T> = { ok: true; value: T } | { ok: false; problem: string };

export interface GatewayRequest<T = string> extends Sampling {
  tenantId: string;
  apiKeyId?: string;
  essayId?: string;
  requestId?: string;
  purpose: CallPurpose;
  target: GatewayTarget;
  /** model keys ("provider:model") not to try */
  exclude?: string[];
  /** a model key tried first when it is a candidate (the model a schedule was planned and priced on) */
  prefer?: string;
  messages: ChatMessage[];
  maxTokens?: number;
  jsonMode?: boolean;
  /** Exact cache: look up first (unless `lookup` is false), store a valid answer after. */
  cache?: { key: string; lookup: boolean; store: boolean };
  /** Checks an answer; an invalid one is billed, never cached, repaired once, then the next model. */
  validate?: (content: string, model: CatalogModel) => Validation<T>;
  /** The messages of the one repair attempt on the same model. */
  repair?: (content: string, problem: string) => ChatMessage[];
  /** The same request before compression (what a naive pipeline would send): tokens saved are recorded. */
  uncompressed?: ChatMessage[];
  /** The call can wait: send it through the provider's Batch API, at its batch price, where offered. */
  batch?: boolean;
  /**
   * Work that was scheduled to save money (off-peak, batch): each paid call also records what it
   * would have cost in real time at this moment (when the work was submitted), and the result says
   * what the schedule saved (scheduleSavedNanos).
   */
  priceAsOf?: Date;
  /**
   * Pay for each distinct request of this scope at most once (a job's grading): a retry reuses a
   * paid answer, waits while the first call is in flight, and calls only while the lease is held.
   */
  once?: {
    scope: string;
    lease?: { jobId: string; holder: string };
    /**
     * An earlier attempt may have sent the call in a provider batch (the job's calls go to batches,
     * or its last plan was one): the model whose guard holds such a call, or its answer, goes first.
     */
    mayWaitInBatch?: boolean;
  };
  /** Aborts the call wherever it is (a stream whose client went away), the provider's request too. */
  signal?: AbortSignal;
  /**
   * Gives up only while the call waits for one of the tenant's provider slots (a whole answer whose
   * client went away): it is then never sent. A call already sent runs to its end, is charged and
   * its answer cached, as the provider charges for it anyway. Made only if the call has to wait.
   */
  waitSignal?: () => AbortSignal;
  /**
   * Told when a call starts (true) and stops (false) waiting in a provider batch, where it may wait
   * for hours holding no provider slot: a job's worker then gives its place to other work.
   */
  batchWait?: (waiting: boolean) => void;
}

export interface GatewayResult<T = string> {
  content: string;
  value: T;
  provider: string;
  model: string;
  modelKey: string;
  finishReason: string;
  usage: Usage;
  costNanos: Nanos;
  /** for a cache hit: what the original call cost */
  savedNanos: Nanos;
  cache: 'hit' | 'miss';
  /** with priceAsOf: what the request's paid calls cost less than in real time at that moment (may be negative) */
  scheduleSavedNanos?: Nanos;
  callGroup: string;
  attempts: number;
  latencyMs: number;
  /** the model's first answer was invalid and this one came from its repair */
  repaired?: boolean;
}

export type GatewayErrorCode =
  | 'BUDGET_EXHAUSTED'
  | 'NO_PROVIDER_AVAILABLE'
  | 'CONTENT_REJECTED'
  | 'INVALID_REQUEST'
  | 'MODEL_NOT_FOUND'
  /** every candidate's context window is too small for the request (its messages and output) */
  | 'CONTEXT_LENGTH_EXCEEDED'
  /** the same request (see GatewayRequest.once) is already at a provider: try again after retryAfterMs */
  | 'CALL_IN_FLIGHT'
  /** the service is stopping: the call waits in a provider batch named on its guard, for the job's retry to take over */
  | 'CALL_HANDED_OVER'
  /** the job's lease is no longer held by the caller: it must not call a provider for it */
  | 'LEASE_LOST';

/** Why the gateway could not answer, after trying every candidate it was allowed to. */
export class GatewayError extends Error {
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    readonly tried: string[] = [],
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

/** A stream that had started (tokens were sent) and then failed: it cannot fail over any more. */
export class StreamInterruptedError extends Error {
  constructor(readonly reason: string) {
    super(`the model's stream broke off: ${reason}`);
    this.name = 'StreamInterruptedError';
  }
}

export type GatewayStreamEvent<T = string> =
  | { type: 'start'; provider: string; model: string; cache: 'hit' | 'miss' }
  | { type: 'delta'; text: string }
  | { type: 'end'; result: GatewayResult<T> };
