import { loggableError } from '../common/error-rendering';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { BudgetPolicy } from '../billing/budget-policy';
import { formatCny, Nanos } from '../common/money';
import { AppConfig, CONFIG } from '../config/app-config';
import { JobQueue } from '../jobs/job-queue';
import { Tier } from '../llm/catalog';
import { cutHeadTail, normalizeForKey } from '../llm/compression';
import { GatewayError, GatewayRequest, GatewayResult, GatewayService, Validation } from '../llm/gateway.service';
import { ResponseCache } from '../llm/response-cache';
import { estimatePromptTokens } from '../llm/tokens';
import type { WorkPlan } from '../llm/work-planner';
import { tooShortForModel } from './essay-text';
import type { GradeFlag } from './grade-flags';
import { EssayRow } from './essays.repository';
import { gradeBodyOf, validateDeepReview, validateGrade, ValidatedGrade } from './grade-validation';
import { GradingTask, HandedOverError, LeaseLostError, ModelGrading, RetryableGradingError, StoredGrade } from './grading-types';
import { offlineGrade } from './offline-grader';
import { buildGradingPrompt, MAX_OUTPUT_TOKENS, PROMPT_VERSIONS, repairMessages, Variant } from './prompts';
import { Language, Rubric } from './rubric';

/**
 * One grading of an essay by a model through the gateway: the request (the prompt of its variant,
 * the essay cut to what the tier's largest model takes, the exact-cache key, validation and one
 * repair, paid once per job), what a gateway failure means (an offline grade, a clear failure, or a
 * retry), and the stored grade it makes. GradingService decides which gradings to run and stores
 * them; this runs one.
 */
@Injectable()
export class ModelGrader {
  private readonly logger = new Logger(ModelGrader.name);

  constructor(
    private readonly gateway: GatewayService,
    private readonly policy: BudgetPolicy,
    private readonly queue: JobQueue,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Grades the essay with a model through the gateway: builds the request, calls, and turns the
   * answer into the stored grade; a gateway failure becomes an offline grade, a clear failure or a
   * retry (handleGatewayError).
   */
  async grade(essay: EssayRow, rubric: Rubric, flags: Set<string>, task: GradingTask): Promise<ModelGrading> {
    const tier = task.tier ?? essay.tier;
    const offline = (reason?: GradeFlag): ModelGrading => {
      // The offline grader reads the whole essay: not cut, whatever the model's prompt would have been.
      flags.delete('truncated');
      flags.add('offline_estimate');
      if (reason) flags.add(reason);
      return { kind: 'ok', grade: this.offline(essay, rubric, tier), costNanos: 0n };
    };
    // Far too short to be worth a model's price: the offline grader says as much, for free.
    if (offlineForLength(essay.text, essay.language, rubric, tier, task.base ? 'deep_review' : 'standard')) return offline('too_short');
    if (!this.gateway.hasProviders(tier)) {
      if (tier === 'standard') return offline();
      return { kind: 'failed', code: 'NO_PROVIDER_AVAILABLE', reason: 'no provider is configured for deep reviews' };
    }
    const { request, variant, truncated } = this.gradingRequest(essay, rubric, tier, task);
    let result: GatewayResult<ValidatedGrade>;
    try {
      result = await this.gateway.complete<ValidatedGrade>(request);
    } catch (err) {
      const handled = await this.handleGatewayError(err, essay, tier, flags, task.signal);
      return handled.kind === 'offline' ? offline(handled.reason) : handled;
    }
    // The grade read a cut essay (flagged once it is the model's grade: an offline estimate in its
    // place reads it whole).
    if (truncated) flags.add('truncated');
    if (result.value.droppedQuotes > 0) this.logger.log({ msg: 'invented quotes dropped from a grade', essayId: essay.id, dropped: result.value.droppedQuotes });
    const grade = this.modelGrade(result, tier, variant, rubric);
    if (task.schedule) grade.schedule = { dueBy: task.schedule.dueBy.toISOString(), mode: task.schedule.mode, saved: formatCny(result.scheduleSavedNanos ?? 0n) };
    return { kind: 'ok', costNanos: result.costNanos, grade };
  }

  /**
   * Whether the task's call goes to a provider's Batch API. Scheduled work runs on its plan; a deep
   * review (or shadow grading) without a deadline goes to the Batch API as before. Work with a
   * deadline but no plan never waits on a batch's 24 hours: it runs now.
   */
  batches(task: Pick<GradingTask, 'job' | 'schedule' | 'ordered'>): boolean {
    return task.schedule ? task.schedule.batch : !task.job.dueBy && task.ordered === true && this.config.grading.deepReviewBatch;
  }

  /**
   * The gateway request that grades this essay: the prompt of its variant with the essay cut
   * (head and tail kept) to what the largest model of the tier takes (gateway.fit), the exact-cache
   * key, the validation of the answer and its one repair. Its provider calls are paid once per job,
   * and only while the job's lease is held.
   */
  private gradingRequest(essay: EssayRow, rubric: Rubric, tier: Tier, task: GradingTask): { request: GatewayRequest<ValidatedGrade>; variant: Variant; truncated: boolean } {
    const { job, signal, base } = task;
    const variant: Variant = base ? 'deep_review' : tier === 'deep' ? 'deep' : 'standard';
    const { prompt, truncated, sent } = this.promptAsSent(essay, rubric, tier, variant);
    const validate = (content: string): Validation<ValidatedGrade> => {
      if (!base) return validateGrade(content, rubric, essay.text, variant, prompt.sentences);
      const review = validateDeepReview(content, essay.text, prompt.sentences);
      return review.ok ? { ok: true, value: { grade: { ...gradeBodyOf(base), summary: review.value.summary, deep: review.value.deep }, droppedQuotes: 0 } } : review;
    };
    const request: GatewayRequest<ValidatedGrade> = {
      tenantId: essay.tenant_id,
      essayId: essay.id,
      apiKeyId: essay.submitted_by ?? undefined,
      // (a grading on the deep tier an admin asked for directly is a grading: `deep_review` is a paid order's)
      purpose: task.purpose ?? 'grading',
      target: { tier },
      messages: prompt.messages,
      uncompressed: prompt.uncompressed,
      maxTokens: MAX_OUTPUT_TOKENS[variant],
      temperature: 0,
      jsonMode: true,
      cache: {
        key: ResponseCache.key({
          v: PROMPT_VERSIONS[variant],
          rubric: `${rubric.key}@${rubric.version}`,
          tier,
          // Everything the prompt carries: the instructions' language and the title too (an essay
          // sent again under another title, or graded in the other language on a rubric for any,
          // was answered with the grade made for the first).
          language: essay.language,
          task: essay.task ? normalizeForKey(essay.task.prompt) : null,
          title: essay.title ? normalizeForKey(essay.title) : null,
          // The essay as sent: a grade of its head and tail is not the grade of the whole essay
          // (once the tier has a model that reads it all, it is graded whole).
          essay: normalizeForKey(sent),
        }),
        lookup: true,
        store: true,
      },
      validate,
      repair: (_content, problem) => repairMessages(essay.language, problem),
      batch: this.batches(task),
      priceAsOf: task.schedule?.priceAsOf,
      prefer: task.schedule?.model,
      once: {
        scope: `job:${job.id}`,
        lease: { jobId: job.id, holder: job.holder },
        mayWaitInBatch: this.batches(task) || job.plan?.mode === 'batch' || job.plan?.batchedBefore === true,
      },
      batchWait: (waiting) =>
        void this.queue.markInBatch(job, waiting).catch((err: unknown) => this.logger.warn({ msg: 'could not mark a job waiting in a batch', jobId: job.id, err: loggableError(err) })),
      signal,
    };
    return { request, variant, truncated };
  }

  /**
   * The grading prompt of its variant as it is sent: the essay cut (head and tail kept) to what the
   * largest model of the tier takes (gateway.fit).
   */
  private promptAsSent(
    essay: Pick<EssayRow, 'text' | 'language'> & Partial<Pick<EssayRow, 'task' | 'title'>>,
    rubric: Rubric,
    tier: Tier,
    variant: Variant,
  ): { prompt: ReturnType<typeof buildGradingPrompt>; truncated: boolean; sent: string } {
    const promptOf = (text: string) =>
      buildGradingPrompt({ rubric, language: essay.language, variant, assignmentPrompt: essay.task?.prompt, title: essay.title ?? undefined, essay: text });
    // Cut only what no candidate can take: a model too small for the whole essay is skipped by the
    // gateway (a longer window serves it), rather than every model getting a cut essay.
    const empty = promptOf('').messages;
    const room = this.gateway.fit({ tier }, empty, MAX_OUTPUT_TOKENS[variant]);
    if (!room) return { prompt: promptOf(essay.text), truncated: false, sent: essay.text };
    const base = estimatePromptTokens(empty, room.tokenizer);
    const whole = promptOf(essay.text);
    if (estimatePromptTokens(whole.messages, room.tokenizer) - base <= room.tokens) return { prompt: whole, truncated: false, sent: essay.text };
    // The essay is sent normalized, numbered by sentence and defused, which can take more than the
    // raw text a cut measures (NFC writes some characters as two; a fence's name becomes entities;
    // the numbers of the sentences kept): each cut is measured as sent, and cut again by what it is
    // over. (Measured raw, a hostile text's prompt was past every window, graded offline as if every
    // provider had failed, a deep review failed; and the numbers of every sentence of the whole
    // essay, reserved up front, left an essay of thousands of short sentences nothing but the mark.)
    // Each cut again is scaled by how much the sent form outgrew the raw (sentence numbers can more
    // than double an essay of short sentences: taking off only the excess left it nothing).
    let budget = room.tokens;
    let cut = cutHeadTail(essay.text, budget, room.tokenizer);
    let prompt = promptOf(cut.text);
    for (let tries = 0; tries < 8 && budget > 0; tries++) {
      const sent = estimatePromptTokens(prompt.messages, room.tokenizer) - base;
      if (sent <= room.tokens) break;
      budget = Math.max(0, Math.min(budget - 1, Math.floor((budget * room.tokens) / sent) - Math.ceil(budget / 100)));
      cut = cutHeadTail(essay.text, budget, room.tokenizer);
      prompt = promptOf(cut.text);
    }
    return { prompt, truncated: true, sent: cut.text };
  }

  /**
   * What the gateway's failure means for this grading. A standard grading falls back to the
   * offline grader (budget per BudgetPolicy, content refused, every provider down); a deep one
   * fails clearly, or is retried later when the providers may come back. A lost lease, a call in
   * flight elsewhere, a call handed over at a stop and anything unexpected are thrown for the
   * worker to handle.
   */
  private async handleGatewayError(
    err: unknown,
    essay: EssayRow,
    tier: Tier,
    flags: Set<string>,
    signal?: AbortSignal,
  ): Promise<{ kind: 'offline'; reason?: GradeFlag } | { kind: 'failed'; code: string; reason: string }> {
    if (!(err instanceof GatewayError) || signal?.aborted) throw err;
    switch (err.code) {
      case 'LEASE_LOST':
        throw new LeaseLostError(err.message);
      case 'CALL_IN_FLIGHT':
        throw new RetryableGradingError(err.message, err.retryAfterMs, true);
      case 'CALL_HANDED_OVER':
        throw new HandedOverError(err.message);
      case 'BUDGET_EXHAUSTED':
        if ((await this.policy.whenRefused(essay.tenant_id, tier)) === 'offline') return { kind: 'offline', reason: 'budget_exhausted' };
        return { kind: 'failed', code: 'BUDGET_EXHAUSTED', reason: "the tenant's monthly model budget is used up" };
      case 'CONTENT_REJECTED':
        flags.add('content_rejected');
        if (tier === 'standard') return { kind: 'offline' };
        return { kind: 'failed', code: 'CONTENT_REJECTED', reason: "every provider's content filter refused this essay" };
      case 'INVALID_REQUEST':
        // The request is the service's own, not the school's: a provider refusing it is the
        // operator's to look into. Its words (which may name the operator's account at the provider,
        // or echo the prompt) go neither to the school nor to the log; the log says which providers.
        this.logger.error({ msg: 'a provider refused a grading request', tenantId: essay.tenant_id, essayId: essay.id, tier, tried: err.tried });
        if (tier === 'standard') return { kind: 'offline', reason: 'providers_unavailable' };
        throw new RetryableGradingError('a provider refused the grading request (the operator can see which in the log)', err.retryAfterMs ?? 0);
      case 'CONTEXT_LENGTH_EXCEEDED':
        // (The essay is cut to what the tier's largest model takes: only a prompt longer than every window gets here.)
        if (tier === 'standard') return { kind: 'offline', reason: 'providers_unavailable' };
        return { kind: 'failed', code: 'CONTEXT_LENGTH_EXCEEDED', reason: err.message };
      default:
        if (tier === 'standard') return { kind: 'offline', reason: 'providers_unavailable' };
        // Retried no sooner than the gateway says a provider may answer again (a breaker's probe):
        // retried at 5, 10, 20 and 40 s, an outage of 75 s refunded every deep review claimed in it.
        throw new RetryableGradingError(err.message, err.retryAfterMs ?? 0);
    }
  }

  /** A model's answer as a stored grade: the body, where it came from, and what it cost. */
  private modelGrade(result: GatewayResult<ValidatedGrade>, tier: Tier, variant: Variant, rubric: Rubric): StoredGrade {
    return {
      ...result.value.grade,
      model: result.model,
      provider: result.provider,
      tier,
      cache: result.cache,
      cost: formatCny(result.costNanos),
      flags: [],
      source: 'model',
      promptVersion: PROMPT_VERSIONS[variant],
      rubric: { key: rubric.key, version: rubric.version },
      gradedAt: new Date().toISOString(),
      ...(result.repaired ? { repaired: true } : {}),
    };
  }

  /**
   * The least a grading of this essay can be admitted for (the gateway's quote of its prompt on
   * the tier, with the variant's full output allowance). Null with no model for it.
   */
  quote(text: string, language: Language, rubric: Rubric, tier: Tier, variant: Variant = tier === 'deep' ? 'deep' : 'standard'): Nanos | null {
    if (offlineForLength(text, language, rubric, tier, variant)) return 0n; // estimated offline, for nothing
    // As sent: an essay longer than any model of the tier takes is cut to fit, not refused.
    const { messages } = this.promptAsSent({ text, language }, rubric, tier, variant).prompt;
    return this.gateway.quote({ tier }, messages, MAX_OUTPUT_TOKENS[variant]);
  }

  /**
   * When this grading, due by `dueBy`, costs least (the gateway's plan for its prompt on the tier).
   * Null with no model for it (an offline grade runs at once).
   */
  plan(essay: EssayRow, rubric: Rubric, tier: Tier, variant: Variant, dueBy: Date): WorkPlan | null {
    if (!this.gateway.hasProviders(tier)) return null;
    if (offlineForLength(essay.text, essay.language, rubric, tier, variant)) return null;
    // Planned on the prompt as it will be sent: an essay cut to fit is still planned (unplanned, a
    // deep review went to the Batch API's 24 hours whatever its deadline).
    return this.gateway.plan({ tier }, this.promptAsSent(essay, rubric, tier, variant).prompt.messages, MAX_OUTPUT_TOKENS[variant], dueBy);
  }

  private offline(essay: EssayRow, rubric: Rubric, tier: Tier): StoredGrade {
    return {
      ...offlineGrade(essay.text, rubric, essay.language),
      model: null,
      provider: null,
      tier,
      cache: 'miss',
      cost: '0.00',
      flags: [],
      source: 'offline',
      promptVersion: null,
      rubric: { key: rubric.key, version: rubric.version },
      gradedAt: new Date().toISOString(),
    };
  }
}

/**
 * A standard grading of an essay far too short for a model (tooShortForModel) is estimated by the
 * offline grader: no model call, no quote, no plan. Deep reviews and the deep tier still go to the model.
 */
function offlineForLength(text: string, language: Language, rubric: Rubric, tier: Tier, variant: Variant): boolean {
  return tier === 'standard' && variant === 'standard' && tooShortForModel(text, language, rubric.expectedLength);
}
