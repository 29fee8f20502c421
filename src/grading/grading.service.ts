import { Injectable, Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Nanos } from '../common/money';
import { TtlCache } from '../common/ttl-cache';
import { ClusterBus } from '../db/cluster-bus';
import { Tier } from '../llm/catalog';
import { InterruptedJob, Job, JobPlan, JobQueue } from '../jobs/job-queue';
import { OrdersRepository } from '../billing/orders.repository';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { EssayEvents } from './essay-events';
import { EssayRow, EssaysRepository } from './essays.repository';
import { GradingMetrics } from './grading-metrics';
import { detectInjection } from './injection';
import { writtenInOther } from './essay-text';
import { NearDuplicateIndex } from './near-duplicate.service';
import { gradedStatus, lowConfidence } from './escalation';
import { HOW_GRADED_FLAGS } from './grade-flags';
import { calibrateGrade } from './calibration-model';
import { CalibrationsRepository } from './calibrations.repository';
import { ModelGrader } from './model-grader';
import { Variant } from './prompts';
import { Language, Rubric, withExpectedLength } from './rubric';
import { RubricsService } from './rubrics.service';
import { relocateAnnotations } from './grade-validation';
import { CallSchedule, GradingOutcome, GradingSettings, GradingTask, ModelGrading, RetryableGradingError, reviewBase, StoredGrade } from './grading-types';

export * from './grading-types';

/** How long a job whose call finds no room among the calls this instance holds in provider batches waits in the queue (GradingService.noBatchRoom). */
export const BATCH_ROOM_WAIT_MS = 60_000;

/**
 * Runs a job's grading to its end: prompt-injection and near-duplicate checks, a reused grade or a
 * grading by a model (ModelGrader: the gateway, or the offline grader when no provider is
 * configured, every provider fails, or the budget policy says so), calibration, escalation, and the
 * shadow sample; deep reviews and shadow gradings too. The grade and the job's completion are
 * written in one transaction.
 */
@Injectable()
export class GradingService {
  private readonly logger = new Logger(GradingService.name);
  private readonly settingsCache = new TtlCache<string, GradingSettings>(5_000);

  constructor(
    private readonly ds: DataSource,
    private readonly grader: ModelGrader,
    private readonly rubrics: RubricsService,
    private readonly queue: JobQueue,
    private readonly nearDuplicates: NearDuplicateIndex,
    private readonly events: EssayEvents,
    private readonly metrics: GradingMetrics,
    private readonly bus: ClusterBus,
    private readonly essays: EssaysRepository,
    private readonly orders: OrdersRepository,
    private readonly tenants: TenantsRepository,
    private readonly calibrations: CalibrationsRepository,
  ) {
    // A change made on any instance drops the cached settings everywhere.
    bus.on<{ tenantId: string }>('settings', ({ tenantId }) => this.settingsCache.delete(tenantId));
  }

  /**
   * Jobs this worker will not finish (it stops, or hands a batched call over) back to the queue, the
   * attempt not counted, and the essays of those that are gradings back to queued, in one
   * transaction; returns how many it still held. Together: until it commits the jobs stay locked
   * and no worker claims one, so none can start an essay that is then put back to queued under it
   * (the grade it made could not have been stored, the essay left queued with no job).
   */
  async returnToQueue(jobs: Job[]): Promise<number> {
    const requeued = await this.ds.transaction(async (tx) => {
      const released = new Set(await this.queue.release(jobs, tx));
      // (A job at work here twice — a stalled attempt and the claim that took it again — counts once.)
      return this.requeueEssays(tx, jobs.filter((j) => released.delete(j.id)));
    });
    for (const j of requeued.essays) this.events.emit({ tenantId: j.tenantId, essayId: j.essayId, status: 'queued' });
    return requeued.jobs;
  }

  /** A job to be tried again after `delayMs` (and its grading's essay back to queued, together: see returnToQueue); false when this worker no longer holds it. `counted: false` gives the attempt back. */
  async retryLater(job: Job, error: string, delayMs: number, counted = true): Promise<boolean> {
    const requeued = await this.ds.transaction(async (tx) => ((await this.queue.retryLater(job, error, delayMs, tx, counted)) ? this.requeueEssays(tx, [job]) : null));
    for (const j of requeued?.essays ?? []) this.events.emit({ tenantId: j.tenantId, essayId: j.essayId, status: 'queued' });
    return requeued !== null;
  }

  private async requeueEssays(tx: EntityManager, jobs: Job[]): Promise<{ jobs: number; essays: Job[] }> {
    const essays: Job[] = [];
    for (const j of jobs) if (j.kind === 'grade' && (await this.essays.requeue(tx, j.tenantId, j.essayId))) essays.push(j);
    return { jobs: jobs.length, essays };
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

  /**
   * Work with a deadline (an assignment's dueBy, a deep review ordered "by tomorrow morning") runs
   * where it costs least and still meets it (planWork): now in real time, now through the
   * provider's Batch API, or at the start of a cheaper window, for which the job goes back to wait
   * ('deferred'; waiting is not an attempt). Its plan is kept on the job. Work without a deadline,
   * or with no model to run on, is not scheduled (undefined).
   */
  private async scheduleOf(job: Job, row: EssayRow, rubric: Rubric, tier: Tier, variant: Variant, batchRoom: boolean): Promise<CallSchedule | 'deferred' | undefined> {
    if (!job.dueBy) return undefined;
    const plan = this.grader.plan(row, rubric, tier, variant, job.dueBy);
    if (!plan) return undefined;
    // The cheaper window it waited for has come: it runs now, in that window, and says so.
    const waited = plan.mode === 'now' && job.plan?.mode === 'off_peak' && plan.plannedAt.getTime() >= Date.parse(job.plan.startAt) && plan.window === job.plan.window;
    // An earlier attempt planned a batch: its call may wait in that batch (a stop handed it over),
    // and this retry must take it over now — the gateway finds it by the call's guard, whatever
    // this plan says. Deferred to a window past the guard's life instead, the batch's answer was
    // lost and the call paid again. With no batch to take over, it runs now: dearer, never late.
    // (Remembered on every later plan: a second stop hands the same batch over again.)
    const batchedBefore = job.plan?.mode === 'batch' || job.plan?.batchedBefore === true;
    const inBatchBefore = plan.mode === 'off_peak' && batchedBefore;
    // No room on this instance for another call waiting in a batch (claimed in the same pass as
    // others that took the last of it): back to the queue for a while, before the plan is recorded
    // (a batch plan recorded reads as "its call may wait in a batch").
    if (plan.mode === 'batch' && (await this.noBatchRoom(job, batchRoom))) return 'deferred';
    const recorded: JobPlan = {
      mode: inBatchBefore ? 'now' : waited ? 'off_peak' : plan.mode,
      startAt: (inBatchBefore ? plan.plannedAt : plan.startAt).toISOString(),
      model: plan.model,
      window: plan.window,
      plannedAt: plan.plannedAt.toISOString(),
      firstPlannedAt: job.plan?.firstPlannedAt ?? plan.plannedAt.toISOString(),
      ...(batchedBefore ? { batchedBefore: true } : {}),
    };
    // (off_peak is only ever a later start: when now is the cheapest, the plan is 'now'.)
    if (plan.mode === 'off_peak' && !inBatchBefore) {
      // An essay an interrupted attempt left 'grading' (recovery returns only its job) waits as
      // queued, as its job does: moved with it, only while this worker still held the job (another
      // may have claimed it since, and marked the essay 'grading' for its own attempt).
      const requeued = await this.ds.transaction(
        async (tx) => (await this.queue.defer(job, recorded, tx)) && row.status === 'grading' && job.kind === 'grade' && this.essays.requeue(tx, job.tenantId, job.essayId),
      );
      if (requeued) this.events.emit({ tenantId: job.tenantId, essayId: job.essayId, status: 'queued' });
      this.logger.log({ msg: 'scheduled work waits for a cheaper window', tenantId: job.tenantId, essayId: job.essayId, jobId: job.id, startAt: recorded.startAt });
      return 'deferred';
    }
    await this.queue.recordPlan(job, recorded);
    return { dueBy: job.dueBy, mode: recorded.mode, batch: plan.mode === 'batch', priceAsOf: new Date(recorded.firstPlannedAt), model: plan.model };
  }

  /**
   * The job's call would wait in a provider batch, and this instance already holds as many calls
   * waiting in batches as it takes (GradingWorker, `batchRoom` false): the job goes back to the
   * queue for BATCH_ROOM_WAIT_MS, its attempt not counted, and is planned again then (its deadline
   * left it a day for the batch; once it no longer does, it runs in real time; a deep review without
   * one waits for room). True when it went back. A call of its essay already waiting in a batch (a
   * stop handed it over) is taken over whatever the room: that batch is paid for.
   */
  private async noBatchRoom(job: Job, batchRoom: boolean): Promise<boolean> {
    if (batchRoom || (await this.queue.callWaitsInBatch(job))) return false;
    if (await this.retryLater(job, "waits for room among the calls this instance holds in providers' batches", BATCH_ROOM_WAIT_MS, false)) {
      this.logger.log({ msg: 'work for a provider batch waits for room among the calls this instance holds in batches', tenantId: job.tenantId, essayId: job.essayId, jobId: job.id });
    }
    return true;
  }

  /**
   * Runs the job to its end. Throws RetryableGradingError (or anything unexpected) to retry later.
   * `batchRoom`: whether this instance takes another call waiting in a provider batch (noBatchRoom).
   */
  async grade(job: Job, signal?: AbortSignal, batchRoom = true): Promise<GradingOutcome> {
    let schedule: CallSchedule | undefined;
    if (job.dueBy) {
      const row = await this.essays.read(job.tenantId, job.essayId);
      if (row && (row.status === 'queued' || row.status === 'grading')) {
        const rubric = withExpectedLength(await this.rubrics.resolve(job.tenantId, row.rubric_key, row.rubric_version), row.task?.expectedLength, row.language);
        const s = await this.scheduleOf(job, row, rubric, row.tier, row.tier === 'deep' ? 'deep' : 'standard', batchRoom);
        if (s === 'deferred') return { kind: 'done', status: 'deferred' };
        schedule = s;
      }
    }
    const essay = await this.essays.startGrading(this.ds.manager, job.tenantId, job.essayId);
    if (!essay) {
      // Gone, or already graded by an earlier run of this job whose completion was lost.
      await this.completeWith(job);
      return { kind: 'done', status: 'nothing to do' };
    }
    this.events.emit({ tenantId: job.tenantId, essayId: essay.id, status: 'grading' });
    const rubric = withExpectedLength(await this.rubrics.resolve(job.tenantId, essay.rubric_key, essay.rubric_version), essay.task?.expectedLength, essay.language);
    const flags = new Set(essay.flags);

    const injection = detectInjection(essay.text, essay.title, rubric.dimensions);
    if (injection.suspected) flags.add('prompt_injection_suspected');
    // Written in another language than it is graded in (an English essay for a Chinese assignment):
    // its grade, and a length counted in the other language's unit ("0 characters"), say little.
    if (writtenInOther(essay.text, essay.language)) flags.add('other_language');

    const settings = await this.settingsCache.getOrLoad(job.tenantId, () => this.settings(job.tenantId));
    const near = await this.nearDuplicates.indexAndFind(job.tenantId, essay.id, essay.text, essay.student_ref);
    let similar: { essayId: string; similarity: number } | null = null;
    // (A student's own earlier version is no copy: a resubmission may take its grade, below.)
    if (near?.nearest && near.nearest.similarity >= settings.nearDuplicateThreshold) {
      flags.add('possible_copy');
      similar = { essayId: near.nearest.essayId, similarity: Math.round(near.nearest.similarity * 10_000) / 10_000 };
    }

    let grade: StoredGrade | null = null;
    let costNanos = 0n;
    let reusedFrom: string | null = null;
    // A resubmission by the same student with trivial edits may take the earlier grade — not one
    // held because its text seemed to instruct the grader (unless a teacher has scored it since: a
    // comment alone leaves the grader's scores): taking out the instruction would clear the hold
    // and keep the grade it may have bought.
    // (A teacher's grade kept before `labelledTotal` existed counts as the teacher's total, as elsewhere.)
    const teacherScored = (g: StoredGrade) => g.source === 'teacher' && (g.labelledTotal !== false || (g.labelledDimensions ?? []).length > 0);
    const reusable = (g: StoredGrade) => teacherScored(g) || !(g.flags ?? []).includes('prompt_injection_suspected');
    if (near?.earlierOwn && settings.reuseResubmissionGrades && reusable(near.earlierOwn.grade as StoredGrade)) {
      const earlier = near.earlierOwn.grade as StoredGrade;
      reusedFrom = near.earlierOwn.essayId;
      flags.add('reused_grade');
      // It says how it was made, as on the earlier essay: an offline estimate, of content a provider
      // refused (needs_review), cut to the model's window... (a teacher's grade is the teacher's).
      // Before, the resubmission was a plain `graded` with the flag reused_grade alone.
      if (earlier.source !== 'teacher') for (const f of earlier.flags ?? []) if ((HOW_GRADED_FLAGS as readonly string[]).includes(f)) flags.add(f);
      // Its annotations are found again in this text (the edits moved them); one no longer there is dropped.
      const annotations = relocateAnnotations(essay.text, earlier.annotations ?? []);
      // Its schedule is its own (this job's deadline and plan), and it saved nothing: no call was made
      // (the earlier essay's saving, copied, was counted twice in the essays' sum).
      const { schedule: _earliers, ...made } = earlier;
      grade = { ...made, annotations, cache: 'hit', cost: '0.00', source: 'reused', gradedAt: new Date().toISOString() };
      if (schedule) grade.schedule = { dueBy: schedule.dueBy.toISOString(), mode: schedule.mode, saved: '0.00' };
    }

    if (!grade) {
      const result = await this.grader.grade(essay, rubric, flags, { job, signal, schedule });
      if (result.kind === 'failed') return this.failEssay(job, result.code, result.reason, [...flags]);
      grade = result.grade;
      costNanos = result.costNanos;
    }
    // The calibration version the grade was made with (null: none in force), when one applies to it.
    let calibratedWith: { assignmentId: string; version: number | null } | undefined;
    if (essay.assignment_id && grade.source !== 'reused' && grade.tier === 'standard') {
      const calibration = await this.calibrations.activeModel(job.tenantId, essay.assignment_id);
      calibratedWith = { assignmentId: essay.assignment_id, version: calibration?.version ?? null };
      if (calibration) grade = calibrateGrade(grade, rubric, calibration, essay);
    }
    const escalated = await this.escalate(essay, rubric, grade, flags, { job, signal });
    grade = escalated.grade;
    costNanos += escalated.costNanos;
    grade.flags = [...flags];
    const status = gradedStatus(flags);
    const stored = grade;
    // Shadow evaluation: a share of the standard model grades is graded again on the deep tier, later.
    const shadow = stored.source === 'model' && stored.tier === 'standard' && !flags.has('escalated') && inShadowSample(essay.id, settings.shadowRate);
    const done = await this.completeWith(job, async (tx) => {
      // A reused grade is stored only while the essay it came from is not erased (held until the
      // commit): erased since it was read, its grade must not live on here; the retry grades anew.
      if (stored.source === 'reused' && reusedFrom && !(await this.essays.holdUnerased(tx, job.tenantId, reusedFrom))) {
        throw new RetryableGradingError('the earlier essay whose grade was to be reused was erased meanwhile: graded again', 0, false, true);
      }
      // A calibration switched on, off or fitted anew while this essay was graded (its escalation can
      // take a deep call's seconds): graded again, on the one in force, its model answer replayed
      // (paid once). Stored on the old one, it kept it: a regrade run meanwhile passed it by, grading.
      if (calibratedWith && stored.tier === 'standard' && !(await this.calibrations.stillInForce(tx, job.tenantId, calibratedWith.assignmentId, calibratedWith.version))) {
        throw new RetryableGradingError("the assignment's calibration changed while this essay was graded: graded again on the one in force", 0, false, true);
      }
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
    const deepFlags = new Set<string>();
    try {
      deep = await this.grader.grade(essay, rubric, deepFlags, { ...task, tier: 'deep', purpose: 'escalation' });
    } catch (err) {
      // Every deep provider down: flag it. A deep call still in flight (this job's earlier attempt):
      // wait for it (the worker retries the job and the answer is replayed), never pay for it twice.
      if (!(err instanceof RetryableGradingError) || err.callInFlight) throw err;
      deep = { kind: 'failed', code: 'NO_PROVIDER_AVAILABLE', reason: err.message };
    }
    if (deep.kind === 'failed') {
      this.logger.log({ msg: 'escalation to the deep tier failed: the grade is flagged for review', tenantId: essay.tenant_id, essayId: essay.id, code: deep.code });
      return unchanged;
    }
    flags.delete('low_confidence');
    flags.add('escalated');
    // The grade shown is the deep tier's: cut where that tier's window cut the essay (a smaller one
    // than the standard tier's), whole where it read it all.
    if (deepFlags.has('truncated')) flags.add('truncated');
    else flags.delete('truncated');
    // What the scheduled standard run saved stays the essay's (the deep call ran at once: it saved
    // nothing), so the essays' savings still add up to the month's (`savedByScheduling`).
    return { grade: grade.schedule ? { ...deep.grade, schedule: grade.schedule } : deep.grade, costNanos: deep.costNanos };
  }

  /**
   * A paid deep review: the deep variant on the premium tier, kept beside the standard grade. It
   * never falls back to the offline grader: when it cannot be delivered (budget exhausted,
   * content refused, no premium model) the order is refunded; a passing outage is retried by the
   * queue, and refunded when the attempts run out.
   */
  async deepReview(job: Job, signal?: AbortSignal, batchRoom = true): Promise<GradingOutcome> {
    const row = job.orderId ? await this.essays.forOrder(job.tenantId, job.orderId) : null;
    if (!row || row.order_status !== 'paid') {
      await this.completeWith(job); // refunded or delivered meanwhile: nothing to do
      return { kind: 'done', status: 'nothing to do' };
    }
    const rubric = await this.rubrics.resolve(job.tenantId, row.rubric_key, row.rubric_version);
    const base = reviewBase(row.model_grade);
    const schedule = await this.scheduleOf(job, row, rubric, 'deep', base ? 'deep_review' : 'deep', batchRoom);
    if (schedule === 'deferred') return { kind: 'done', status: 'deferred' };
    if (!schedule && this.grader.batches({ job, ordered: true }) && (await this.noBatchRoom(job, batchRoom))) return { kind: 'done', status: 'deferred' };
    // On an essay a model has graded, the premium model writes the deep part only; otherwise (not
    // graded yet, or an offline estimate) a full deep grade.
    const runFlags = new Set<string>();
    const result = await this.grader.grade(row, rubric, runFlags, { job, signal, tier: 'deep', purpose: 'deep_review', base, ordered: true, schedule });
    if (result.kind === 'failed') {
      await this.refundOrder(job, `${result.code}: ${result.reason}`);
      return result;
    }
    // The review carries its own run's flags (`truncated`: the premium model read head and tail only).
    result.grade.flags = [...runFlags];
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
  async shadow(job: Job, signal?: AbortSignal, batchRoom = true): Promise<GradingOutcome> {
    const row = await this.essays.read(job.tenantId, job.essayId);
    if (!row || !row.model_grade || row.model_grade.source !== 'model') {
      await this.completeWith(job);
      return { kind: 'done', status: 'nothing to do' };
    }
    const rubric = withExpectedLength(await this.rubrics.resolve(job.tenantId, row.rubric_key, row.rubric_version), row.task?.expectedLength, row.language);
    if (this.grader.batches({ job, ordered: true }) && (await this.noBatchRoom(job, batchRoom))) return { kind: 'done', status: 'deferred' };
    const runFlags = new Set<string>();
    const result = await this.grader.grade(row, rubric, runFlags, { job, signal, tier: 'deep', purpose: 'shadow', ordered: true });
    if (result.kind === 'failed') {
      await this.completeWith(job);
      this.logger.log({ msg: 'shadow grading skipped', tenantId: job.tenantId, essayId: job.essayId, code: result.code });
      return { kind: 'done', status: 'skipped' };
    }
    result.grade.flags = [...runFlags];
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
    // Taken over by another worker meanwhile: nothing was written here, and the essay's followers
    // must not hear it failed (a stream ends at 'failed') while the other worker may still grade it.
    if (!(await this.failWith(job, `${code}: ${reason}`, (tx) => this.essays.fail(tx, job.tenantId, job.essayId, code, reason, flags)))) {
      this.logger.warn({ msg: 'essay failure discarded: the job was taken over by another worker', tenantId: job.tenantId, essayId: job.essayId, jobId: job.id });
      return { kind: 'done', status: 'superseded' };
    }
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

  /** What a grading of this essay can cost at most on the tier (ModelGrader.quote). */
  quote(text: string, language: Language, rubric: Rubric, tier: Tier, variant?: Variant): Nanos | null {
    return this.grader.quote(text, language, withExpectedLength(rubric, null, language), tier, variant);
  }

}

/** Whether an essay is in a tenant's shadow sample: a fixed share of essays by their (random) ids. */
export function inShadowSample(essayId: string, rate: number): boolean {
  if (rate <= 0) return false;
  return parseInt(essayId.replace(/-/g, '').slice(0, 8), 16) / 0x1_0000_0000 < rate;
}
