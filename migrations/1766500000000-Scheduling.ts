import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Off-peak scheduling (issue 14): work that may wait for a deadline. An assignment may carry
 * `due_by` (its essays are graded by then), a deep-review order too ("by tomorrow morning"); a job
 * copies its deadline and records the plan it runs on (now, batch, off_peak), and each ledger row
 * of scheduled work says what it cost less than it would have in real time when it was submitted.
 */
export class Scheduling1766500000000 implements MigrationInterface {
  name = 'Scheduling1766500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE assignments ADD COLUMN due_by timestamptz`);
    await q.query(`ALTER TABLE orders ADD COLUMN due_by timestamptz`);
    await q.query(`ALTER TABLE jobs ADD COLUMN due_by timestamptz, ADD COLUMN plan jsonb`);
    // Gradings are claimed by lane: with a deadline (they may wait on a batch for hours) or not.
    await q.query(`CREATE INDEX jobs_queued_lane_idx ON jobs (kind, (due_by IS NOT NULL), tenant_id, run_after) WHERE status = 'queued'`);
    await q.query(`ALTER TABLE llm_calls ADD COLUMN schedule_saved_nanos bigint`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_calls DROP COLUMN schedule_saved_nanos`);
    await q.query(`DROP INDEX jobs_queued_lane_idx`);
    await q.query(`ALTER TABLE jobs DROP COLUMN due_by, DROP COLUMN plan`);
    await q.query(`ALTER TABLE orders DROP COLUMN due_by`);
    await q.query(`ALTER TABLE assignments DROP COLUMN due_by`);
  }
}
