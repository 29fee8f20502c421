import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AppConfig, CONFIG } from '../config/app-config';
import { rowsOf, tenantQuery, tenantStatement, TenantStatement } from '../db/tenant-scope';

/**
 * A job's new deadline ($3): it carries it from now on, and one queued until the start of the
 * cheaper window its plan waits for is due at once (planned again against the new deadline).
 */
const NEW_DEADLINE = `due_by = $3::timestamptz,
              run_after = CASE WHEN j.status = 'queued' AND j.plan->>'mode' = 'off_peak' AND j.run_after = (j.plan->>'startAt')::timestamptz
                               THEN least(j.run_after, now()) ELSE j.run_after END`;

/**
 * Jobs whose call waits in a provider batch take no place, in a school's gradings at once (claim)
 * or in an instance's pool (GradingWorker), up to this many per place: beyond, they count again
 * (each holds its request in a worker's memory until its batch ends).
 */
export const BATCH_WAITERS_PER_PLACE = 10;

/** A grading, a paid deep review, or a shadow grading on the deep tier (SPEC §9). */
export type JobKind = 'grade' | 'deep_review' | 'shadow';

export interface Job {
  id: string;
  tenantId: string;
  essayId: string;
  kind: JobKind;
  /** the deep-review order a deep_review job delivers */
  orderId: string | null;
  attempts: number;
  maxAttempts: number;
  /**
   * This claim's name on the job (its `locked_by`): the worker's id and a token of the claim. Every
   * check that the job is still held compares it, so an attempt that stalled past its lease holds
   * nothing once the job was claimed again — by another instance, or by this one. (Named by the
   * process alone, a stalled attempt of a job this process claimed again still passed every check:
   * it could put back in the queue, or end, the job its live attempt was working on.)
   */
  holder: string;
  /** the work may wait until shortly before this (off-peak scheduling); null: run at once */
  dueBy: Date | null;
  /** the plan a scheduled job was last given (see GradingService.scheduleOf), or null */
  plan: JobPlan | null;
  /** its paid call waits in a provider batch now (markInBatch): it holds no worker's place */
  inBatch?: boolean;
}

/** The plan a scheduled job runs on (see planWork): kept on the job, shown with its essay. */
export interface JobPlan {
  mode: 'now' | 'batch' | 'off_peak';
  startAt: string;
  model: string;
  window: string | null;
  plannedAt: string;
  /** when the job was first planned (as good as submitted): its work is compared with real time then */
  firstPlannedAt: string;
  /** an attempt of the job planned a batch: its call may wait there, whatever later plans say (never deferred again) */
  batchedBefore?: boolean;
}

/** An essay's job with a deadline, as its view shows it. */
export interface ScheduledJob {
  kind: JobKind;
  orderId: string | null;
  dueBy: Date;
  plan: JobPlan | null;
}

/** A job to queue: an essay's grading, or the deep review a paid order bought. */
export interface NewJob {
  essayId: string;
  kind: JobKind;
  orderId?: string;
  /** may wait until shortly before this, to run where it costs least */
  dueBy?: Date | null;
  /**
   * In place of `dueBy`: the deadline of this assignment, read by the statement that queues the job
   * with the assignment's row locked (FOR SHARE), none when it is not after `now`. A teacher's PATCH
   * of the deadline locks that row to write it and then moves the deadlines of the jobs it finds
   * (AssignmentsService.update): a job queued meanwhile either waits for the PATCH and reads the new
   * deadline, or is found by it.
   */
  deadlineOf?: { assignmentId: string; now: Date };
}

/** A job whose worker stopped on its last attempt: it failed, and what it was for must be told so. */
export interface InterruptedJob {
  tenantId: string;
  essayId: string;
  kind: JobKind;
  orderId: string | null;
}

/**
 * The durable job queue in PostgreSQL, the only code that writes `jobs`. Workers claim jobs with
 * `FOR UPDATE SKIP LOCKED` and hold them under a lease they keep renewing. A job ends (complete or
 * fail) only by the worker that still holds it, inside the caller's transaction, so its result is
 * written in the same transaction and exactly once. A lease that runs out (its worker died) puts the
 * job back in the queue.
 *
 * Claiming and lease recovery are maintenance across tenants; everything done for a job is scoped
 * to the job's tenant.
 */
@Injectable()
export class JobQueue {
  /** This process's name on the jobs it holds. */
  readonly workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  /** Each job's last in_batch write (markInBatch), for the next to follow; gone with the job object. */
  private readonly inBatchWrites = new WeakMap<Job, Promise<void>>();

  constructor(
    private readonly ds: DataSource,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  /** Queues jobs inside the caller's transaction (with the paid order they are for). */
  async enqueue(tx: EntityManager, tenantId: string, jobs: NewJob[]): Promise<string[]> {
    if (!jobs.length) return [];
    const { statement, ids } = this.enqueueStatement(tenantId, jobs);
    await tx.query(statement.sql, statement.params);
    return ids;
  }

  /** The statement that queues jobs, for the caller to run with the essays they are for (runAtomically). */
  enqueueStatement(tenantId: string, jobs: NewJob[]): { statement: TenantStatement; ids: string[] } {
    const ids = jobs.map(() => randomUUID());
    const statement = tenantStatement(
      tenantId,
      `INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts, order_id, due_by)
       SELECT $1, t.id, t.essay_id, t.kind, 'queued', $5, t.order_id,
              CASE WHEN t.assignment_id IS NULL THEN t.due_by
                   ELSE (SELECT CASE WHEN a.due_by > t.now THEN a.due_by END FROM assignments a WHERE a.tenant_id = $1 AND a.id = t.assignment_id FOR SHARE) END
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $6::uuid[], $7::timestamptz[], $8::uuid[], $9::timestamptz[]) AS t(id, essay_id, kind, order_id, due_by, assignment_id, now)`,
      [
        ids,
        jobs.map((j) => j.essayId),
        jobs.map((j) => j.kind),
        this.config.grading.maxAttempts,
        jobs.map((j) => j.orderId ?? null),
        jobs.map((j) => j.dueBy?.toISOString() ?? null),
        jobs.map((j) => j.deadlineOf?.assignmentId ?? null),
        jobs.map((j) => j.deadlineOf?.now.toISOString() ?? null),
      ],
    );
    return { statement, ids };
  }

  /**
   * Claims up to `limit` ready jobs of a kind for this worker, round-robin across tenants: the
   * tenants with ready jobs are found by a skip scan of the queue index; those with the fewest
   * gradings running (then the oldest waiting job) take part, and their jobs are taken
   * first-of-each-tenant, then second-of-each… So a tenant whose 5,000-essay class set fills the
   * workers holds another tenant's essay back by one claim round at most, even when only one
   * worker slot is free. A tenant's jobs of each kind at once (across instances) stay within its
   * `essaysGrading` limit: gradings, gradings with a deadline, deep reviews, shadow gradings, each
   * counted apart.
   *
   * Gradings with a deadline (`scheduled`) are claimed apart from the others: they may wait on a
   * provider batch for hours, so they have a pool of their own, where a tenant again holds at most
   * its `essaysGrading` (counted in that lane): a class set due next week cannot take every slot.
   * Within a school that lane goes earliest deadline first (then in the order they became ready): a
   * small set due this afternoon is not held behind a large one due next week that was ready sooner.
   * A job whose call waits in a provider batch (`in_batch`, markInBatch) is not counted: it needs no
   * worker's time, and a class set in a batch must not hold back the school's work due sooner.
   * Up to BATCH_WAITERS_PER_PLACE such jobs a place, that is: beyond, they count again for the
   * school's work a batch could take, while its work due too soon for a batch (batchTurnaroundMs)
   * may still take all its `essaysGrading` places at work, first (its reviews due in the morning
   * are not held a day behind its 700 reviews waiting in batches). The turn
   * between tenants still goes by every job each holds, waiting ones included: a school with a
   * class set in a batch does not go before one with nothing running.
   */
  async claim(limit: number, leaseMs: number, kind: JobKind = 'grade', scheduled = false, dueWithinMs?: number): Promise<Job[]> {
    if (limit <= 0) return [];
    // Every kind (and lane) has its own count against the school's `essaysGrading`: deep reviews and
    // shadow gradings too, in their own pools. (They had no cap of their own: one school's deep
    // reviews waiting in batches, ten a place, filled an instance's pool for up to a day, and another
    // school's deep review due in the morning was never claimed.)
    const cap = this.config.limits.essaysGrading;
    // Gradings are claimed by lane (with a deadline or not), on an index that leads with it.
    const lane = (t: string) => (kind === 'grade' ? `AND (${t}.due_by IS NOT NULL) = ${scheduled ? 'true' : 'false'}` : '');
    // `dueWithinMs`: only work due that soon (the worker's pool holds as many calls waiting in
    // provider batches as it takes: work a batch could take waits in the queue, not claimed).
    const ready = (t: string) => `${lane(t)}${dueWithinMs === undefined ? '' : ` AND ${t}.due_by < now() + make_interval(secs => ${Math.max(0, Math.floor(dueWithinMs)) / 1000})`}`;
    // Within a school, the lane of gradings with a deadline goes earliest deadline first (on its own
    // index, jobs_queued_due_idx, which the lane's condition matches).
    const deadlineFirst = kind === 'grade' && scheduled;
    // Due too soon for a provider batch ($6: batchTurnaroundMs).
    const SOON = (t: string) => `${t}.due_by < now() + make_interval(secs => $6::double precision / 1000)`;
    // Claims of one kind and lane take turns across instances (a transaction-scoped advisory lock,
    // taken before the claim's statement begins): each counts the jobs running with every claim
    // before it committed, so a school's `essaysGrading` holds across instances. (Without it two
    // instances woken by the same submission each counted the same room and claimed it twice.)
    // Only work due soon, and none is: nothing to claim, found on an index of queued work by kind
    // and deadline (the claim's walk over the schools' queues would step over every job due later).
    if (dueWithinMs !== undefined && !(await this.anyDueWithin(kind, scheduled, dueWithinMs))) return [];
    const rows = await this.ds.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`jobs_claim:${kind}:${scheduled}`]);
      return rowsOf<Record<string, string | number>>(await tx.query(
      `WITH RECURSIVE waiting AS (
         (SELECT tenant_id FROM jobs WHERE status = 'queued' AND kind = $4 ${ready('jobs')} ORDER BY tenant_id LIMIT 1)
         UNION ALL
         SELECT (SELECT j.tenant_id FROM jobs j WHERE j.status = 'queued' AND j.kind = $4 ${ready('j')} AND j.tenant_id > w.tenant_id ORDER BY j.tenant_id LIMIT 1)
           FROM waiting w WHERE w.tenant_id IS NOT NULL),
       heads AS (
         SELECT w.tenant_id, h.run_after AS head, n.running + n.in_batch AS running, c.cap - n.running - greatest(0, n.in_batch - c.cap * ${BATCH_WAITERS_PER_PLACE}) AS room,
                c.cap - n.running AS soon_room
           FROM waiting w
           CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE NOT r.in_batch) AS running, count(*) FILTER (WHERE r.in_batch) AS in_batch
                                 FROM jobs r WHERE r.tenant_id = w.tenant_id AND r.kind = $4 AND r.status = 'running' ${lane('r')}) n
           JOIN tenants t ON t.id = w.tenant_id
           CROSS JOIN LATERAL (SELECT coalesce((t.limits->>'essaysGrading')::int, $5) AS cap) c
           CROSS JOIN LATERAL (SELECT run_after FROM jobs j WHERE j.tenant_id = w.tenant_id AND j.kind = $4 ${ready('j')} AND j.status = 'queued' AND j.run_after <= now()
                                ORDER BY j.run_after LIMIT 1) h
          WHERE w.tenant_id IS NOT NULL),
       -- A school whose batch waiters passed their share (room < soon_room) has room for its work
       -- that a batch could take, and all its places at work (soon_room) for its work due too soon
       -- for a batch (as the instance's pool does): that runs in real time, never after its deadline.
       chosen AS (SELECT tenant_id, room, soon_room, room < soon_room AS excess, running FROM heads
                   WHERE room > 0
                      OR (soon_room > 0 AND CASE WHEN room > 0 THEN false ELSE EXISTS (
                            SELECT 1 FROM jobs j WHERE j.tenant_id = heads.tenant_id AND j.kind = $4 ${ready('j')} AND j.status = 'queued' AND j.run_after <= now() AND ${SOON('j')}) END)
                   ORDER BY running, head LIMIT $3),
       soon_picked AS (
         SELECT ch.tenant_id, c.id, c.run_after, c.due_by, ch.running, ch.room, true AS soon
           FROM chosen ch
           CROSS JOIN LATERAL (SELECT j.id, j.run_after, j.due_by FROM jobs j
                                WHERE ch.excess AND j.tenant_id = ch.tenant_id AND j.kind = $4 ${ready('j')} AND j.status = 'queued' AND j.run_after <= now() AND ${SOON('j')}
                                ORDER BY ${deadlineFirst ? 'j.due_by, ' : ''}j.run_after LIMIT greatest(0, least(ch.soon_room, $3)) FOR UPDATE SKIP LOCKED) c),
       rest_picked AS (
         SELECT ch.tenant_id, c.id, c.run_after, c.due_by, ch.running, ch.room, false AS soon
           FROM chosen ch
           CROSS JOIN LATERAL (SELECT j.id, j.run_after, j.due_by FROM jobs j
                                WHERE ch.room > 0 AND j.tenant_id = ch.tenant_id AND j.kind = $4 ${ready('j')} AND j.status = 'queued' AND j.run_after <= now()
                                  AND (NOT ch.excess OR j.due_by IS NULL OR NOT ${SOON('j')})
                                ORDER BY ${deadlineFirst ? 'j.due_by, ' : ''}j.run_after LIMIT greatest(0, least(ch.room, $3)) FOR UPDATE SKIP LOCKED) c),
       -- (A LIMIT is worked out before the filter: a school chosen for its work due soon has room <= 0.)
       -- Each school's turns: its work due soon first (only an excess school has any here), then the
       -- rest, of which only what its room still holds after the work due soon.
       picked AS (
         SELECT id, run_after, running, soon, room,
                row_number() OVER (PARTITION BY tenant_id ORDER BY soon DESC, ${deadlineFirst ? 'due_by, ' : ''}run_after) AS turn
           FROM (SELECT * FROM soon_picked UNION ALL SELECT * FROM rest_picked) x)
       UPDATE jobs SET status = 'running', locked_by = $1 || '/' || gen_random_uuid()::text, attempts = attempts + 1, in_batch = false,
              locked_until = now() + make_interval(secs => $2::double precision / 1000)
        WHERE id IN (SELECT id FROM picked WHERE soon OR turn <= room ORDER BY turn, running, run_after LIMIT $3)
        RETURNING id, tenant_id, essay_id, kind, order_id, attempts, max_attempts, due_by, plan, locked_by`,
      [this.workerId, leaseMs, limit, kind, cap, this.batchTurnaroundMs()],
      ));
    });
    return rows.map((r) => ({
      id: String(r.id),
      tenantId: String(r.tenant_id),
      essayId: String(r.essay_id),
      kind: r.kind as JobKind,
      orderId: (r.order_id as string | null) ?? null,
      attempts: Number(r.attempts),
      maxAttempts: Number(r.max_attempts),
      holder: String(r.locked_by),
      dueBy: r.due_by ? new Date(r.due_by as unknown as string) : null,
      plan: (r.plan as unknown as JobPlan | null) ?? null,
    }));
  }

  /**
   * Work due sooner than this is never sent in a provider batch (the planner's rule: a batch's
   * collection window and longest wait, and the margin before the deadline): what still runs, in
   * real time, where calls waiting in batches have taken the room (a pool's, a school's).
   */
  batchTurnaroundMs(): number {
    const llm = this.config.llm;
    return llm.batchWindowMs + llm.batchMaxWaitMs + llm.scheduleMarginMs;
  }

  /** Whether queued work of the kind (and lane) is due within `ms` and ready to run (on jobs_queued_kind_due_idx). */
  private async anyDueWithin(kind: JobKind, scheduled: boolean, ms: number): Promise<boolean> {
    if (kind === 'grade' && !scheduled) return false; // that lane's work has no deadline
    // Across tenants by design: the claim that follows is across tenants too.
    const rows = rowsOf(await this.ds.query(QUEUED_DUE_WITHIN_SQL, [kind, Math.max(0, Math.floor(ms))]));
    return rows.length > 0;
  }

  /** Extends the leases of the jobs this worker is still working on (each by the claim it holds). */
  async heartbeat(jobs: Job[], leaseMs: number): Promise<void> {
    if (!jobs.length) return;
    await this.ds.query(
      `UPDATE jobs SET locked_until = now() + make_interval(secs => $3::double precision / 1000)
        WHERE id = ANY($1::uuid[]) AND locked_by = ANY($2::text[]) AND status = 'running'`,
      [jobs.map((j) => j.id), jobs.map((j) => j.holder), leaseMs],
    );
  }

  /**
   * Ends the job as done, inside the caller's transaction, only while this worker holds it: the row
   * stays locked until the transaction ends, so what the caller writes next (the grade) is written
   * exactly once. False when the lease was lost: the caller must write nothing.
   */
  complete(tx: EntityManager, job: Job): Promise<boolean> {
    return this.finish(tx, job, 'done');
  }

  /** Like complete, but the job ends as failed (its result is a refund, a failure reason). */
  fail(tx: EntityManager, job: Job, error: string): Promise<boolean> {
    return this.finish(tx, job, 'failed', error);
  }

  private async finish(tx: EntityManager, job: Job, status: 'done' | 'failed', error?: string): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      job.tenantId,
      `UPDATE jobs SET status = $4, finished_at = now(), locked_by = NULL, locked_until = NULL, in_batch = false, last_error = coalesce($5, last_error)
        WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3 RETURNING id`,
      [job.id, job.holder, status, error?.slice(0, 500) ?? null],
    );
    return rows.length === 1;
  }

  /**
   * Puts the job back to run again after `delayMs`, if this worker still holds it. `counted: false`
   * gives the attempt back (nothing was tried: it waits for a call an earlier attempt still has at a
   * provider).
   */
  async retryLater(job: Job, error: string, delayMs: number, tx: EntityManager = this.ds.manager, counted = true): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      job.tenantId,
      `UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, in_batch = false, last_error = $4,
              run_after = now() + make_interval(secs => $5::double precision / 1000),
              attempts = CASE WHEN $6::boolean THEN attempts ELSE greatest(attempts - 1, 0) END
        WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3 RETURNING id`,
      [job.id, job.holder, error.slice(0, 500), delayMs, counted],
    );
    return rows.length === 1;
  }

  /**
   * Whether a call of the job's essay waits in a provider batch, named on its guard (one handed over
   * at a stop, or left by a killed process): the job's retry takes that batch over.
   */
  async callWaitsInBatch(job: Job): Promise<boolean> {
    const rows = await tenantQuery(
      this.ds.manager,
      job.tenantId,
      `SELECT 1 FROM call_guards WHERE tenant_id = $1 AND essay_id = $2 AND state = 'in_flight' AND expires_at > now()
          AND (batch_id IS NOT NULL OR batch_file_id IS NOT NULL) LIMIT 1`,
      [job.essayId],
    );
    return rows.length > 0;
  }

  /** The essay's jobs with a deadline, latest first (for its view). */
  async scheduledFor(tenantId: string, essayId: string, m: EntityManager = this.ds.manager): Promise<ScheduledJob[]> {
    const rows = await tenantQuery<{ kind: JobKind; order_id: string | null; due_by: Date; plan: JobPlan | null }>(
      m,
      tenantId,
      `SELECT kind, order_id, due_by, plan FROM jobs WHERE tenant_id = $1 AND essay_id = $2 AND due_by IS NOT NULL ORDER BY created_at DESC`,
      [essayId],
    );
    return rows.map((r) => ({ kind: r.kind, orderId: r.order_id, dueBy: new Date(r.due_by), plan: r.plan }));
  }

  /**
   * An assignment's new deadline (null: none), for its gradings not done: they carry it from now on
   * (a running one from its next attempt: its current plan stands), and those waiting for a cheaper
   * window (queued until the window's start) are due at once, to be planned again against it. Only
   * rows whose deadline changes are written: the same PATCH sent again writes nothing.
   */
  async moveDeadline(tx: EntityManager, tenantId: string, assignmentId: string, dueBy: Date | null): Promise<void> {
    await tenantQuery(
      tx,
      tenantId,
      `UPDATE jobs j SET ${NEW_DEADLINE}
         FROM essays e
        WHERE j.tenant_id = $1 AND e.tenant_id = $1 AND e.assignment_id = $2 AND j.essay_id = e.id AND j.kind = 'grade' AND j.status IN ('queued', 'running')
          AND j.due_by IS DISTINCT FROM $3::timestamptz`,
      [assignmentId, dueBy],
    );
  }

  /**
   * A deep-review order's deadline brought forward (ordered again "by tomorrow morning"): its job,
   * while it waits in the queue (to be claimed, or for a cheaper window: then due at once, to be
   * planned again against it), carries it; false when there is no such job — one running, or whose
   * call waits in a provider batch, keeps its plan (a running review in the 24-hour batch would not
   * have met the deadline the order then claimed). A later deadline never replaces an earlier one.
   */
  async bringOrderForward(tx: EntityManager, tenantId: string, orderId: string, dueBy: Date): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `UPDATE jobs j SET ${NEW_DEADLINE}
        WHERE j.tenant_id = $1 AND j.order_id = $2 AND j.kind = 'deep_review' AND j.status = 'queued' AND j.in_batch IS NOT TRUE
          AND coalesce(j.plan->>'mode', '') <> 'batch' AND coalesce((j.plan->>'batchedBefore')::boolean, false) = false
          AND (j.due_by IS NULL OR j.due_by > $3::timestamptz)
          -- a call handed over at a stop still waits in its batch (named on its guard): its retry takes it over
          AND NOT EXISTS (SELECT 1 FROM call_guards g WHERE g.tenant_id = $1 AND g.essay_id = j.essay_id AND g.state = 'in_flight'
                            AND g.expires_at > now() AND (g.batch_id IS NOT NULL OR g.batch_file_id IS NOT NULL))
        RETURNING j.id`,
      [orderId, dueBy],
    );
    return rows.length > 0;
  }

  /**
   * Marks the job's paid call as waiting in a provider batch (or no longer), while this worker holds
   * it: such a job is not counted against its school's gradings at once (claim). A job put back in
   * the queue or ended is no longer marked (each of those statements clears it): a queued job so
   * marked was passed over by bringOrderForward.
   */
  markInBatch(job: Job, inBatch: boolean): Promise<void> {
    job.inBatch = inBatch;
    // One write after the other, per job: a wait that ends at once must not leave the row `true`
    // because its two updates crossed on two connections. (A write that fails leaves the next one be.)
    const write = (this.inBatchWrites.get(job) ?? Promise.resolve()).catch(() => undefined).then(() =>
      tenantQuery(this.ds.manager, job.tenantId, `UPDATE jobs SET in_batch = $4 WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3`, [
        job.id,
        job.holder,
        inBatch,
      ]).then(() => undefined),
    );
    this.inBatchWrites.set(job, write);
    return write;
  }

  /** Records the plan a scheduled job runs on (shown with its essay or order), while this worker holds it. */
  async recordPlan(job: Job, plan: JobPlan): Promise<void> {
    await tenantQuery(
      this.ds.manager,
      job.tenantId,
      `UPDATE jobs SET plan = $4::jsonb WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3`,
      [job.id, job.holder, JSON.stringify(plan)],
    );
  }

  /**
   * Puts a scheduled job back to wait for the start of its plan (a cheaper window), if this worker
   * still holds it. Waiting is not an attempt. The plan was made on the deadline the job had when
   * it was claimed: if a teacher has moved it since (moveDeadline reaches running jobs' due_by,
   * not their plans), the job does not wait for that plan's window but is due at once, to be
   * planned again against the new deadline (as moveDeadline does with the jobs already waiting).
   * (Compared to the millisecond: the job's deadline came to this process as a JS Date.)
   *
   * The plan's start is on this process's clock, the queue's on the database's. When the database
   * holds the start as past already (this clock lags behind it), the job waits, on the database's
   * clock, as long as the plan still had to wait (at least a second): claimed again at once, it was
   * planned for the same window again, and deferred and claimed in a loop until this clock caught up.
   */
  async defer(job: Job, plan: JobPlan, tx: EntityManager = this.ds.manager): Promise<boolean> {
    const toWait = Math.max(0, Date.parse(plan.startAt) - Date.parse(plan.plannedAt));
    const rows = await tenantQuery(
      tx,
      job.tenantId,
      `UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, in_batch = false, attempts = greatest(attempts - 1, 0),
              run_after = CASE WHEN date_trunc('milliseconds', due_by) IS NOT DISTINCT FROM $6::timestamptz
                               THEN CASE WHEN $4::timestamptz > now() THEN $4::timestamptz ELSE now() + make_interval(secs => greatest($7::double precision, 1000) / 1000) END
                               ELSE now() END,
              plan = CASE WHEN date_trunc('milliseconds', due_by) IS NOT DISTINCT FROM $6::timestamptz THEN $5::jsonb ELSE plan END
        WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3 RETURNING id`,
      [job.id, job.holder, plan.startAt, JSON.stringify(plan), job.dueBy ?? null, toWait],
    );
    return rows.length === 1;
  }

  /**
   * Returns jobs this worker will not finish (shutdown) to the queue, without counting the attempt;
   * the ids of those it still held (the others are another worker's now). In `tx`, they stay locked
   * until it commits: a claim skips them.
   */
  async release(jobs: Job[], tx: EntityManager = this.ds.manager): Promise<string[]> {
    if (!jobs.length) return [];
    // Across tenants by design: a stopping worker's jobs, whoever's they are.
    const rows = rowsOf<{ id: string }>(
      await tx.query(
        `UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, in_batch = false, attempts = greatest(attempts - 1, 0), run_after = now()
          WHERE id = ANY($1::uuid[]) AND locked_by = ANY($2::text[]) AND status = 'running' RETURNING id`,
        [jobs.map((j) => j.id), jobs.map((j) => j.holder)],
      ),
    );
    return rows.map((r) => r.id);
  }

  /**
   * The essay's unfinished jobs, locked until the transaction ends: a worker skips a locked job when
   * it claims (erasure). `stale`: running, but its worker's lease ran out (the worker is gone, or a
   * restore brought the job back as it was): no worker holds it.
   */
  async lockUnfinishedForEssay(tx: EntityManager, tenantId: string, essayId: string): Promise<Array<{ id: string; kind: JobKind; status: 'queued' | 'running'; stale: boolean }>> {
    return tenantQuery<{ id: string; kind: JobKind; status: 'queued' | 'running'; stale: boolean }>(
      tx,
      tenantId,
      `SELECT id, kind, status, (status = 'running' AND locked_until < now()) AS stale FROM jobs
        WHERE tenant_id = $1 AND essay_id = $2 AND status IN ('queued', 'running') FOR UPDATE`,
      [essayId],
    );
  }

  /** The essay's queued jobs, and running ones no worker holds (their lease ran out), are cancelled (it was erased before they ran). */
  async cancelQueuedForEssay(tx: EntityManager, tenantId: string, essayId: string, reason: string): Promise<number> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `UPDATE jobs SET status = 'failed', finished_at = now(), last_error = $3, locked_by = NULL, locked_until = NULL
        WHERE tenant_id = $1 AND essay_id = $2 AND (status = 'queued' OR (status = 'running' AND locked_until < now())) RETURNING id`,
      [essayId, reason],
    );
    return rows.length;
  }

  /** The essay's finished jobs' error texts are cleared (it was erased: nothing of its grading stays but the ledger's). */
  async clearErrorsOfEssay(tx: EntityManager, tenantId: string, essayId: string): Promise<void> {
    await tenantQuery(tx, tenantId, `UPDATE jobs SET last_error = NULL WHERE tenant_id = $1 AND essay_id = $2 AND last_error IS NOT NULL AND status <> 'running'`, [essayId]);
  }

  /** An order's queued jobs, locked until the transaction ends (a refund takes them before the order, as an erasure does). */
  async lockQueuedForOrder(tx: EntityManager, tenantId: string, orderId: string): Promise<void> {
    await tenantQuery(tx, tenantId, `SELECT id FROM jobs WHERE tenant_id = $1 AND order_id = $2 AND status = 'queued' FOR UPDATE`, [orderId]);
  }

  /**
   * Queued jobs of an order are cancelled (the order was refunded before its deep review ran): those
   * this transaction holds (lockQueuedForOrder) and any other it can take without waiting. One
   * queued after that lock (a payment's, committed while the refund waited for the order) may be
   * held by an erasure that waits for this order: waiting for it would close a circle. It is left:
   * the erasure fails it, or a worker claims it and, the order refunded, ends it without a call
   * (GradingService.deepReview).
   */
  async cancelQueuedForOrder(tx: EntityManager, tenantId: string, orderId: string, reason: string): Promise<number> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `UPDATE jobs SET status = 'failed', finished_at = now(), last_error = $3
        WHERE tenant_id = $1 AND id IN (SELECT id FROM jobs WHERE tenant_id = $1 AND order_id = $2 AND status = 'queued' FOR UPDATE SKIP LOCKED) RETURNING id`,
      [orderId, reason],
    );
    return rows.length;
  }

  /**
   * Jobs whose worker stopped (lease expired) go back to the queue; those on their last attempt fail,
   * inside the caller's transaction, which also fails their essay or refunds their order (the caller
   * owns those), so a crash here cannot leave an essay grading forever or a paid order undelivered
   * and unrefunded.
   */
  async recover(tx: EntityManager): Promise<{ requeued: number; failed: InterruptedJob[] }> {
    // Across tenants by design (a maintenance sweep of expired leases).
    const requeued: Array<{ n: number }> = await tx.query(
      `WITH r AS (
         UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, in_batch = false, run_after = now(),
                last_error = 'the worker holding this job stopped'
          WHERE status = 'running' AND locked_until < now() AND attempts < max_attempts RETURNING 1)
       SELECT count(*)::int AS n FROM r`,
    );
    const failed = rowsOf<{ tenant_id: string; essay_id: string; kind: JobKind; order_id: string | null }>(
      await tx.query(
        `UPDATE jobs SET status = 'failed', locked_by = NULL, locked_until = NULL, in_batch = false, finished_at = now(),
                last_error = 'the worker holding this job stopped, and its attempts are used up'
          WHERE status = 'running' AND locked_until < now() AND attempts >= max_attempts
          RETURNING tenant_id, essay_id, kind, order_id`,
      ),
    );
    return {
      requeued: requeued[0]?.n ?? 0,
      failed: failed.map((r) => ({ tenantId: r.tenant_id, essayId: r.essay_id, kind: r.kind, orderId: r.order_id })),
    };
  }

  /** A tenant's gradings waiting in the queue, counted up to `cap` (its essays-queued limit needs no more). */
  async queuedGradings(tenantId: string, cap: number): Promise<number> {
    const [row] = await tenantQuery<{ n: number }>(
      this.ds.manager,
      tenantId,
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM jobs WHERE kind = 'grade' AND tenant_id = $1 AND status = 'queued' LIMIT $2) q`,
      [cap],
    );
    return row.n;
  }

  async depth(): Promise<Record<'queued' | 'running', number>> {
    const rows: Array<{ status: string; n: number }> = await this.ds.query(
      `SELECT status, count(*)::int AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status`,
    );
    const out = { queued: 0, running: 0 };
    for (const r of rows) out[r.status as 'queued' | 'running'] = r.n;
    return out;
  }
}

/** Is queued work of kind $1 due within $2 ms and ready to run (JobQueue.claim, a pool with no room for calls waiting in batches)? */
export const QUEUED_DUE_WITHIN_SQL = `SELECT 1 FROM jobs WHERE status = 'queued' AND kind = $1 AND due_by IS NOT NULL
  AND due_by < now() + make_interval(secs => $2::double precision / 1000) AND run_after <= now() LIMIT 1`;
