import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { ApiError } from '../common/errors';
import { loggableError } from '../common/error-rendering';
import { AppConfig, CONFIG } from '../config/app-config';
import { EssayErasure } from './essay-erasure.service';
import { EssaysRepository } from './essays.repository';

/** Essays one sweep erases at most (each its own transaction); the rest wait for the next sweep. */
export const RETENTION_BATCH = 500;

/**
 * A school's retention rule (essayRetentionDays in the grading settings): every
 * ESSAY_RETENTION_SWEEP_MS, each process that runs grading workers erases the essays older than
 * their tenant's retention, oldest first, as DELETE /v1/essays/:id erases one (EssayErasure).
 * Several processes may sweep at once: each essay's erasure locks its row, and an essay erased
 * already is left as it is. An essay being graded right now is left for the next sweep.
 */
@Injectable()
export class EssayRetention implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EssayRetention.name);
  private timer?: NodeJS.Timeout;
  private running: Promise<{ erased: number; busy: number }> | null = null;

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly essays: EssaysRepository,
    private readonly erasure: EssayErasure,
  ) {}

  onApplicationBootstrap(): void {
    const every = this.config.grading.retentionSweepMs;
    if (every === 0 || !this.config.grading.workersEnabled) return;
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One sweep (one at a time in this process): how many essays it erased, and how many it left because they were being graded. */
  sweep(): Promise<{ erased: number; busy: number }> {
    this.running ??= this.sweepOnce().finally(() => (this.running = null));
    return this.running;
  }

  private async sweepOnce(): Promise<{ erased: number; busy: number }> {
    const out = { erased: 0, busy: 0 };
    try {
      for (const { tenantId, id } of await this.essays.pastRetention(RETENTION_BATCH)) {
        try {
          await this.erasure.eraseFor(tenantId, id, null, 'retention');
          out.erased++;
        } catch (err) {
          if (!(err instanceof ApiError && err.code === 'CONFLICT')) throw err;
          out.busy++;
        }
      }
    } catch (err) {
      this.logger.warn({ msg: 'the retention sweep stopped', ...out, err: loggableError(err) });
      return out;
    }
    if (out.erased || out.busy) this.logger.log({ msg: 'essays past their retention erased', ...out });
    return out;
  }
}
