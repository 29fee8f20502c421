// Longer than 400 lines on purpose: this is one model call's whole path (cache, candidates,
// admission, attempt, settlement, stream relay), and every step shares the call's context and the
// breakers. What stands alone lives beside it: routing, token bounds and prices (model-router.ts),
// breakers (provider-health.ts), types (gateway-types.ts, gateway-call.ts).
import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { BatchRef, BudgetService, GuardedAnswer, Reservation, ReservedCall, SettleOptions } from '../billing/budget.service';
import { LedgerEntry } from '../billing/ledger.service';
import { Clock } from '../common/clock';
import { Nanos } from '../common/money';
import { loggableError } from '../common/error-rendering';
import { AppConfig, CONFIG } from '../config/app-config';
import { EnabledProvider, LLM_MODELS, LlmModels } from './llm-models';
import { BatchCollector } from './batch-collector';
import { CatalogModel, Pricing, Tier, TokenizerProfile } from './catalog';
import { ModelRouter } from './model-router';
import type { WorkPlan } from './work-planner';
import { ProviderHealth } from './provider-health';
import { CircuitBreaker } from './circuit-breaker';
import { costOf, priceAt, worstCaseCost } from './pricing';
import { ProviderClient } from './provider-client';
import { ADAPTERS } from './providers';
import { ProviderUploadsRepository } from './provider-uploads.repository';
import { CachedAnswer, ResponseCache } from './response-cache';
import { estimatePromptTokens } from './tokens';
import { countedSaving } from './compression';
import { ChatMessage, ChatParams, Completion, ProviderError, samplingOf, Usage } from './types';
import { GatewayMetrics } from './gateway-metrics';
import { LimitsService } from '../tenancy/limits.service';

export * from './gateway-types';

import { Admitted, AttemptOutcome, backoff, CallContext, estimatedUsage, guardKey, OpenStream, overBound, PaidCall, toProviderError, usageFields } from './gateway-call';
import { GatewayError, GatewayRequest, GatewayResult, GatewayStreamEvent, GatewayTarget, StreamInterruptedError, Validation } from './gateway-types';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/**
 * Every model call in Inkstone goes through here: exact cache and single flight, routing by tier
 * with weights and health, retries with jittered backoff that honour Retry-After, a circuit
 * breaker per model, fallback in order, a provider taken out when its account is empty, budget
 * admission before each attempt and exact settlement after it, and one ledger row per attempt.
 */
@Injectable()
export class GatewayService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GatewayService.name);
  private readonly router: ModelRouter;
  private readonly client: ProviderClient;
  private readonly batches: BatchCollector;
  private readonly health: ProviderHealth;
  /**
   * The calls in flight by cache key, each in a box emptied when its call ends: V8 keeps a Map's
   * rebuilt hash tables linked to their successors with the entries they had, so a value deleted
   * from this long-lived Map could stay reachable (its answer, its context) past the young
   * generation's collections and be promoted (bench/probe-map-churn.js); an emptied box holds nothing.
   */
  private readonly flights = new Map<string, { run: Promise<GatewayResult<unknown>> | null; gone: () => boolean }>();

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    @Inject(LLM_MODELS) private readonly models: LlmModels,
    private readonly budget: BudgetService,
    private readonly cache: ResponseCache,
    private readonly metrics: GatewayMetrics,
    private readonly clock: Clock,
    private readonly limits: LimitsService,
    uploads: ProviderUploadsRepository,
  ) {
    this.router = new ModelRouter(models, clock, config.llm.defaultMaxTokens);
    this.client = new ProviderClient(config.llm);
    this.batches = new BatchCollector(this.client, config.llm, budget, uploads);
    this.health = new ProviderHealth(config.llm);
  }

  private purgeTimer?: NodeJS.Timeout;
  private uploadsTimer?: NodeJS.Timeout;

  onApplicationBootstrap(): void {
    this.purgeTimer = setInterval(() => {
      this.cache.purgeExpired().catch((err: Error) => this.logger.warn({ msg: 'cache purge failed', err: loggableError(err) }));
    }, 3_600_000);
    this.purgeTimer.unref();
    // What provider batches left at the providers (BatchCollector.sweepUploads), every minute or poll interval.
    this.uploadsTimer = setInterval(() => {
      this.sweepProviderUploads().catch((err: Error) => this.logger.warn({ msg: 'provider uploads sweep failed', err: loggableError(err) }));
    }, Math.max(this.config.llm.batchPollMs, 60_000));
    this.uploadsTimer.unref();
    const llm = this.models;
    const describe = (t: Tier) => llm.tiers[t].map((g) => g.map((e) => e.model.key).join('|')).join(', ');
    if (llm.providers.size === 0) {
      this.logger.warn({ msg: 'no model provider has an API key: the offline grader will grade every essay, and chat completions answer 503' });
    } else {
      this.logger.log({ msg: 'model gateway ready', providers: [...llm.providers.keys()], standard: describe('standard'), deep: describe('deep') });
    }
    for (const w of this.catalogWarnings()) this.logger.warn({ msg: w });
  }

  /**
   * What an operator should act on in the catalog: configured models that retire within 30 days,
   * and holiday calendars that end before today.
   */
  catalogWarnings(): string[] {
    return this.router.catalogWarnings();
  }

  /**
   * The service is stopping: the provider batches under way that are named on their calls' guards
   * are handed over now (their calls end CALL_HANDED_OVER, for the jobs' retries), so that the
   * workers' drain does not wait for batches that take hours (GradingWorker.stop).
   */
  handOverBatches(): void {
    this.batches.handOver();
  }

  /**
   * Deletes the uploads and batch answers that batches left at the providers once no call waits
   * for them (BatchCollector.sweepUploads); how many uploads were struck off.
   */
  sweepProviderUploads(): Promise<number> {
    return this.batches.sweepUploads((name) => {
      const provider = this.models.providers.get(name);
      const dialect = this.models.catalog.providers.get(name)?.dialect;
      return provider && dialect ? { provider, adapter: ADAPTERS[dialect] } : undefined;
    });
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    if (this.uploadsTimer) clearInterval(this.uploadsTimer);
    await this.batches.close();
    await this.cache.drain();
    await this.client.close();
  }

  /** Forgets every breaker's state: all models and providers are in again. */
  resetHealth(): void {
    this.health.reset();
  }

  /** The breakers, for tests and tools. */
  get modelBreaker(): CircuitBreaker {
    return this.health.models;
  }

  get providerBreaker(): CircuitBreaker {
    return this.health.providers;
  }

  /** Is any provider configured for this tier? (With none, grading uses the offline grader.) */
  hasProviders(tier: Tier): boolean {
    return this.router.hasProviders(tier);
  }

  /** The models a request may try, in the order it will try them. */
  candidates(target: GatewayTarget, exclude: string[] = []): CatalogModel[] {
    return this.router.candidates(target, exclude);
  }

  /** What a call could cost at most on this target (see ModelRouter.quote). Null when no model could take it. */
  quote(target: GatewayTarget, messages: ChatMessage[], maxTokens: number): Nanos | null {
    return this.router.quote(target, messages, maxTokens);
  }

  /** The room `messages` leave for added text on the model that will take it (see ModelRouter.fit). */
  fit(target: GatewayTarget, messages: ChatMessage[], maxTokens: number): { tokens: number; tokenizer: TokenizerProfile; model: string } | null {
    return this.router.fit(target, messages, maxTokens);
  }

  /**
   * When work due by `dueBy` should run: now, through the Batch API, or in a cheaper window later
   * (see planWork). A batch's turnaround counts from the call: the collection window before the
   * batch is made, then as long as the provider may take (LLM_BATCH_MAX_WAIT_MS, after which it
   * is given up and the call made in real time, within the margin).
   */
  plan(target: GatewayTarget, messages: ChatMessage[], maxTokens: number, dueBy: Date): WorkPlan | null {
    const llm = this.config.llm;
    return this.router.plan(target, messages, maxTokens, dueBy, { batchTurnaroundMs: llm.batchWindowMs + llm.batchMaxWaitMs, marginMs: llm.scheduleMarginMs }, (m) => this.health.reopensInMs(m) === 0);
  }

  async complete<T = string>(req: GatewayRequest<T>): Promise<GatewayResult<T>> {
    const ctx = this.context(req);
    if (req.cache?.lookup) {
      const hit = await this.fromCache(ctx);
      if (hit) return hit;
      const flightKey = `${req.tenantId}:${req.cache.key}`;
      const leading = this.flights.get(flightKey);
      const inFlight = leading?.run as Promise<GatewayResult<T>> | null | undefined;
      if (inFlight) return this.joinFlight(ctx, inFlight, leading!.gone);
      const flight = { run: this.run(ctx) as Promise<GatewayResult<unknown>> | null, gone: () => callerGone(req) };
      this.flights.set(flightKey, flight);
      try {
        return (await flight.run) as GatewayResult<T>;
      } finally {
        flight.run = null;
        this.flights.delete(flightKey);
      }
    }
    return this.run(ctx);
  }

  private context<T>(req: GatewayRequest<T>): CallContext<T> {
    return { req, group: randomUUID(), attempt: 0, started: performance.now(), tried: [], budgetRefused: false, contentRejected: false, realtimeOnly: false, scheduleSaved: 0n, charged: 0n };
  }

  private entry<T>(ctx: CallContext<T>, model: CatalogModel | undefined, fields: Partial<LedgerEntry>): LedgerEntry {
    const r = ctx.req;
    return {
      id: randomUUID(),
      tenantId: r.tenantId,
      requestId: r.requestId,
      callGroup: ctx.group,
      attempt: ctx.attempt,
      apiKeyId: r.apiKeyId,
      essayId: r.essayId,
      purpose: r.purpose,
      tier: 'tier' in r.target ? r.target.tier : undefined,
      provider: model?.provider,
      model: model?.id,
      cacheStatus: r.cache ? 'miss' : 'bypass',
      outcome: 'ok',
      inputTokens: 0,
      cachedInputTokens: 0,
      outputTokens: 0,
      usageSource: 'none',
      costNanos: 0n,
      savedNanos: 0n,
      compressionSavedTokens: 0,
      latencyMs: 0,
      streamed: false,
      ...fields,
    };
  }

  /** A valid cached answer, recorded in the ledger as a hit that cost nothing. */
  private async fromCache<T>(ctx: CallContext<T>): Promise<GatewayResult<T> | null> {
    const r = ctx.req;
    const cached = await this.cache.get(r.tenantId, r.cache!.key);
    if (!cached) return null;
    // A job's retry whose own earlier call was answered and paid (its process died before the grade
    // was stored), or waits in a provider batch: that call is the grading's, replayed or taken over
    // (the cache hit showed the grading as costing nothing, and counted what it paid as saved).
    if (r.once && (await this.ownCallKept(ctx))) return null;
    const value = this.revalidated(ctx, cached);
    if (value === undefined) {
      await this.cache.delete(r.tenantId, r.cache!.key);
      return null;
    }
    return this.recordHit(ctx, cached, value.value);
  }

  /**
   * Another call's answer checked by this request's own validation (a grade is tied to the text of
   * the essay it answers: its quotes and their places): undefined when it fails, or when the model
   * that answered is no longer in the catalog to check it with (it was served unchecked: a grading
   * stored a grade with no score).
   */
  private revalidated<T>(ctx: CallContext<T>, answer: { content: string; provider: string; model: string }): { value: T } | undefined {
    const validate = ctx.req.validate;
    if (!validate) return { value: answer.content as unknown as T };
    const model = this.models.catalog.models.get(`${answer.provider}:${answer.model}`);
    if (!model) return undefined;
    const v = validate(answer.content, model);
    return v.ok ? { value: v.value } : undefined;
  }

  private async recordHit<T>(ctx: CallContext<T>, cached: CachedAnswer, value: T): Promise<GatewayResult<T>> {
    const latencyMs = Math.round(performance.now() - ctx.started);
    await this.budget.settle(
      null,
      0n,
      this.entry(ctx, undefined, {
        provider: cached.provider,
        model: cached.model,
        cacheStatus: 'hit',
        savedNanos: cached.costNanos,
        latencyMs,
      }),
      // A chat completion's row is written behind its answer (the API's hot path; nothing was spent).
      // A grading's is written before the worker marks the essay graded: no client waits on it, and
      // an essay graded has its rows.
      { behind: ctx.req.purpose === 'chat' },
    );
    this.metrics.cacheHit(ctx.req.purpose);
    return {
      content: cached.content,
      value,
      provider: cached.provider,
      model: cached.model,
      modelKey: `${cached.provider}:${cached.model}`,
      finishReason: cached.finishReason,
      usage: cached.usage,
      costNanos: 0n,
      savedNanos: cached.costNanos,
      cache: 'hit',
      callGroup: ctx.group,
      attempts: 0,
      latencyMs,
      repaired: cached.repaired === true,
    };
  }

  /** An identical request was already on its way to a provider: wait for it and share its answer. */
  private async joinFlight<T>(ctx: CallContext<T>, inFlight: Promise<GatewayResult<T>>, leaderGone: () => boolean): Promise<GatewayResult<T>> {
    let leader: GatewayResult<T>;
    try {
      leader = await inFlight;
    } catch (err) {
      // The leader's own caller went away (its call cancelled, at the provider or while it waited
      // for a slot): that is not this caller's failure, who makes the call itself (or joins the next
      // in flight). Before, it was answered the leader's 400 "cancelled" while its client waited.
      // Nor is the leader's lost lease (its job taken over — by this caller's worker, maybe): this
      // caller's own lease is checked when it makes the call. (Passed on, the worker that held the
      // job gave it up as lost, still holding it: an attempt burned, on the last one an essay failed.)
      const leasesOwn = err instanceof GatewayError && err.code === 'LEASE_LOST';
      if ((leaderGone() || leasesOwn) && !callerGone(ctx.req)) return this.complete(ctx.req);
      throw err;
    }
    const value = this.revalidated(ctx, leader);
    // An answer that does not hold for this request (the same key, another essay's raw text): it makes its own call.
    if (value === undefined) return this.run(ctx);
    return this.recordHit(
      ctx,
      { content: leader.content, provider: leader.provider, model: leader.model, finishReason: leader.finishReason, usage: leader.usage, costNanos: leader.costNanos, repaired: leader.repaired },
      value.value,
    );
  }

  private run<T>(ctx: CallContext<T>): Promise<GatewayResult<T>> {
    return this.firstAnswer(ctx, (model, messages) => this.attempt(ctx, model, messages));
  }

  /**
   * The candidates in order, each behind its breakers, each with its retries and one repair
   * (tryModel), until one answers: the path of every call, streamed (up to its first token) or
   * not. Throws the failure that explains why none did.
   */
  private async firstAnswer<T, R>(ctx: CallContext<T>, attempt: (model: CatalogModel, messages: ChatMessage[]) => Promise<AttemptOutcome<T, R>>): Promise<R> {
    let candidates = this.router.candidates(ctx.req.target, ctx.req.exclude, ctx.req.prefer);
    const takenOver = ctx.keptBy && candidates.includes(ctx.keptBy) ? ctx.keptBy : await this.takenOver(ctx, candidates);
    if (takenOver) candidates = [takenOver, ...candidates.filter((m) => m !== takenOver)];
    for (const model of candidates) {
      // A model whose breaker is open is tried only to take over its call; its answer from the
      // batch (or the guard) says nothing of its real-time health, which stays as it was.
      const past = !this.health.allow(model);
      if (past && model !== takenOver) {
        ctx.passedCooling = true;
        continue;
      }
      const outcome = await this.tryModel(ctx, model, attempt, !past);
      if (outcome.kind === 'ok') return outcome.result;
    }
    // Refused by the budget on every model it could fit: one refused call, alerted (not a refusal
    // of the first model when a cheaper one then served it, nor when one the budget fitted failed).
    if (budgetOnly(ctx) && ctx.refusedNeeded !== undefined) await this.budget.callRefused(ctx.req.tenantId, ctx.refusedNeeded);
    throw this.failure(ctx, candidates);
  }

  private failure<T>(ctx: CallContext<T>, candidates: CatalogModel[]): GatewayError {
    const tried = ctx.tried;
    if (budgetOnly(ctx)) {
      if (ctx.admissionPaused) {
        return new GatewayError('BUDGET_EXHAUSTED', 'Model calls are paused after a billing incident; an admin must acknowledge it (GET /v1/budget)', tried);
      }
      return new GatewayError('BUDGET_EXHAUSTED', "The tenant's monthly model budget cannot cover this call", tried);
    }
    if (ctx.contentRejected) {
      return new GatewayError('CONTENT_REJECTED', "Every provider's content filter refused this request", tried);
    }
    if (candidates.length === 0) {
      return new GatewayError('NO_PROVIDER_AVAILABLE', 'No model provider is configured for this request', tried);
    }
    // Too long for every candidate: no retry will change that (not a 503 to come back after).
    if (ctx.tooLong === candidates.length) {
      const window = Math.max(...candidates.map((m) => m.contextWindow));
      return new GatewayError('CONTEXT_LENGTH_EXCEEDED', `The request is longer than any model for it takes: at most ${window} tokens, its messages and max_tokens together`, tried);
    }
    const why = ctx.lastError ? ` (last error: ${ctx.lastError.reason})` : ' (all candidates are cooling down after failures)';
    // When to come back: the first candidate's breaker lets calls through again (at least a second).
    const retryAfterMs = Math.max(1_000, Math.min(...candidates.map((m) => this.health.reopensInMs(m))));
    return new GatewayError('NO_PROVIDER_AVAILABLE', `No provider could answer${why}`, tried, retryAfterMs);
  }

  /** Retries, one repair, and the breaker bookkeeping for one candidate model. */
  private async tryModel<T, R>(
    ctx: CallContext<T>,
    model: CatalogModel,
    attempt: (model: CatalogModel, messages: ChatMessage[]) => Promise<AttemptOutcome<T, R>>,
    reportAnswers = true,
  ): Promise<AttemptOutcome<T, R>> {
    let messages = ctx.req.messages;
    let repaired = false;
    for (let retry = 0; ; retry++) {
      // Read when the attempt builds its result: an answer to the repair prompt is a repaired one.
      ctx.repairedAnswer = repaired;
      const outcome = await attempt(model, messages);
      switch (outcome.kind) {
        case 'ok':
          if (reportAnswers) this.health.answered(model);
          return outcome;
        case 'invalid':
          // The provider works; the answer did not. One repair on this model, then the next model.
          if (reportAnswers) this.health.answered(model);
          const bound = ctx.req.maxTokens ?? this.config.llm.defaultMaxTokens;
          if (ctx.req.purpose === 'chat' && outcome.finishReason === 'length' && bound <= model.maxOutputTokens) {
            // Cut at the caller's own max_tokens (or the default one): every model would be cut
            // there too (each paid, then a 503 the client retries). The caller's to change, once.
            // (A model whose own output limit is lower cut it: the next model may not.)
            const which = ctx.req.maxTokens === undefined ? `the default max_tokens (${bound}, LLM_DEFAULT_MAX_TOKENS)` : `max_tokens (${bound})`;
            throw new GatewayError('INVALID_REQUEST', `The answer reached ${which} before it was complete: ${outcome.problem}. Send it again with a higher max_tokens`, ctx.tried);
          }
          ctx.lastError = new ProviderError('fallback', 'invalid_output', outcome.problem);
          if (ctx.req.repair && !repaired) {
            repaired = true;
            messages = [...ctx.req.messages, { role: 'assistant', content: outcome.content }, ...ctx.req.repair(outcome.content, outcome.problem)];
            retry--;
            continue;
          }
          return outcome;
        case 'budget':
        case 'skip':
          this.health.notTried(model);
          if (outcome.kind === 'skip' && outcome.reason === 'context_length') ctx.tooLong = (ctx.tooLong ?? 0) + 1;
          return outcome;
        case 'error':
          if ((await this.onError(ctx, model, outcome.error, retry)) === 'retry') continue;
          return outcome;
      }
    }
  }

  /**
   * What a failed attempt means for the breakers and for the next step: try the same model again
   * (after a backoff that honours Retry-After), or go on to the next candidate.
   */
  private async onError<T>(ctx: CallContext<T>, model: CatalogModel, e: ProviderError, retry: number): Promise<'retry' | 'next'> {
    const llm = this.config.llm;
    ctx.lastError = e;
    if (e.reason === 'cancelled') {
      // The caller went away: says nothing of the provider's health, and nothing more is tried.
      this.health.notTried(model);
      throw new GatewayError('INVALID_REQUEST', 'The request was cancelled', ctx.tried);
    }
    this.metrics.providerError(model.provider, e.errorClass, e.reason);
    switch (this.health.failed(model, e)) {
      case 'may_retry': {
        if (retry >= llm.maxRetries) return 'next';
        const wait = backoff(retry, llm.retryBaseMs, e.extra.retryAfterMs);
        if (wait > llm.maxRetryWaitMs) return 'next';
        await sleep(wait);
        // The caller left during the wait (a chat client closed): no attempt more, no reservation.
        if (callerGone(ctx.req)) throw new GatewayError('INVALID_REQUEST', 'The request was cancelled', ctx.tried);
        return 'retry';
      }
      case 'next':
        if (e.errorClass === 'provider_down') this.logger.warn({ msg: 'provider taken out until a probe succeeds', provider: model.provider, reason: e.reason });
        return 'next';
      case 'refused':
        // The model answered; it refused this request (content filter, context, bad output).
        if (e.errorClass === 'content_rejected') ctx.contentRejected = true;
        if (e.errorClass === 'fatal') {
          throw new GatewayError('INVALID_REQUEST', `The provider refused the request: ${e.message}`, ctx.tried);
        }
        return 'next';
    }
  }

  /** Shared by both paths: what this attempt may spend, and its reservation. */
  private async admitAttempt<T>(
    ctx: CallContext<T>,
    model: CatalogModel,
    messages: ChatMessage[],
    batch = false,
    ttlMs?: number,
  ): Promise<
    | ({ kind: 'go' } & Admitted)
    | { kind: 'replay'; answer: GuardedAnswer }
    | { kind: 'budget' }
    | { kind: 'skip'; reason: string }
  > {
    const r = ctx.req;
    const { estimate, maxTokens, fits, params } = this.callParams(r, model, messages);
    if (!fits) return { kind: 'skip', reason: 'context_length' };
    // The highest price the call could be billed at, whichever window it lands in.
    const pricing: Pricing = batch ? model.batchPricing! : model.ceiling;
    const amount = worstCaseCost(estimate, maxTokens, pricing);
    // The call, as its ledger row would name it if this process died before settling it.
    const call: ReservedCall = {
      requestId: r.requestId,
      callGroup: ctx.group,
      attempt: ctx.attempt + 1,
      apiKeyId: r.apiKeyId,
      essayId: r.essayId,
      purpose: r.purpose,
      tier: 'tier' in r.target ? r.target.tier : undefined,
      provider: model.provider,
      model: model.id,
      estimatedInputTokens: estimate,
      maxOutputTokens: maxTokens,
      batch,
    };
    let reservation: Reservation | null;
    let adopted: BatchRef | undefined;
    if (r.once) {
      const llm = this.config.llm;
      const guarded = await this.budget.reserveGuarded(
        r.tenantId,
        amount,
        { key: guardKey(r.once.scope, model, params), lease: r.once.lease, inFlightMs: (ttlMs ?? llm.totalTimeoutMs) + 5_000, batched: batch },
        ttlMs,
        call,
      );
      if (guarded.kind === 'answered') return { kind: 'replay', answer: guarded.answer };
      if (guarded.kind === 'lease_lost') throw new GatewayError('LEASE_LOST', 'the job was taken over by another worker: no provider call is made for it here', ctx.tried);
      if (guarded.kind === 'in_flight') {
        throw new GatewayError('CALL_IN_FLIGHT', 'the same request is already at a provider for this job', ctx.tried, guarded.retryAfterMs);
      }
      if (guarded.kind === 'adopted') adopted = guarded.batch;
      reservation = guarded.kind === 'reserved' || guarded.kind === 'adopted' ? guarded.reservation : null;
    } else {
      reservation = await this.budget.reserve(r.tenantId, amount, ttlMs, call);
    }
    if (!reservation) {
      ctx.budgetRefused = true;
      if (ctx.refusedNeeded === undefined || amount < ctx.refusedNeeded) ctx.refusedNeeded = amount;
      ctx.admissionPaused = await this.budget.isPaused(r.tenantId);
      await this.budget.settle(null, 0n, this.entry(ctx, model, { outcome: 'budget_exhausted', estimatedInputTokens: estimate }));
      return { kind: 'budget' };
    }
    ctx.attempt++;
    ctx.tried.push(model.key);
    const saved = r.uncompressed ? Math.max(0, estimatePromptTokens(r.uncompressed, model.tokenizer) - estimate) : 0;
    return { kind: 'go', reservation, estimate, saved, params, adopted };
  }

  /** What a call of `model` sends (and what its guard is keyed by), and its bound. */
  private callParams<T>(r: GatewayRequest<T>, model: CatalogModel, messages: ChatMessage[]): { estimate: number; maxTokens: number; fits: boolean; params: ChatParams } {
    const { estimate, maxTokens, fits } = this.router.bound(model, messages, r.maxTokens, r.jsonMode);
    return { estimate, maxTokens, fits, params: { messages, maxTokens, ...samplingOf(r), jsonMode: r.jsonMode, stream: false } };
  }

  /**
   * A job's retry whose call an earlier attempt sent in a provider batch (handed over at a stop, or
   * left by a killed process), or whose answer is kept: the model of that call, to go first whatever
   * its breaker, the weights or the plan's preference say (the guard is keyed by model). Else the
   * retry made a new call on another model while the provider billed the batch's line, and the
   * earlier call's reservation stayed held for a day. Asked only of a call that may have waited in
   * a batch (`once.mayWaitInBatch`): one read of the guards of its candidates.
   */
  private async takenOver<T>(ctx: CallContext<T>, candidates: CatalogModel[]): Promise<CatalogModel | undefined> {
    if (!ctx.req.once?.mayWaitInBatch || candidates.length === 0) return undefined;
    return this.candidateWithCall(ctx, candidates);
  }

  /** Of the candidates, the one whose guard (for this call) holds an answer or a call waiting in a provider batch: one read. */
  private async candidateWithCall<T>(ctx: CallContext<T>, candidates: CatalogModel[]): Promise<CatalogModel | undefined> {
    const once = ctx.req.once;
    if (!once || candidates.length === 0) return undefined;
    const byKey = new Map(candidates.map((m) => [guardKey(once.scope, m, this.callParams(ctx.req, m, ctx.req.messages).params), m]));
    const key = await this.budget.guardWithCall(ctx.req.tenantId, [...byKey.keys()]);
    return key ? byKey.get(key) : undefined;
  }

  /**
   * Whether an earlier attempt of this guarded call was answered, or waits in a provider batch
   * (asked on a cache hit): its model is then tried first (`ctx.keptBy`), for its replay or its
   * batch, whatever the usual order — another model first would be a second paid call.
   */
  private async ownCallKept<T>(ctx: CallContext<T>): Promise<boolean> {
    ctx.keptBy = await this.candidateWithCall(ctx, this.router.candidates(ctx.req.target, ctx.req.exclude, ctx.req.prefer));
    return ctx.keptBy !== undefined;
  }

  private provider(model: CatalogModel): EnabledProvider {
    const p = this.models.providers.get(model.provider);
    if (!p) throw new GatewayError('MODEL_NOT_FOUND', `provider "${model.provider}" has no API key`);
    return p;
  }

  /**
   * One of the tenant's provider-call slots on this instance. A caller that gives up while it
   * waits (its signal, or its waitSignal) is cancelled: the call is never sent.
   */
  private async providerSlot<T>(ctx: CallContext<T>): Promise<() => void> {
    const signal = ctx.req.signal ?? ctx.req.waitSignal;
    try {
      return await this.limits.providerSlot(ctx.req.tenantId, signal);
    } catch (err) {
      if ((typeof signal === 'function' ? signal() : signal)?.aborted) throw new ProviderError('fatal', 'cancelled', 'the caller went away while the call waited for a provider slot');
      throw err;
    }
  }

  /** Does this call go through the model's provider's Batch API? */
  private batchable<T>(ctx: CallContext<T>, model: CatalogModel): boolean {
    return !!ctx.req.batch && !ctx.realtimeOnly && !!model.batchPricing && !!this.models.catalog.providers.get(model.provider)?.batch;
  }

  private async attempt<T>(ctx: CallContext<T>, model: CatalogModel, messages: ChatMessage[]): Promise<AttemptOutcome<T>> {
    const batchable = this.batchable(ctx, model);
    const llm = this.config.llm;
    // A batched call's reservation (and a job's call's guard) lasts as long as the batch may. A job's
    // call holds them only for the batch's collection window at first: they are extended when the
    // batch's upload is named on its guard (BooksRepository.markUploaded), so a process killed
    // before that leaves a guard that expires soon, and the job's retry makes the call again.
    const batchHoldMs = ctx.req.once ? llm.batchWindowMs + llm.reservationTtlMs : llm.batchMaxWaitMs + llm.reservationTtlMs;
    const admitted = await this.admitAttempt(ctx, model, messages, batchable, batchable ? batchHoldMs : undefined);
    if (admitted.kind === 'replay') return this.replay(ctx, model, admitted.answer);
    if (admitted.kind !== 'go') return admitted;
    // A call an earlier attempt sent in a batch is waited for there, whatever this attempt planned.
    const batch = batchable || admitted.adopted !== undefined;
    const call = this.paidCall(model, admitted, { batch, streamed: false });
    const adapter = ADAPTERS[model.dialect];
    let completion;
    // One of the tenant's provider-call slots on this instance (a call waiting in a provider batch holds none).
    let release: (() => void) | undefined;
    try {
      if (batch) {
        ctx.req.batchWait?.(true);
        try {
          completion = await this.inBatch(model, call);
        } finally {
          ctx.req.batchWait?.(false);
        }
      } else {
        release = await this.providerSlot(ctx);
        this.pricedAtSend(model, call);
        completion = await this.client.complete(this.provider(model), adapter, model, call.params, ctx.req.signal);
      }
    } catch (err) {
      release?.();
      const e = toProviderError(err);
      if (e.reason === 'batch_handed_over') {
        // The service is stopping; the call still waits in its batch, named on its guard, with its
        // reservation: nothing is settled here, and the job's retry waits for that batch.
        this.metrics.batchHandover('handed_over');
        throw new GatewayError('CALL_HANDED_OVER', e.message, ctx.tried, 0);
      }
      await this.settleFailed(ctx, model, call, e, e.extra.usage ?? null);
      if (batch) {
        ctx.realtimeOnly = true;
        // The batch as a whole failed (not this model's answer): make the call in real time now.
        if (e.reason === 'batch_failed' && !ctx.req.signal?.aborted) return this.attempt(ctx, model, messages);
      }
      return { kind: 'error', error: e };
    }
    release?.();
    if (batch) ctx.realtimeOnly = true;
    const validation: Validation<T> = ctx.req.validate
      ? ctx.req.validate(completion.content, model)
      : { ok: true, value: completion.content as unknown as T };
    const { charged, usage, cached } = await this.settleAnswered(ctx, model, call, {
      content: completion.content,
      finishReason: completion.finishReason,
      reported: completion.usage ?? null,
      outcome: validation.ok ? 'ok' : 'invalid_output',
      errorReason: validation.ok ? undefined : validation.problem.slice(0, 200),
      keep: true,
      cache: validation.ok,
    });
    return this.conclude(ctx, model, completion.content, validation, completion.finishReason, usage, charged, cached);
  }

  /**
   * A call through the provider's Batch API: sent in the next batch (a job's call with its guard,
   * so that the batch can be handed over on a stop), or, taken over from a process that sent it and
   * stopped, waited for in that batch. A guarded batched call settles only while its guard is
   * still this caller's (BooksRepository.settle).
   */
  private inBatch(model: CatalogModel, call: PaidCall): Promise<Completion> {
    const r = call.reservation;
    const adapter = ADAPTERS[model.dialect];
    if (call.adopted) {
      this.metrics.batchHandover('taken_over');
      const provider = this.models.providers.get(call.adopted.provider);
      if (!provider) throw new ProviderError('retryable', 'batch_failed', `provider "${call.adopted.provider}" of the batch taken over has no API key here`);
      return this.batches.adopt(provider, adapter, call.adopted, { tenantId: r.tenantId, key: r.guard!.key, token: r.guard!.token, reservationId: r.id });
    }
    const guard = r.guard ? { tenantId: r.tenantId, key: r.guard.key, token: r.guard.token, reservationId: r.id } : undefined;
    return this.batches.submit(this.provider(model), adapter, model, call.params, guard);
  }

  /** An admitted call, priced now: what settles it needs. */
  private paidCall(model: CatalogModel, go: Admitted, how: { batch: boolean; streamed: boolean }): PaidCall {
    const { pricing, window } = priceAt(model, this.clock.now(), how.batch);
    return { ...go, ...how, pricing, priceWindow: window, t0: performance.now() };
  }

  /**
   * Prices a real-time call again as it leaves, after its wait for a provider slot: the provider
   * bills by the window it is sent in (admitted at 08:59:59 and sent at 09:00:05, it is a peak call).
   * Its reservation already covers the highest window's price.
   */
  private pricedAtSend(model: CatalogModel, call: PaidCall): void {
    const { pricing, window } = priceAt(model, this.clock.now(), call.batch);
    call.pricing = pricing;
    call.priceWindow = window;
  }

  /** Settles a call the provider failed: what its error reported it used (if anything) is charged. */
  private async settleFailed<T>(ctx: CallContext<T>, model: CatalogModel, call: PaidCall, e: ProviderError, reported: Usage | null): Promise<void> {
    // A chat call its client left after it was sent: the provider read the prompt, and bills it
    // whether or not an answer comes. Charged its input (as a stream the client cut mid-way is):
    // charged nothing, a tenant's long prompts dropped before the first token were the provider's
    // for free. (A job's call the platform stops is not the tenant's to pay: its retry is.)
    const clientLeft = e.reason === 'cancelled' && e.extra.sent === true && ctx.req.purpose === 'chat';
    const usage = reported ?? (clientLeft ? estimatedUsage(call.estimate, '', model, call.params.maxTokens) : null);
    const cost = usage ? costOf(usage, call.pricing) : 0n;
    const charged = await this.settle(call.reservation, cost, { incident: overBound(reported, call.estimate, call.params.maxTokens) }, this.callEntry(ctx, model, call, {
      outcome: e.errorClass,
      errorReason: e.reason,
      ...usageFields(usage, reported ? 'provider' : 'estimated'),
      costNanos: cost,
    }));
    ctx.charged += charged;
    // What the provider billed for the failed attempt is spend too (/metrics added up to the ledger only without it).
    if (usage) this.metrics.spend(ctx.req.tenantId, model, charged, usage);
  }

  /**
   * Settles a call that produced an answer (whole, or a stream that ended or broke): priced from the
   * provider's usage, or an estimate of what it produced when none came; the answer kept for a
   * retry of the same job (`keep`), and, when it is a valid whole answer (`cache`) to a request that
   * stores, in the answer cache by the same statement. Returns what was charged, the usage it was
   * priced on, and whether the answer is now cached.
   */
  private async settleAnswered<T>(
    ctx: CallContext<T>,
    model: CatalogModel,
    call: PaidCall,
    a: { content: string; finishReason: string; reported: Usage | null; outcome: string; errorReason?: string; keep: boolean; cache: boolean },
  ): Promise<{ charged: Nanos; usage: Usage; cached: boolean }> {
    const usage = a.reported ?? estimatedUsage(call.estimate, a.content, model, call.params.maxTokens);
    const cost = costOf(usage, call.pricing);
    const answer: GuardedAnswer | undefined = a.keep
      ? { provider: model.provider, model: model.id, content: a.content, finishReason: a.finishReason, ...usage, costNanos: cost }
      : undefined;
    const c = ctx.req.cache;
    const toCache: CachedAnswer | undefined =
      a.cache && c?.store && a.finishReason === 'stop'
        ? { content: a.content, provider: model.provider, model: model.id, finishReason: a.finishReason, usage, costNanos: cost, repaired: ctx.repairedAnswer === true }
        : undefined;
    const ttl = this.config.llm.cacheTtlSeconds;
    // What the tenant is charged: the cost, unless a provider billed past the bound and the cap.
    const charged = await this.settle(
      call.reservation,
      cost,
      { answer, incident: overBound(a.reported, call.estimate, call.params.maxTokens), cache: toCache && ResponseCache.entry(c!.key, toCache, ttl, ctx.req.essayId) },
      this.callEntry(ctx, model, call, {
        outcome: a.outcome,
        errorReason: a.errorReason,
        ...usageFields(usage, a.reported ? 'provider' : 'estimated'),
        costNanos: cost,
      }),
    );
    // The row keeps what was charged (what a hit saves); the index learns its key.
    if (toCache) this.cache.stored(ctx.req.tenantId, c!.key);
    this.metrics.spend(ctx.req.tenantId, model, charged, usage);
    return { charged, usage, cached: toCache !== undefined };
  }

  /** The ledger row of a paid call. */
  private callEntry<T>(ctx: CallContext<T>, model: CatalogModel, call: PaidCall, fields: Partial<LedgerEntry>): LedgerEntry {
    let scheduleSavedNanos: Nanos | undefined;
    const asOf = ctx.req.priceAsOf;
    if (asOf && fields.costNanos !== undefined && fields.inputTokens !== undefined) {
      // The same usage at the real-time price of the moment the work was submitted.
      const usage = { inputTokens: fields.inputTokens, cachedInputTokens: fields.cachedInputTokens ?? 0, outputTokens: fields.outputTokens ?? 0 };
      scheduleSavedNanos = costOf(usage, priceAt(model, asOf).pricing) - fields.costNanos;
      ctx.scheduleSaved += scheduleSavedNanos;
    }
    return this.entry(ctx, model, {
      scheduleSavedNanos,
      estimatedInputTokens: call.estimate,
      compressionSavedTokens: countedSaving(call.saved, call.estimate, fields.inputTokens),
      latencyMs: Math.round(performance.now() - call.t0),
      batch: call.batch,
      streamed: call.streamed,
      priceWindow: call.priceWindow,
      ...fields,
    });
  }

  /**
   * An answer paid for by an earlier run of the same job (its settlement kept it): used again at
   * no cost. The ledger gets a row that costs nothing, so the books still show every step.
   */
  private async replay<T>(ctx: CallContext<T>, model: CatalogModel, answer: GuardedAnswer): Promise<AttemptOutcome<T>> {
    ctx.attempt++;
    ctx.tried.push(model.key);
    await this.budget.settle(null, 0n, this.entry(ctx, model, { outcome: 'replayed', cacheStatus: 'replay' }));
    const usage: Usage = { inputTokens: answer.inputTokens, cachedInputTokens: answer.cachedInputTokens, outputTokens: answer.outputTokens };
    // Scheduled work: what the first run saved, said again (its ledger row holds it; this one claims nothing).
    if (ctx.req.priceAsOf) ctx.scheduleSaved += costOf(usage, priceAt(model, ctx.req.priceAsOf).pricing) - answer.costNanos;
    const validation: Validation<T> = ctx.req.validate ? ctx.req.validate(answer.content, model) : { ok: true, value: answer.content as unknown as T };
    return this.conclude(ctx, model, answer.content, validation, answer.finishReason, usage, answer.costNanos, false);
  }

  /**
   * After a paid (or replayed) answer: an invalid one goes to repair, a valid one is the result
   * (stored in the answer cache unless its settlement did that: `cached`).
   */
  private async conclude<T>(
    ctx: CallContext<T>,
    model: CatalogModel,
    content: string,
    validation: Validation<T>,
    finishReason: string,
    usage: Usage,
    cost: Nanos,
    cached: boolean,
  ): Promise<AttemptOutcome<T>> {
    if (!validation.ok) {
      ctx.charged += cost;
      return { kind: 'invalid', content, problem: validation.problem, finishReason };
    }
    const result = this.answered(ctx, model, content, validation.value, finishReason, usage, cost);
    // (The answer cache keeps what this answer cost: what a hit on it saves.)
    if (!cached) await this.store(ctx, { ...result, costNanos: cost });
    return { kind: 'ok', result };
  }

  /**
   * The result of a call a provider answered (not from the cache). Its cost is everything the call
   * was charged: this answer's and its earlier attempts' (failures a provider billed, invalid answers).
   */
  private answered<T>(ctx: CallContext<T>, model: CatalogModel, content: string, value: T, finishReason: string, usage: Usage, cost: Nanos): GatewayResult<T> {
    return {
      content,
      value,
      provider: model.provider,
      model: model.id,
      modelKey: model.key,
      finishReason,
      usage,
      costNanos: ctx.charged + cost,
      savedNanos: 0n,
      cache: 'miss',
      scheduleSavedNanos: ctx.req.priceAsOf ? ctx.scheduleSaved : undefined,
      callGroup: ctx.group,
      attempts: ctx.attempt,
      latencyMs: Math.round(performance.now() - ctx.started),
      repaired: ctx.repairedAnswer === true,
    };
  }

  private async store<T>(ctx: CallContext<T>, result: GatewayResult<T>): Promise<void> {
    const c = ctx.req.cache;
    if (!c?.store || result.finishReason !== 'stop') return;
    try {
      await this.cache.put(
        ctx.req.tenantId,
        c.key,
        { content: result.content, provider: result.provider, model: result.model, finishReason: result.finishReason, usage: result.usage, costNanos: result.costNanos, repaired: result.repaired },
        this.config.llm.cacheTtlSeconds,
        ctx.req.essayId,
      );
    } catch (err) {
      this.logger.warn({ msg: 'could not store a cache entry', tenantId: ctx.req.tenantId, err: loggableError(err) });
    }
  }

  /** Settles a paid call: retried, then settled in the background if the database stays away (BudgetService.settlePaid). */
  private settle(reservation: Reservation, cost: Nanos, opts: SettleOptions, entry: LedgerEntry): Promise<Nanos> {
    return this.budget.settlePaid(reservation, cost, entry, opts);
  }

  /**
   * A streamed call. Fails over only before the first token (the same candidate, breaker, retry and
   * settlement path as a whole call); after it, a failure ends the stream with
   * StreamInterruptedError. Usage is asked for (`stream_options.include_usage`) and priced; a stream
   * cut before its usage arrives is billed on an estimate of what it produced.
   */
  async *stream(req: GatewayRequest<string>): AsyncGenerator<GatewayStreamEvent<string>> {
    const ctx = this.context(req);
    if (req.cache?.lookup) {
      const hit = await this.fromCache(ctx);
      if (hit) {
        yield { type: 'start', provider: hit.provider, model: hit.model, cache: 'hit' };
        yield { type: 'delta', text: hit.content };
        yield { type: 'end', result: hit };
        return;
      }
    }
    const opened = await this.firstAnswer(ctx, (model, messages) => this.openStream(ctx, model, messages));
    yield* this.relay(ctx, opened);
  }

  /** One attempt at a stream, up to its first token: the stream, committed to, or why not. */
  private async openStream(ctx: CallContext<string>, model: CatalogModel, messages: ChatMessage[]): Promise<AttemptOutcome<string, OpenStream>> {
    const admitted = await this.admitAttempt(ctx, model, messages);
    if (admitted.kind === 'replay') throw new Error('a streamed call is never guarded'); // GatewayRequest.once is for whole calls
    if (admitted.kind !== 'go') return admitted;
    const call = this.paidCall(model, admitted, { batch: false, streamed: true });
    let release: (() => void) | undefined;
    let open: OpenStream | undefined;
    try {
      release = await this.providerSlot(ctx);
      this.pricedAtSend(model, call);
      const events = this.client.stream(this.provider(model), ADAPTERS[model.dialect], model, { ...call.params, stream: true }, ctx.req.signal);
      open = { model, call, events, release, first: '', usage: null, finishReason: '' };
      for (;;) {
        const next = await events.next();
        if (next.done) break;
        if (next.value.type === 'usage') open.usage = next.value.usage;
        else if (next.value.type === 'finish') open.finishReason = next.value.reason;
        else {
          // White space alone is no answer yet: a stream of only that is blank, a failed attempt as
          // a whole answer's is (it was relayed as a 200, and cached for the same request whole).
          open.first += next.value.text;
          if (next.value.text.trim() === '') continue;
          return { kind: 'ok', result: open };
        }
      }
      throw new ProviderError('fallback', 'blank_output', 'the stream ended without any content', { usage: open.usage });
    } catch (err) {
      release?.();
      const e = toProviderError(err);
      await this.settleFailed(ctx, model, call, e, e.extra.usage ?? open?.usage ?? null);
      return { kind: 'error', error: e };
    }
  }

  /** Relays a committed stream to the client, then settles it, minds the breakers and caches the answer. */
  private async *relay(ctx: CallContext<string>, s: OpenStream): AsyncGenerator<GatewayStreamEvent<string>> {
    const { model } = s;
    let content = s.first;
    let broken: ProviderError | undefined;
    let ended: GatewayResult<string> | undefined;
    let readToEnd = false;
    try {
      // (inside the try: a reader that stops at any event, the first too, still settles the call)
      yield { type: 'start', provider: model.provider, model: model.id, cache: 'miss' };
      yield { type: 'delta', text: s.first };
      for (;;) {
        const next = await s.events.next();
        if (next.done) {
          readToEnd = true;
          break;
        }
        const ev = next.value;
        if (ev.type === 'delta') {
          content += ev.text;
          yield { type: 'delta', text: ev.text };
        } else if (ev.type === 'usage') s.usage = ev.usage;
        else s.finishReason = ev.reason;
      }
    } catch (err) {
      broken = toProviderError(err);
      // (a content-filter stop carries the usage the provider billed the stream with)
      if (broken.extra.usage) s.usage = broken.extra.usage;
    } finally {
      // A reader that stopped early leaves the provider's stream open: close it (a no-op once it ended).
      await s.events.return(undefined).catch(() => undefined);
      s.release();
      // Also reached when the client goes away mid-stream (the generator is returned early): the
      // answer is then cut, whatever the chunks said so far (a provider that sends its usage with
      // every chunk, vLLM's continuous_usage_stats, had it cached and answered as whole).
      if (!broken && !readToEnd) broken = new ProviderError('fatal', 'cancelled', 'the client went away');
      const { charged, usage } = await this.settleAnswered(ctx, model, s.call, {
        content,
        finishReason: s.finishReason || 'stop',
        reported: s.usage,
        outcome: broken ? 'stream_interrupted' : 'ok',
        errorReason: broken?.reason,
        keep: false,
        cache: !broken,
      });
      if (broken) {
        this.health.broke(model, broken);
        // (a client that went away is not a provider error)
        if (broken.reason !== 'cancelled') this.metrics.providerError(model.provider, broken.errorClass, broken.reason);
      } else {
        this.health.answered(model);
        ended = this.answered(ctx, model, content, content, s.finishReason || 'stop', usage, charged);
      }
    }
    if (broken) throw new StreamInterruptedError(broken.reason);
    yield { type: 'end', result: ended! };
  }
}

/**
 * Was the budget all that stood in the call's way? Refused on some model, and no other model failed
 * at its provider or was passed over for its open breaker: during an outage, a call whose affordable model is down is a 503
 * to come back after (it would be served once the provider is back), not "budget exhausted" and a
 * refused-call alert to the school.
 */
function budgetOnly<T>(ctx: CallContext<T>): boolean {
  return ctx.budgetRefused && !ctx.lastError && !ctx.passedCooling;
}

/** Has the caller of this request gone (its signal aborted, or, for a call that only waits on one, its wait signal)? */
function callerGone(req: GatewayRequest<unknown>): boolean {
  return req.signal?.aborted === true || req.waitSignal?.().aborted === true;
}
