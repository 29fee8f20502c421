import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A school's gradings with a deadline are claimed earliest deadline first (JobQueue.claim): a small
 * set due this afternoon goes before a large one due next week that became ready earlier. The
 * index holds the lane's queued jobs of each tenant in deadline order, with `run_after` in it, so a
 * claim skips the jobs still waiting for their window on the index alone (no row is read for them).
 */
export class JobsDeadlineOrder1768600000000 implements MigrationInterface {
  name = 'JobsDeadlineOrder1768600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX jobs_queued_due_idx ON jobs (tenant_id, kind, due_by, run_after) WHERE status = 'queued' AND due_by IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX jobs_queued_due_idx`);
  }
}
