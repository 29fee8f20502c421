import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A running job whose paid call waits in a provider batch (minutes to a day) is marked: it holds no
 * provider slot and needs no worker's time, so it does not count against its school's gradings at
 * once (`essaysGrading`), and a school's class set in a batch cannot hold back its own urgent work,
 * nor fill an instance's worker pool for every other school. Cleared when the job is claimed again.
 */
export class JobsInBatch1768500000000 implements MigrationInterface {
  name = 'JobsInBatch1768500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE jobs ADD COLUMN in_batch boolean NOT NULL DEFAULT false`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE jobs DROP COLUMN in_batch`);
  }
}
