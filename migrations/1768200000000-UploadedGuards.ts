import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A guarded call about to be sent in a provider batch names the batch's upload (its input file) on
 * its guard before the batch is created, and the batch's id once it is. A sender killed between the
 * provider creating the batch and naming it leaves the file id: the job's retry finds the batch
 * created from that file in the provider's list of batches and waits for it, instead of paying for
 * the call again; no batch made from it means the call was never sent.
 */
export class UploadedGuards1768200000000 implements MigrationInterface {
  name = 'UploadedGuards1768200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE call_guards
        ADD COLUMN batch_file_id text,
        DROP CONSTRAINT call_guards_batch_whole,
        ADD CONSTRAINT call_guards_batch_whole CHECK (
          (batch_id IS NULL AND batch_file_id IS NULL AND batch_provider IS NULL AND batch_line IS NULL AND reservation_id IS NULL)
          OR ((batch_id IS NOT NULL OR batch_file_id IS NOT NULL) AND batch_provider IS NOT NULL AND batch_line IS NOT NULL AND reservation_id IS NOT NULL))`);
    // Which guards still wait for a batch by its upload: its files are deleted only when none does.
    await q.query(`CREATE INDEX call_guards_batch_file ON call_guards (batch_file_id) WHERE batch_file_id IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX call_guards_batch_file`);
    // A guard that names only an upload goes back to naming nothing (its call waits out the guard, as before).
    await q.query(
      `UPDATE call_guards SET batch_provider = NULL, batch_line = NULL, reservation_id = NULL, batch_file_id = NULL WHERE batch_id IS NULL AND batch_file_id IS NOT NULL`,
    );
    await q.query(`
      ALTER TABLE call_guards
        DROP CONSTRAINT call_guards_batch_whole,
        DROP COLUMN batch_file_id,
        ADD CONSTRAINT call_guards_batch_whole CHECK (
          (batch_id IS NULL AND batch_provider IS NULL AND batch_line IS NULL AND reservation_id IS NULL)
          OR (batch_id IS NOT NULL AND batch_provider IS NOT NULL AND batch_line IS NOT NULL AND reservation_id IS NOT NULL))`);
  }
}
