import { Inject, Injectable, Logger } from '@nestjs/common';
import { AppConfig, CONFIG } from '../config/app-config';
import { DataSource, EntityManager } from 'typeorm';
import { BudgetPolicy } from '../billing/budget-policy';
import { formatCny, Nanos } from '../common/money';
import { TtlCache } from '../common/ttl-cache';
import { ClusterBus } from '../db/cluster-bus';
import { Tier } from '../llm/catalog';
import { cutHeadTail, normalizeForKey } from '../llm/compression';
import { GatewayError, GatewayRequest, GatewayResult, GatewayService, Validation } from '../llm/gateway.service';
import { ResponseCache } from '../llm/response-cache';
import { InterruptedJob, Job, JobQueue } from '../jobs/job-queue';
import { OrdersRepository } from '../billing/orders.repository';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { EssayEvents } from './essay-events';
import { EssayRow, EssaysRepository } from './essays.repository';
import { GradingMetrics } from './grading-metrics';
import { gradeBodyOf, validateDeepReview, validateGrade, ValidatedGrade } from './grade-validation';
import { detectInjection } from './injection';
import { NearDuplicateIndex } from './near-duplicate.service';
import { offlineGrade } from './offline-grader';
import { lowConfidence } from './escalation';
import { calibrateGrade } from './calibration-model';
import { CalibrationsRepository } from './calibrations.repository';
import { buildGradingPrompt, MAX_OUTPUT_TOKENS, PROMPT_VERSIONS, repairMessages, Variant } from './prompts';
import { Language, Rubric, withExpectedLength } from './rubric';
import { RubricsService } from './rubrics.service';
import { GradingOutcome, GradingSettings, GradingTask, LeaseLostError, ModelGrading, RetryableGradingError, StoredGrade } from './grading-types';

export * from './grading-types';

/**
 * Grades one essay: prompt-injection and near-duplicate checks, then the model through the
 * gateway (exact cache, validation, one repair, fallback), or the offline grader when no provider
 * is configured, every provider fails, or the budget policy says so. The grade and the job's
 * completion are written in one transaction.
 */
@Injectable()
export class GradingService {
  private readonly logger = new Logger(GradingService.name);
  private readonly settingsCache = new TtlCache<string, GradingSettings>(5_000);

  constructor(
    private readonly ds: DataSource,
    private readonly gateway: GatewayService,
    private readonly policy: BudgetPolicy,
    private readonly rubrics: RubricsService,
    private readonly queue: JobQueue,
    private readonly nearDuplicates: NearDuplicateIndex,
    private readonly events: EssayEvents,
    private readonly metrics: GradingMetrics,
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly bus: ClusterBus,
    private readonly essays: EssaysRepository,
    private readonly orders: OrdersRepository,
    private readonly tenants: TenantsRepository,
    private readonly calibrations: CalibrationsRepository,
  ) {
    // A change made on any instance drops the cached settings everywhere.
    bus.on<{ tenantId: string }>('settings', ({ tenantId }) => this.settingsCache.delete(tenantId));
  }

  /** A grading to be tried again: the essay goes back to queued. */
  async requeue(tenantId: string, essayId: string): Promise<void> {
    if (await this.essays.requeue(this.ds.manager, tenantId, essayId)) this.events.emit({ tenantId, essayId, status: 'queued' });
  }

  /**
   * Jobs of stopped workers go back to the queue; those on their last attempt fail, and with them
   * their essay (failed) or their order (refunded), in one transaction.
   */
  async recoverInterrupted(): Promise<{ requeued: number; failed: InterruptedJob[] }> {
    const out = await this.ds.transaction(async (tx) => {
      const r = await this.queue.recover(tx);
      await this.essays.failInterrupted(tx, r.failed);
      await this.orders.refundInterrupted(tx, r.failed);
      return r;
    });
    for (const f of out.failed) if (f.kind === 'grade') this.events.emit({ tenantId: f.tenantId, essayId: f.essayId, status: 'failed' });
    return out;
  }

  /** Ends the job (done) and writes what it produced, together, only while this worker holds it. */
  private completeWith(job: Job, write: (tx: EntityManager) => Promise<unknown> = async () => undefined): Promise<boolean> {
    return this.ds.transaction(async (tx) => {
      if (!(await this.queue.complete(tx, job))) return false;
      await write(tx);
      return true;
    });
  }

  /** Runs the job to its end. Throws RetryableGradingError (or anything unexpected) to retry later. */
  async grade(job: Job, signal?: AbortSignal): Promise<GradingOutcome> {
    const essay = await this.essays.startGrading(this.ds.manager, job.tenantId, job.essayId);
    if (!essay) {
      // Gone, or already graded by an earlier run of this job whose completion was lost.
      await this.completeWith(job);
      return { kind: 'done', status: 'nothing to do' };
    }
    this.events.emit({ tenantId: job.tenantId, essayId: essay.id, status: 'grading' });
    const rubric = withExpectedLength(await this.rubrics.resolve(job.tenantId, essay.rubric_key, essay.rubric_version), essay.task?.expectedLength);
    const flags = new Set(essay.flags);

    const injection = detectInjection(essay.text, essay.title);
    if (injection.suspected) flags.add('prompt_injection_suspected');

    const settings = await this.settingsCache.getOrLoad(job.tenantId, () => this.settings(job.tenantId));
    const near = await this.nearDuplicates.indexAndFind(job.tenantId, essay.id, essay.text);
    let similar: { essayId: string; similarity: number } | null = null;
    if (near && near.similarity >= settings.nearDuplicateThreshold) {
      flags.add('possible_copy');
      similar = { essayId: near.essayId, similarity: Math.round(near.similarity * 10_000) / 10_000 };
    }

    let grade: StoredGrade | null = null;
    let costNanos = 0n;
    // A resubmission by the same student with trivial edits may take the earlier grade.
    if (
      near &&
      settings.reuseResubmissionGrades &&
      near.similarity >= 0.95 &&
      essay.student_ref &&
      near.studentRef === essay.student_ref &&
      near.grade &&
      (near.status === 'graded' || near.status === 'needs_review')
    ) {
      const earlier = near.grade as StoredGrade;
      flags.add('reused_grade');
      grade = { ...earlier, cache: 'hit', cost: '0.00', source: 'reused', gradedAt: new Date().toISOString() };
    }

    if (!grade) {
      const result = await this.gradeWithModel(essay, rubric, flags, { job, signal });
      if (result.kind === 'failed') return this.failEssay(job, result.code, result.reason, [...flags]);
      grade = result.grade;
      costNanos = result.costNanos;
    }
    if (essay.assignment_id && grade.source !== 'reused') {
      const calibration = await this.calibrations.activeModel(job.tenantId, essay.assignment_id);
      if (calibration) grade = calibrateGrade(grade, rubric, calibration, essay);
    }
    const escalated = await this.escalate(essay, rubric, grade, flags, { job, signal });
    grade = escalated.grade;
    costNanos += escalated.costNanos;
    grade.flags = [...flags];
    const status = flags.has('prompt_injection_suspected') || flags.has('content_rejected') || flags.has('low_confidence') ? 'needs_review' : 'graded';
    const stored = grade;
    // Shadow evaluation: a share of the standard model grades is graded again on the deep tier, later.
    const shadow = stored.source === 'model' && stored.tier === 'standard' && !flags.has('escalated') && inShadowSample(essay.id, settings.shadowRate);
    const done = await this.completeWith(job, async (tx) => {
      await this.essays.storeGrade(tx, job.tenantId, essay.id, { status, grade: stored, flags: [...flags], costNanos, cache: stored.cache, similar });
      if (shadow) await this.queue.enqueue(tx, job.tenantId, [{ essayId: essay.id, kind: 'shadow' }]);
    });
    if (!done) {
      this.logger.warn({ msg: 'grading result discarded: the job was taken over by another worker', tenantId: job.tenantId, essayId: essay.id, jobId: job.id });
      return { kind: 'done', status: 'superseded' };
    }
    this.events.emit({ tenantId: job.tenantId, essayId: essay.id, status });
    this.metrics.graded(status, grade.cache === 'hit' && grade.source === 'model' ? 'cache' : grade.source);
    return { kind: 'done', status };
  }

  /**
   * Escalation (SPEC §9): a standard grade is low-confidence when its answer needed a repair, when
   * its total is within one step of the assignment's pass mark, or when it is flagged (suspected
   * injection, possible copy). The assignment says what then: nothing (off), `needs_review` with
   * the flag `low_confidence` (flag), or a grading on the deep tier, paid from the budget under the
   * ledger purpose `escalation`, whose grade replaces it (flag `escalated`); when the deep tier
   * cannot grade it (no provider, budget, an offline grade to begin with), it is flagged instead.
   */
  private async escalate(
    essay: EssayRow,
    rubric: Rubric,
    grade: StoredGrade,
    flags: Set<string>,
    task: Pick<GradingTask, 'job' | 'signal'>,
  ): Promise<{ grade: StoredGrade; costNanos: Nanos }> {
    const mode = essay.task?.escalate ?? 'off';
    const unchanged = { grade, costNanos: 0n };
    if (mode === 'off' || grade.tier !== 'standard' || grade.source === 'reused') return unchanged;
    const why = lowConfidence(grade, rubric, flags, essay.task?.passMark ?? null);
    if (!why.length) return unchanged;
    flags.add('low_confidence');
    if (mode === 'flag' || grade.source !== 'model') return unchanged;
    let deep: ModelGrading;
    try {
      deep = await this.gradeWithModel(essay, rubric, new Set(), { ...task, tier: 'deep', purpose: 'escalation' });
    } catch (err) {
      if (!(err instanceof RetryableGradingError)) throw err;
      deep = { kind: 'failed', code: 'NO_PROVIDER_AVAILABLE', reason: err.message };
    }
    if (deep.kind === 'failed') {
      this.logger.log({ msg: 'escalation to the deep tier failed: the grade is flagged for review', tenantId: essay.tenant_id, essayId: essay.id, code: deep.code });
      return unchanged;
    }
    flags.delete('low_confidence');
    flags.add('escalated');
    return { grade: deep.grade, costNanos: deep.costNanos };
  }

  /**
   * A paid deep review: the deep variant on the premium tier, kept beside the standard grade. It
   * never falls back to the offline grader: when it cannot be delivered (budget exhausted,
   * content refused, no premium model) the order is refunded; a passing outage is retried by the
   * queue, and refunded when the attempts run out.
   */
  async deepReview(job: Job, signal?: AbortSignal): Promise<GradingOutcome> {
    const row = job.orderId ? await this.essays.forOrder(job.tenantId, job.orderId) : null;
    if (!row || row.order_status !== 'paid') {
      await this.completeWith(job); // refunded or delivered meanwhile: nothing to do
      return { kind: 'done', status: 'nothing to do' };
    }
    const rubric = await this.rubrics.resolve(job.tenantId, row.rubric_key, row.rubric_version);
    // On an essay graded already, the premium model writes the deep part only; otherwise a full deep grade.
    const result = await this.gradeWithModel(row, rubric, new Set(), { job, signal, tier: 'deep', base: row.model_grade ?? undefined, ordered: true });
    if (result.kind === 'failed') {
      await this.refundOrder(job, `${result.code}: ${result.reason}`);
      return result;
    }
    // Stored only for an order still paid: one refunded while the review ran is not delivered.
    let delivered = false;
    const done = await this.completeWith(job, async (tx) => {
      delivered = await this.orders.markDelivered(tx, job.tenantId, job.orderId!);
      if (delivered) await this.essays.storeDeepGrade(tx, job.tenantId, row.id, result.grade, result.costNanos);
    });
    if (delivered) this.events.emit({ tenantId: job.tenantId, essayId: row.id, status: row.status });
    return { kind: 'done', status: !done ? 'superseded' : delivered ? 'delivered' : 'refunded meanwhile' };
  }

  /**
   * A shadow grading (SPEC §9): the essay graded on the deep tier in the background, at the batch
   * price where the provider has one, paid from the budget under the ledger purpose `shadow`, and
   * kept beside the essay for /v1/quality to compare; the essay's grade and status do not change.
   * When the budget or the providers cannot take it, the job ends with nothing stored.
   */
  async shadow(job: Job, signal?: AbortSignal): Promise<GradingOutcome> {
    const row = await this.essays.forShadow(job.tenantId, job.essayId);
    if (!row || !row.model_grade || row.model_grade.source !== 'model') {
      await this.completeWith(job);
      return { kind: 'done', status: 'nothing to do' };
    }
    const rubric = withExpectedLength(await this.rubrics.resolve(job.tenantId, row.rubric_key, row.rubric_version), row.task?.expectedLength);
    const result = await this.gradeWithModel(row, rubric, new Set(), { job, signal, tier: 'deep', purpose: 'shadow', ordered: true });
    if (result.kind === 'failed') {
      await this.completeWith(job);
      this.logger.log({ msg: 'shadow grading skipped', tenantId: job.tenantId, essayId: job.essayId, code: result.code });
      return { kind: 'done', status: 'skipped' };
    }
    const done = await this.completeWith(job, (tx) => this.essays.storeShadowGrade(tx, job.tenantId, row.id, result.grade));
    if (done) this.bus.publish('shadow-graded', { tenantId: job.tenantId });
    return { kind: 'done', status: done ? 'shadowed' : 'superseded' };
  }

  /** A shadow grading that ran out of attempts: the job fails; the essay is not touched. */
  async failShadow(job: Job, reason: string): Promise<void> {
    await this.failWith(job, reason, async () => undefined);
  }

  /** The deep review cannot be delivered: the order is refunded and the job ends, together. */
  async refundOrder(job: Job, reason: string): Promise<void> {
    await this.failWith(job, reason, (tx) => this.orders.refund(tx, job.tenantId, job.orderId!, reason));
    this.logger.warn({ msg: 'deep review refunded', tenantId: job.tenantId, orderId: job.orderId, reason });
  }

  /**
   * The essay failed: the job ends as failed and the essay says why, together, only while this
   * worker holds the job. Used for final failures here and by the worker when attempts run out.
   */
  async failEssay(job: Job, code: string, reason: string, flags?: string[]): Promise<GradingOutcome> {
    await this.failWith(job, `${code}: ${reason}`, (tx) => this.essays.fail(tx, job.tenantId, job.essayId, code, reason, flags));
    this.events.emit({ tenantId: job.tenantId, essayId: job.essayId, status: 'failed' });
    this.metrics.graded('failed', code);
    return { kind: 'failed', code, reason };
  }

  /** Ends the job as failed and writes what that means, together, only while this worker holds it. */
  private failWith(job: Job, error: string, write: (tx: EntityManager) => Promise<unknown>): Promise<boolean> {
    return this.ds.transaction(async (tx) => {
      if (!(await this.queue.fail(tx, job, error))) return false;
      await write(tx);
      return true;
    });
  }

  /**
   * The tenant's near-duplicate settings, read now. Grading reads them through a 5-second cache:
   * this process drops it on a change, other processes see the change within 5 seconds.
   */
  async settings(tenantId: string): Promise<GradingSettings> {
    return this.tenants.grading(tenantId);
  }

  async updateSettings(tenantId: string, change: Partial<GradingSettings>): Promise<GradingSettings> {
    await this.tenants.setGrading(tenantId, change);
    this.bus.publish('settings', { tenantId });
    return this.settings(tenantId);
  }

  /**
   * Grades the essay with a model through the gateway: builds the request, calls, and turns the
   * answer into the stored grade; a gateway failure becomes an offline grade, a clear failure or a
   * retry (handleGatewayError).
   */
  private async gradeWithModel(essay: EssayRow, rubric: Rubric, flags: Set<string>, task: GradingTask): Promise<ModelGrading> {
    const tier = task.tier ?? essay.tier;
    const offline = (reason?: string): ModelGrading => {
      flags.add('offline_estimate');
      if (reason) flags.add(reason);
      return { kind: 'ok', grade: this.offline(essay, rubric, tier), costNanos: 0n };
    };
    if (!this.gateway.hasProviders(tier)) {
      if (tier === 'standard') return offline();
      return { kind: 'failed', code: 'NO_PROVIDER_AVAILABLE', reason: 'no provider is configured for deep reviews' };
    }
    const { request, variant, truncated } = this.gradingRequest(essay, rubric, tier, task);
    if (truncated) flags.add('truncated');
    let result: GatewayResult<ValidatedGrade>;
    try {
      result = await this.gateway.complete<ValidatedGrade>(request);
    } catch (err) {
      const handled = await this.handleGatewayError(err, essay, tier, flags, task.signal);
      return handled.kind === 'offline' ? offline(handled.reason) : handled;
    }
    if (result.value.droppedQuotes > 0) this.logger.log({ msg: 'invented quotes dropped from a grade', essayId: essay.id, dropped: result.value.droppedQuotes });
    return { kind: 'ok', costNanos: result.costNanos, grade: this.modelGrade(result, tier, variant, rubric) };
  }

  /**
   * The gateway request that grades this essay: the prompt of its variant with the essay cut
   * (head and tail kept) to what the largest model of the tier takes (gateway.fit), the exact-cache
   * key, the validation of the answer and its one repair. Its provider calls are paid once per job,
   * and only while the job's lease is held.
   */
  private gradingRequest(essay: EssayRow, rubric: Rubric, tier: Tier, task: GradingTask): { request: GatewayRequest<ValidatedGrade>; variant: Variant; truncated: boolean } {
    const { job, signal, base, ordered = false } = task;
    const variant: Variant = base ? 'deep_review' : tier === 'deep' ? 'deep' : 'standard';
    const promptOf = (text: string) =>
      buildGradingPrompt({ rubric, language: essay.language, variant, assignmentPrompt: essay.prompt ?? undefined, title: essay.title ?? undefined, essay: text });
    // Cut only what no candidate can take: a model too small for the whole essay is skipped by the
    // gateway (a longer window serves it), rather than every model getting a cut essay.
    const room = this.gateway.fit({ tier }, promptOf('').messages, MAX_OUTPUT_TOKENS[variant]);
    const cut = room ? cutHeadTail(essay.text, room.tokens, room.tokenizer) : { text: essay.text, truncated: false };
    const prompt = promptOf(cut.text);
    const validate = (content: string): Validation<ValidatedGrade> => {
      if (!base) return validateGrade(content, rubric, essay.text, variant);
      const review = validateDeepReview(content, essay.text);
      return review.ok ? { ok: true, value: { grade: { ...gradeBodyOf(base), summary: review.value.summary, deep: review.value.deep }, droppedQuotes: 0 } } : review;
    };
    const request: GatewayRequest<ValidatedGrade> = {
      tenantId: essay.tenant_id,
      essayId: essay.id,
      purpose: task.purpose ?? (tier === 'deep' ? 'deep_review' : 'grading'),
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
          task: essay.prompt ? normalizeForKey(essay.prompt) : null,
          essay: normalizeForKey(essay.text),
        }),
        lookup: true,
        store: true,
      },
      validate,
      repair: (_content, problem) => repairMessages(essay.language, problem),
      batch: ordered && this.config.grading.deepReviewBatch,
      once: { scope: `job:${job.id}`, lease: { jobId: job.id, holder: this.queue.workerId } },
      signal,
    };
    return { request, variant, truncated: cut.truncated };
  }

  /**
   * What the gateway's failure means for this grading. A standard grading falls back to the
   * offline grader (budget per BudgetPolicy, content refused, every provider down); a deep one
   * fails clearly, or is retried later when the providers may come back. A lost lease, a call in
   * flight elsewhere and anything unexpected are thrown for the worker to handle.
   */
  private async handleGatewayError(
    err: unknown,
    essay: EssayRow,
    tier: Tier,
    flags: Set<string>,
    signal?: AbortSignal,
  ): Promise<{ kind: 'offline'; reason?: string } | { kind: 'failed'; code: string; reason: string }> {
    if (!(err instanceof GatewayError) || signal?.aborted) throw err;
    switch (err.code) {
      case 'LEASE_LOST':
        throw new LeaseLostError(err.message);
      case 'CALL_IN_FLIGHT':
        throw new RetryableGradingError(err.message, err.retryAfterMs);
      case 'BUDGET_EXHAUSTED':
        if ((await this.policy.whenRefused(essay.tenant_id, tier)) === 'offline') return { kind: 'offline', reason: 'budget_exhausted' };
        return { kind: 'failed', code: 'BUDGET_EXHAUSTED', reason: "the tenant's monthly model budget is used up" };
      case 'CONTENT_REJECTED':
        flags.add('content_rejected');
        if (tier === 'standard') return { kind: 'offline' };
        return { kind: 'failed', code: 'CONTENT_REJECTED', reason: "every provider's content filter refused this essay" };
      default:
        if (tier === 'standard') return { kind: 'offline', reason: 'providers_unavailable' };
        throw new RetryableGradingError(err.message);
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
    const { messages } = buildGradingPrompt({ rubric, language, variant, essay: text });
    return this.gateway.quote({ tier }, messages, MAX_OUTPUT_TOKENS[variant]);
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

/** Whether an essay is in a tenant's shadow sample: a fixed share of essays by their (random) ids. */
export function inShadowSample(essayId: string, rate: number): boolean {
  if (rate <= 0) return false;
  return parseInt(essayId.replace(/-/g, '').slice(0, 8), 16) / 0x1_0000_0000 < rate;
}
