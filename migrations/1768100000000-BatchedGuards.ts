import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A guarded call sent in a provider batch names that batch on its guard: the provider, the batch's
 * id, its line's custom id and the reservation that holds the call's budget. When the instance that
 * sent it stops (or dies) before the batch ends, the job's retry takes the guard and the
 * reservation over and waits for the same batch, instead of paying for the call again.
 */
export class BatchedGuards1768100000000 implements MigrationInterface {
  name = 'BatchedGuards1768100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE call_guards
        ADD COLUMN batch_provider text,
        ADD COLUMN batch_id text,
        ADD COLUMN batch_line text,
        ADD COLUMN reservation_id uuid,
        ADD CONSTRAINT call_guards_batch_whole CHECK (
          (batch_id IS NULL AND batch_provider IS NULL AND batch_line IS NULL AND reservation_id IS NULL)
          OR (batch_id IS NOT NULL AND batch_provider IS NOT NULL AND batch_line IS NOT NULL AND reservation_id IS NOT NULL))`);
    // Which guards still wait for a batch: its files are deleted at the provider only when none does.
    await q.query(`CREATE INDEX call_guards_batch ON call_guards (batch_id) WHERE batch_id IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX call_guards_batch`);
    await q.query(`ALTER TABLE call_guards DROP CONSTRAINT call_guards_batch_whole, DROP COLUMN batch_provider, DROP COLUMN batch_id, DROP COLUMN batch_line, DROP COLUMN reservation_id`);
  }
}
