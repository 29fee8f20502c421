import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { loggableError } from '../common/error-rendering';
import { AppConfig, CONFIG } from '../config/app-config';
import { BooksRepository } from '../billing/books.repository';
import { ResponseCache } from '../llm/response-cache';
import { EssayErasure } from './essay-erasure.service';
import { EssaysRepository } from './essays.repository';
import { NearDuplicateIndex } from './near-duplicate.service';

/** Essays read at a time by a sweep (each then erased in a transaction of its own). */
export const RETENTION_BATCH = 500;
/** One sweep erases for at most this long; what is left waits for the next. */
export const SWEEP_BUDGET_MS = 5 * 60_000;
/** How far back the cleanup looks for essays erased lately, at least: longer than any grading can outlive its lease (a provider batch takes a day). */
export const LATE_ROWS_HOURS = 48;

/**
 * How far back the cleanup looks, in hours: LATE_ROWS_HOURS, or longer when the settings let a
 * grading outlive that — a provider batch waited for up to LLM_BATCH_MAX_WAIT_MS (up to 48 h), and
 * its late rows found by the sweep after next (ESSAY_RETENTION_SWEEP_MS apart, up to 24 h), plus an
 * hour. With a fixed 48 h, a batch that ended near its 48 h left rows the sweeps never looked for.
 */
export function lateRowsHours(c: { batchMaxWaitMs: number; retentionSweepMs: number }): number {
  return Math.max(LATE_ROWS_HOURS, Math.ceil((c.batchMaxWaitMs + 2 * c.retentionSweepMs) / 3_600_000) + 1);
}

export interface SweepOutcome {
  /** essays this sweep erased */
  erased: number;
  /** essays being graded right now, left for the next sweep */
  busy: number;
  /** essays whose erasure failed (logged by id), left for the next sweep */
  failed: number;
  /** rows a grading that outlived its lease wrote for an essay after its erasure, removed now */
  lateRows: number;
}

/**
 * A school's retention rule (essayRetentionDays in the grading settings), and the cleanup after
 * erasures. Every ESSAY_RETENTION_SWEEP_MS, in each process that runs grading workers:
 * - erases the essays older than their tenant's retention, oldest first, as DELETE /v1/essays/:id
 *   erases one (EssayErasure), for up to SWEEP_BUDGET_MS; an essay being graded, or whose erasure
 *   fails, is left for the next sweep;
 * - deletes the answer-cache rows, call guards and near-duplicate rows that a grading which outlived
 *   its lease (its worker stalled, its job went back to the queue and the essay was erased) wrote
 *   after the erasure, for essays erased in the last lateRowsHours (48 h, or more as the settings allow).
 * Several processes may sweep at once, with no lock held between statements (none to leak behind a
 * pooler, no connection kept idle): each essay's erasure locks its row, and a process that finds an
 * essay erased meanwhile moves on without counting it.
 */
@Injectable()
export class EssayRetention implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(EssayRetention.name);
  private timer?: NodeJS.Timeout;
  private running: Promise<SweepOutcome> | null = null;
  private stopping = false;

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly ds: DataSource,
    private readonly essays: EssaysRepository,
    private readonly erasure: EssayErasure,
    private readonly cache: ResponseCache,
    private readonly books: BooksRepository,
    private readonly nearDuplicates: NearDuplicateIndex,
  ) {}

  onApplicationBootstrap(): void {
    const every = this.config.grading.retentionSweepMs;
    if (every === 0 || !this.config.grading.workersEnabled) return;
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
  }

  /** Stops before the database closes: the sweep under way ends after the essay it is erasing. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    this.stopping = true;
    await this.running;
  }

  /** One sweep (one at a time in this process). */
  sweep(budgetMs = SWEEP_BUDGET_MS): Promise<SweepOutcome> {
    this.running ??= this.sweepOnce(budgetMs).finally(() => (this.running = null));
    return this.running;
  }

  private async sweepOnce(budgetMs: number): Promise<SweepOutcome> {
    const out: SweepOutcome = { erased: 0, busy: 0, failed: 0, lateRows: 0 };
    try {
      await this.eraseExpired(out, Date.now() + budgetMs);
      if (!this.stopping) out.lateRows = await this.removeLateRows();
    } catch (err) {
      this.logger.warn({ msg: 'the retention sweep stopped', ...out, err: loggableError(err) });
      return out;
    }
    if (out.erased || out.busy || out.failed || out.lateRows) this.logger.log({ msg: 'retention sweep', ...out });
    return out;
  }

  private async eraseExpired(out: SweepOutcome, until: number): Promise<void> {
    const skip: string[] = [];
    while (!this.stopping && Date.now() < until) {
      const batch = await this.essays.pastRetention(RETENTION_BATCH, skip);
      if (!batch.length) return;
      for (const { tenantId, id } of batch) {
        if (this.stopping || Date.now() >= until) return;
        try {
          const outcome = await this.erasure.tryErase(tenantId, id, null, 'retention');
          if (outcome === 'erased') out.erased++;
          if (outcome === 'busy') {
            out.busy++;
            skip.push(id);
          }
        } catch (err) {
          skip.push(id);
          out.failed++;
          this.logger.warn({ msg: 'an essay past its retention could not be erased', tenantId, essayId: id, err: loggableError(err) });
        }
      }
    }
  }

  private async removeLateRows(): Promise<number> {
    let deliver = () => {};
    const n = await this.ds.transaction(async (m) => {
      const hours = lateRowsHours({ batchMaxWaitMs: this.config.llm.batchMaxWaitMs, retentionSweepMs: this.config.grading.retentionSweepMs });
      const answers = await this.cache.forgetErased(m, hours);
      deliver = answers.deliver;
      return answers.count + (await this.books.deleteGuardsOfErased(m, hours)) + (await this.nearDuplicates.forgetErased(m, hours));
    });
    deliver();
    return n;
  }
}
