import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import { ApiError } from '../common/errors';
import { GatewayError } from '../llm/gateway-types';
import { AppConfig, CONFIG } from '../config/app-config';
import { EssayEvents } from './essay-events';
import { GradingService, HandedOverError, LeaseLostError, RetryableGradingError } from './grading.service';
import { GatewayService } from '../llm/gateway.service';
import { BATCH_WAITERS_PER_PLACE, Job, JobQueue } from '../jobs/job-queue';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The wait before attempt `attempt` + 1 of a failed job: JOB_RETRY_BASE_MS doubled with each
 * attempt, ±25% so that jobs failed together do not come back together, never past JOB_RETRY_MAX_MS.
 * (Doubled without a ceiling, a 19th attempt waited 15 days, and from about the 42nd the wait was
 * past any date PostgreSQL holds: the retry was refused, and the job tried again at every lease.)
 */
export function retryBackoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random()): number {
  const doubled = baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 52);
  // At the ceiling the spread is kept below it (0.6–1 of it), not cut off there: half the jobs failed
  // together would come back at the same moment.
  return Math.min(doubled, maxMs / 1.25) * (0.75 + random / 2);
}

/**
 * The background workers of one process: they claim grading jobs (up to WORKER_CONCURRENCY at a
 * time), keep their leases alive, retry failures with backoff, recover jobs whose worker died,
 * and on shutdown finish what they can within SHUTDOWN_GRACE_MS and return the rest to the queue.
 */
@Injectable()
export class GradingWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(GradingWorker.name);
  /**
   * The jobs at work here, by the claim each was taken on (Job.holder): a job whose stalled attempt
   * lost its lease and that this process claimed again is here twice, and the stalled attempt's end
   * does not take the live one's lease renewal with it.
   */
  private readonly inFlight = new Map<string, { job: Job; abort: AbortController; done: Promise<void>; batchRoom: boolean }>();
  private running = false;
  private loop?: Promise<void>;
  /** Set by wake(): the loop's pass under way claims again before it waits (a wake is never lost). */
  private woken = false;
  /** Ends the loop's wait, while it waits. */
  private sleeping?: () => void;
  /** renews the leases of the jobs in flight (until the last of them ends, stop() included) */
  private heartbeat?: NodeJS.Timeout;
  /** returns the jobs of dead workers to the queue (stopped first on a stop) */
  private recovery?: NodeJS.Timeout;
  private unsubscribe?: () => void;

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly queue: JobQueue,
    private readonly grading: GradingService,
    private readonly events: EssayEvents,
    private readonly gateway: GatewayService,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.grading.workersEnabled) this.start();
  }

  get active(): number {
    return this.inFlight.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const g = this.config.grading;
    this.unsubscribe = this.events.onQueued(() => this.wake());
    this.heartbeat = setInterval(() => {
      this.queue.heartbeat([...this.inFlight.values()].map((f) => f.job), g.leaseMs).catch((err: Error) => this.logger.warn({ msg: 'lease renewal failed', err: loggableError(err) }));
    }, Math.max(500, Math.floor(g.leaseMs / 3))).unref();
    this.recovery = setInterval(() => void this.recover(), Math.max(1_000, Math.min(g.leaseMs, 15_000))).unref();
    this.loop = this.run();
    this.logger.log({ msg: 'grading workers started', worker: this.queue.workerId, concurrency: g.concurrency });
  }

  /**
   * A pool's jobs on this instance: at work, and waiting for a provider batch, or launched with room
   * to join one and not there yet (`waiting`: what the pool's room for calls waiting in batches is
   * counted against). Gradings, gradings with a deadline, deep reviews and shadow gradings each have
   * a pool of their own.
   */
  private inPool(kind: Job['kind'], scheduled: boolean): { working: number; waiting: number } {
    let working = 0;
    let waiting = 0;
    for (const f of this.inFlight.values()) {
      if (f.job.kind !== kind || (kind === 'grade' && (f.job.dueBy !== null) !== scheduled)) continue;
      if (!f.job.inBatch) working++;
      if (f.job.inBatch || f.batchRoom) waiting++;
    }
    return { working, waiting };
  }

  private async run(): Promise<void> {
    const g = this.config.grading;
    const pools: Array<[Job['kind'], number, boolean]> = [
      ['grade', g.concurrency, false],
      ['grade', g.deepReviewConcurrency, true],
      ['deep_review', g.deepReviewConcurrency, false],
      ['shadow', g.deepReviewConcurrency, false],
    ];
    while (this.running) {
      this.woken = false;
      let more = false;
      for (const [kind, size, scheduled] of pools) {
        // A job whose call waits in a provider batch (for minutes or a day) takes no place: the
        // places are for work. Up to BATCH_WAITERS_PER_PLACE such jobs a place wait here; while
        // that many do, only work due too soon for a batch is claimed (it runs in real time), and
        // the rest waits in the queue, unclaimed. Counted as places, they filled the pool, and
        // another school's review due in twenty minutes was not claimed until a batch ended.
        const { working, waiting } = this.inPool(kind, scheduled);
        const free = size - working;
        if (free <= 0) continue;
        let batchRoom = size * BATCH_WAITERS_PER_PLACE - waiting;
        let claimed: Job[] = [];
        try {
          claimed = await this.queue.claim(free, g.leaseMs, kind, scheduled, batchRoom > 0 ? undefined : this.queue.batchTurnaroundMs());
        } catch (err) {
          this.logger.warn({ msg: 'could not claim jobs', err: loggableError(err) });
        }
        for (const job of claimed) this.launch(job, batchRoom-- > 0);
        if (claimed.length === free) more = true; // there may be more ready now
      }
      // Woken while claiming (work queued, a slot freed, or stop()): no wait. A stop during a claim
      // used to wait out a whole poll interval here, and hold the shutdown that long.
      if (more || this.woken || !this.running) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, g.pollMs);
        this.sleeping = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.sleeping = undefined;
    }
  }

  /** The loop claims again now: at once if it waits, after its pass if it is claiming. */
  private wake(): void {
    this.woken = true;
    this.sleeping?.();
  }

  private launch(job: Job, batchRoom: boolean): void {
    const abort = new AbortController();
    const done = this.process(job, abort.signal, batchRoom).finally(() => {
      this.inFlight.delete(job.holder);
      this.wake();
    });
    this.inFlight.set(job.holder, { job, abort, done, batchRoom });
  }

  private async process(job: Job, signal: AbortSignal, batchRoom: boolean): Promise<void> {
    try {
      const outcome =
        job.kind === 'deep_review'
          ? await this.grading.deepReview(job, signal, batchRoom)
          : job.kind === 'shadow'
            ? await this.grading.shadow(job, signal, batchRoom)
            : await this.grading.grade(job, signal, batchRoom);
      if (outcome.kind === 'failed') this.logger.warn({ msg: 'essay failed', tenantId: job.tenantId, essayId: job.essayId, code: outcome.code });
    } catch (err) {
      if (signal.aborted) return; // shutting down: the job is returned to the queue
      const message = (err as Error)?.message ?? String(err);
      // What a school is told when it gives up: the service's own words for what it knows (no
      // provider could answer, …), never an unexpected error's text (a database's, a driver's),
      // which only the log has (with the essay's id).
      const told = err instanceof RetryableGradingError || err instanceof GatewayError || err instanceof ApiError ? message : 'an internal error of the service (logged; send the essay again)';
      if (err instanceof LeaseLostError) {
        // Another worker holds the job now; it will finish it. Nothing here is written or paid.
        this.logger.warn({ msg: 'stopped a grading whose lease ran out', tenantId: job.tenantId, essayId: job.essayId, jobId: job.id });
        return;
      }
      if (err instanceof HandedOverError) {
        // Stopping: its paid call waits in a provider batch named on its guard. Back to the queue
        // at once, the attempt not counted, for the retry (here after a restart, or elsewhere) to
        // take the call over.
        await this.grading.returnToQueue([job]).catch(() => 0);
        this.logger.warn({ msg: 'a job waiting in a provider batch handed over', tenantId: job.tenantId, essayId: job.essayId, jobId: job.id });
        return;
      }
      // The paid call of an earlier attempt is still at a provider (that attempt's worker stalled or
      // died): this one waits for it — its answer is replayed, never paid twice — and is no attempt.
      // (Counted, a last attempt failed the essay or refunded the order while the call was billed.)
      // Bounded: the call's guard runs out, and the retry after it makes the call.
      // (So is a retry of one that tried nothing: what it read changed under it.)
      if (err instanceof RetryableGradingError && (err.callInFlight || err.noAttempt)) {
        // Looked at again every JOB_RETRY_BASE_MS (at least a second), not once the guard runs out (two minutes).
        const delay = err.noAttempt ? 0 : Math.min(Math.max(1_000, err.retryAfterMs), Math.max(1_000, this.config.grading.retryBaseMs));
        await this.grading.retryLater(job, message, delay, false).catch(() => false);
        this.logger.warn({ msg: err.noAttempt ? 'grading tried again at once: what it read changed' : 'grading waits for a call still in flight', tenantId: job.tenantId, essayId: job.essayId, attempt: job.attempts });
        return;
      }
      // Anything unexpected (a database hiccup, every deep-tier provider down) is tried again later.
      if (job.attempts < job.maxAttempts) {
        const backoff = retryBackoffMs(job.attempts, this.config.grading.retryBaseMs, this.config.grading.retryMaxMs);
        const delay = Math.max(backoff, err instanceof RetryableGradingError ? err.retryAfterMs : 0);
        await this.grading.retryLater(job, message, delay).catch(() => false);
        this.logger.warn({ msg: 'grading failed, will retry', tenantId: job.tenantId, essayId: job.essayId, attempt: job.attempts, err: loggableError(err) });
      } else if (job.kind === 'shadow') {
        await this.grading.failShadow(job, told).catch((e: Error) => this.logger.error({ msg: 'could not record a failed job', jobId: job.id, err: loggableError(e) }));
      } else if (job.kind === 'deep_review') {
        await this.grading.refundOrder(job, `every premium model failed: ${told}`).catch((e: Error) =>
          this.logger.error({ msg: 'could not refund an order', orderId: job.orderId, err: loggableError(e) }),
        );
        this.logger.error({ msg: 'deep review refunded after its last attempt', tenantId: job.tenantId, essayId: job.essayId, orderId: job.orderId, err: loggableError(err) });
      } else {
        await this.grading.failEssay(job, 'GRADING_FAILED', told).catch((e: Error) =>
          this.logger.error({ msg: 'could not record a failed job', jobId: job.id, err: loggableError(e) }),
        );
        this.logger.error({ msg: 'essay failed after its last attempt', tenantId: job.tenantId, essayId: job.essayId, err: loggableError(err) });
      }
    }
  }

  /** Jobs of dead workers go back to the queue (or fail, when their attempts are used up). */
  private async recover(): Promise<void> {
    try {
      const { requeued, failed } = await this.grading.recoverInterrupted();
      if (requeued) this.logger.warn({ msg: 'jobs of a stopped worker returned to the queue', count: requeued });
      for (const f of failed) {
        this.logger.error({ msg: 'job failed: its worker stopped on the last attempt', tenantId: f.tenantId, essayId: f.essayId, kind: f.kind });
      }
      if (requeued) this.wake();
    } catch (err) {
      this.logger.warn({ msg: 'job recovery failed', err: loggableError(err) });
    }
  }

  /**
   * Stops claiming, hands over at once the jobs whose paid calls wait in provider batches (named on
   * their guards; they go back to the queue for their retries to take the calls over), lets the
   * other in-flight gradings finish within the grace period, returns the rest.
   */
  async stop(graceMs = this.config.grading.shutdownGraceMs): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.wake();
    await this.loop;
    // Recovery stops; the leases of the gradings still running are renewed until they end (stopped
    // here, a grace longer than two thirds of JOB_LEASE_MS let another instance take a job this one
    // was still finishing, and its grade was discarded as superseded).
    clearInterval(this.recovery);
    try {
      // Jobs waiting in provider batches (hours) cannot finish within the grace: hand them over now.
      this.gateway.handOverBatches();
      const pending = [...this.inFlight.values()];
      const settled = Promise.allSettled(pending.map((p) => p.done));
      const inTime = await Promise.race([settled.then(() => true), sleep(graceMs).then(() => false)]);
      if (!inTime) {
        const left = [...this.inFlight.values()];
        for (const p of left) p.abort.abort();
        const released = await this.grading.returnToQueue(left.map((p) => p.job)).catch(() => 0);
        this.logger.warn({ msg: 'returned unfinished gradings to the queue', count: released });
        await Promise.race([Promise.allSettled(left.map((p) => p.done)), sleep(2_000)]);
      }
    } finally {
      clearInterval(this.heartbeat);
    }
    this.logger.log({ msg: 'grading workers stopped', worker: this.queue.workerId });
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }
}
