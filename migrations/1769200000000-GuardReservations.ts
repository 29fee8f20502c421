import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every guard in flight names the reservation its call is paid under, a real-time call's too (before,
 * only a batched call's). A job's retry that takes over the guard of a call whose process died
 * returns that reservation at once (as lost in flight), instead of minutes later at its expiry: a
 * retry near the cap was refused for it.
 */
export class GuardReservations1769200000000 implements MigrationInterface {
  name = 'GuardReservations1769200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE call_guards
        DROP CONSTRAINT call_guards_batch_whole,
        ADD CONSTRAINT call_guards_batch_whole CHECK (
          (batch_id IS NULL AND batch_file_id IS NULL AND batch_provider IS NULL AND batch_line IS NULL)
          OR ((batch_id IS NOT NULL OR batch_file_id IS NOT NULL) AND batch_provider IS NOT NULL AND batch_line IS NOT NULL AND reservation_id IS NOT NULL))`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`UPDATE call_guards SET reservation_id = NULL WHERE batch_provider IS NULL`);
    await q.query(`
      ALTER TABLE call_guards
        DROP CONSTRAINT call_guards_batch_whole,
        ADD CONSTRAINT call_guards_batch_whole CHECK (
          (batch_id IS NULL AND batch_file_id IS NULL AND batch_provider IS NULL AND batch_line IS NULL AND reservation_id IS NULL)
          OR ((batch_id IS NOT NULL OR batch_file_id IS NOT NULL) AND batch_provider IS NOT NULL AND batch_line IS NOT NULL AND reservation_id IS NOT NULL))`);
  }
}
