import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppConfig, CONFIG } from '../config/app-config';
import { loggableError } from '../common/error-rendering';
import { withoutStatementTimeout } from './data-source';
import { sharesOneSession } from './embedded-postgres';

/** One instance at a time vacuums (a session-level advisory lock; any 64-bit number of ours). */
export const VACUUM_LOCK = 7263849502;

/**
 * Whether the database vacuums and analyzes its tables on its own: a PostgreSQL server with
 * autovacuum on does; one with it off does not, nor does the embedded PostgreSQL (PGlite runs no
 * background workers, whatever `autovacuum` says).
 */
export function vacuumsOnItsOwn(autovacuum: string, embedded: boolean): boolean {
  return !embedded && autovacuum === 'on';
}

/**
 * When the database does not vacuum on its own, this instance does, every
 * DATABASE_VACUUM_INTERVAL_MS: `VACUUM (ANALYZE)` of the whole database, by one instance at a time.
 * Without it, the rows every call updates (budget periods and leases, the daily roll-up, cache
 * hit counts) leave a dead version each time that nothing reclaims, and the planner's statistics
 * stay those of an empty database. VACUUM takes no lock that stops reads or writes on a server;
 * on the embedded PostgreSQL, whose connections share one session, the statements of the moment
 * wait for it.
 */
@Injectable()
export class DatabaseMaintenance implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Database');
  private timer?: NodeJS.Timeout;
  private running: Promise<boolean> | null = null;

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly ds: DataSource,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const every = this.config.databaseVacuumIntervalMs;
    if (every === 0) return;
    const [{ autovacuum }]: Array<{ autovacuum: string }> = await this.ds.query('SHOW autovacuum');
    if (vacuumsOnItsOwn(autovacuum, await sharesOneSession(this.ds))) return;
    this.logger.log({ msg: 'the database does not vacuum on its own (autovacuum off, or the embedded PostgreSQL): this instance vacuums and analyzes it', everyMs: every });
    this.timer = setInterval(() => void this.runOnce(), every);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Vacuums and analyzes the database unless another instance is at it; true when this one did. One at a time. */
  runOnce(): Promise<boolean> {
    this.running ??= this.vacuum().finally(() => (this.running = null));
    return this.running;
  }

  private async vacuum(): Promise<boolean> {
    const started = Date.now();
    const runner = this.ds.createQueryRunner();
    try {
      await runner.connect();
      const [{ locked }]: Array<{ locked: boolean }> = await runner.query('SELECT pg_try_advisory_lock($1) AS locked', [VACUUM_LOCK]);
      if (!locked) return false;
      try {
        await withoutStatementTimeout(runner, () => runner.query('VACUUM (ANALYZE)'));
      } finally {
        await runner.query('SELECT pg_advisory_unlock($1)', [VACUUM_LOCK]);
      }
      this.logger.log({ msg: 'database vacuumed and analyzed', ms: Date.now() - started });
      return true;
    } catch (err) {
      this.logger.warn({ msg: 'database vacuum failed', err: loggableError(err) });
      return false;
    } finally {
      await runner.release();
    }
  }
}
