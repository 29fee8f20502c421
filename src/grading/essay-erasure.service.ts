import { Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { rateLimited } from '../tenancy/limits.service';
import { deleteEssayAnswers } from '../billing/answer-cache.repository';
import { BooksRepository } from '../billing/books.repository';
import { OrdersRepository } from '../billing/orders.repository';
import { JobQueue } from '../jobs/job-queue';
import { ResponseCache } from '../llm/response-cache';
import { EssayEvents } from './essay-events';
import { EssaysRepository } from './essays.repository';
import { NearDuplicateIndex } from './near-duplicate.service';
import { UUID } from '../common/ids';


/** What DELETE /v1/essays/:id answers: the essay's id and when its personal data was erased. */
export interface ErasedEssay {
  id: string;
  erasedAt: string;
}

/** What POST /v1/essays/erase answers: the student's essays erased now, and those it could not erase yet. */
export interface ErasedStudent {
  studentRef: string;
  /** the essays erased by this call, oldest first */
  erased: string[];
  /** essays being graded right now (409 each): erase them again once their grading ends */
  busy: string[];
  /** the student has more essays than one call erases (MAX_PER_CALL): call again */
  more: boolean;
}

/** Why an essay is erased, as its log line says: asked for, past the tenant's retention, or reapplied after a restore (erasure-replay.ts). */
export type ErasureReason = 'request' | 'retention' | 'reapplied';

/** How many of a student's essays one call erases: each is a transaction of its own. */
export const MAX_PER_CALL = 500;

/**
 * Erases a student's essay: what a school must be able to do when a student or parent asks.
 *
 * The essay's row stays as a tombstone. Its ledger rows, its orders and the month's roll-ups are
 * money, and they stay exact, so reports and budgets do not move. What goes, in one transaction:
 * - the essay's text, title, student reference, grades and failure reason (EssaysRepository.erase);
 * - teachers' overrides of its grade (their comments are about the student);
 * - its near-duplicate signature and bands, so no later essay is compared with it;
 * - the answers its gradings left in the answer cache, and those its calls' guards keep for a
 *   replay (each row names the essay it was made for);
 * - its queued gradings and deep reviews (failed with the reason), and its orders not yet
 *   delivered (a paid one refunded, one awaiting payment cancelled, with the reason).
 * After the commit, every instance drops those answers from its in-process tier (the cluster bus;
 * an instance whose listener was cut off drops its whole tier when it is back).
 *
 * An essay whose grading is running now (a worker or a provider batch holds it) is refused with
 * 409: its answer could land after the erasure. Erase it once the grading ends. Erasing an essay
 * twice answers the first erasure again. Another tenant's essay is not found.
 */
@Injectable()
export class EssayErasure {
  private readonly logger = new Logger(EssayErasure.name);
  /** tenants erasing a student's essays on this instance now (eraseStudent) */
  private readonly erasingStudents = new Set<string>();

  constructor(
    private readonly ds: DataSource,
    private readonly essays: EssaysRepository,
    private readonly jobs: JobQueue,
    private readonly orders: OrdersRepository,
    private readonly books: BooksRepository,
    private readonly nearDuplicates: NearDuplicateIndex,
    private readonly cache: ResponseCache,
    private readonly events: EssayEvents,
  ) {}

  async erase(auth: TenantAuth, id: string): Promise<ErasedEssay> {
    const done = await this.eraseFor(auth.tenantId, id, auth.keyId, 'request');
    return { id, erasedAt: done.erasedAt.toISOString() };
  }

  /**
   * Erases one essay of the tenant: `keyId` is who asked (null for the retention sweep), `why` goes
   * to the log line. `again`: it had been erased before (nothing was done now).
   */
  async eraseFor(tenantId: string, id: string, keyId: string | null, why: ErasureReason): Promise<{ erasedAt: Date; again: boolean }> {
    if (!UUID.test(id)) throw ApiError.notFound('Essay');
    let delivered: (() => void) | undefined;
    const done = await this.ds.transaction(async (m) => {
      // The essay's jobs are locked before the essay, in the order a worker finishing a job takes
      // them (the job, then the essay): the two never wait on each other in a circle.
      await this.jobs.lockUnfinishedForEssay(m, tenantId, id);
      // Then the tenant's near-duplicate index, before the essay too: an indexing (a worker whose
      // lease ran out, still grading this essay) holds it while it writes the essay's bands, which
      // wait for the essay's row; taken after the row, the two waited on each other until
      // PostgreSQL cancelled one (a 500 for the erasure, or a retried grading).
      await this.nearDuplicates.holdIndex(m, tenantId);
      const essay = await this.essays.lockForErasure(m, tenantId, id);
      if (!essay) throw ApiError.notFound('Essay');
      if (essay.erased_at) return { erasedAt: essay.erased_at, again: true };
      // Read again under the essay's lock: a job a deep-review order queued just before is seen too.
      const unfinished = await this.jobs.lockUnfinishedForEssay(m, tenantId, id);
      // A job whose worker's lease ran out is no worker's (a dead worker's, or one a restore brought
      // back running): it is cancelled with the queued ones, not waited for (after a restore, the
      // only way on was to start workers that graded the erased essays again first).
      // So is one whose call waits in a provider batch, its job handed over by a stopping instance
      // (queued, for a retry to take the call over): cancelled, its reservation stayed held for a
      // day and came back as a call lost in flight, while the provider ran and billed the line.
      // (Not when no job will take the call over — a failed job's guard is only a leftover — nor on
      // a replay after a restore, which must finish before the service serves.)
      const handedOver = why !== 'reapplied' && unfinished.some((j) => j.status === 'queued' || j.stale) && (await this.books.essayWaitsInBatch(m, tenantId, id));
      // A shadow grading running is no grading of the school's: it changes nothing the school sees
      // and stores nothing on an erased essay (its call may wait a day in a provider batch).
      if (unfinished.some((j) => j.status === 'running' && !j.stale && j.kind !== 'shadow') || handedOver) {
        throw new ApiError('CONFLICT', 'The essay is being graded right now; erase it once its grading ends (GET /v1/essays/:id shows when)');
      }
      await this.jobs.clearErrorsOfEssay(m, tenantId, id);
      const cancelled = await this.jobs.cancelQueuedForEssay(m, tenantId, id, 'the essay was erased');
      const orders = await this.orders.closeOpenForEssay(m, tenantId, id, 'the essay was erased before its deep review was delivered');
      const erasedAt = await this.essays.erase(m, tenantId, id, keyId);
      await this.nearDuplicates.forget(m, tenantId, id);
      const answers = await deleteEssayAnswers(m, tenantId, id);
      const guards = await this.books.deleteEssayGuards(m, tenantId, id);
      delivered = await this.cache.forget(m, tenantId, answers);
      return { erasedAt, again: false, cancelled, orders, answers: answers.length, guards };
    });
    if (done.again) return done;
    delivered?.();
    // Its open event streams (on any instance) read it again, find it erased, and end.
    this.events.emit({ tenantId, essayId: id, status: 'failed' });
    // The record `npm run erasures:reapply` reads after a restore (the database forgets it with the
    // backup): logged at warn, so that a LOG_LEVEL of warn keeps it too.
    this.logger.warn({
      msg: 'essay erased',
      why,
      tenantId,
      essayId: id,
      keyId,
      jobsCancelled: done.cancelled,
      ordersRefunded: done.orders?.refunded ?? 0,
      ordersCancelled: done.orders?.cancelled ?? 0,
      answersDeleted: done.answers,
      guardsDeleted: done.guards,
    });
    return done;
  }

  /**
   * Every essay of one student (by the school's student id), each erased as erase() does, one after
   * another. Essays being graded right now are listed as busy, not waited for; an essay erased
   * already is not counted again, so calling again finishes the job.
   */
  async eraseStudent(auth: TenantAuth, studentRef: string): Promise<ErasedStudent> {
    // One student's erasure at a time per tenant on an instance: each call is up to MAX_PER_CALL
    // transactions one after another, and a flood of them must not hold the pool's connections.
    if (this.erasingStudents.has(auth.tenantId)) {
      throw rateLimited("This tenant is already erasing a student's essays on this server; try again when it ends", 1, 1);
    }
    this.erasingStudents.add(auth.tenantId);
    try {
      const ids = await this.essays.unerasedOfStudent(auth.tenantId, studentRef, MAX_PER_CALL + 1);
      const out: ErasedStudent = { studentRef, erased: [], busy: [], more: ids.length > MAX_PER_CALL };
      for (const id of ids.slice(0, MAX_PER_CALL)) {
        const outcome = await this.tryErase(auth.tenantId, id, auth.keyId, 'request');
        if (outcome === 'erased') out.erased.push(id);
        else if (outcome === 'busy') out.busy.push(id);
      }
      return out;
    } finally {
      this.erasingStudents.delete(auth.tenantId);
    }
  }

  /**
   * One essay of many (a student's, or the retention sweep's): erased now, erased before (`again`),
   * or `busy` (being graded: 409). Any other failure is thrown.
   */
  async tryErase(tenantId: string, id: string, keyId: string | null, why: ErasureReason): Promise<'erased' | 'again' | 'busy'> {
    try {
      return (await this.eraseFor(tenantId, id, keyId, why)).again ? 'again' : 'erased';
    } catch (err) {
      if (err instanceof ApiError && err.code === 'CONFLICT') return 'busy';
      throw err;
    }
  }
}
