import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * While a worker pool holds as many calls waiting in provider batches as it takes, it claims only
 * work due too soon for a batch (JobQueue.claim, `dueWithinMs`): whether any queued work of the kind
 * is due that soon is read first, on this index, in a step however long the queue of work due later.
 */
export class JobsQueuedKindDue1769100000000 implements MigrationInterface {
  name = 'JobsQueuedKindDue1769100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX jobs_queued_kind_due_idx ON jobs (kind, due_by) WHERE status = 'queued' AND due_by IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX jobs_queued_kind_due_idx`);
  }
}
