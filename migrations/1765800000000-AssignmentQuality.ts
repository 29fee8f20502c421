import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What an assignment says about its grading (SPEC §9, §6): when a standard grade is not trusted
 * (`escalate`: off, flag it for review, or grade it again on the deep tier) around the teacher's
 * pass mark, and the length the task asks for (otherwise the rubric's).
 */
export class AssignmentQuality1765800000000 implements MigrationInterface {
  name = 'AssignmentQuality1765800000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE assignments ADD COLUMN escalate text NOT NULL DEFAULT 'off' CHECK (escalate IN ('off', 'flag', 'deep'))`);
    await q.query(`ALTER TABLE assignments ADD COLUMN pass_mark numeric(7,2)`);
    await q.query(`ALTER TABLE assignments ADD COLUMN expected_length_min integer`);
    await q.query(`ALTER TABLE assignments ADD COLUMN expected_length_max integer`);
    await q.query(
      `ALTER TABLE assignments ADD CONSTRAINT assignments_expected_length_check
         CHECK ((expected_length_min IS NULL) = (expected_length_max IS NULL) AND (expected_length_min IS NULL OR (expected_length_min >= 1 AND expected_length_min <= expected_length_max)))`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE assignments DROP CONSTRAINT assignments_expected_length_check`);
    await q.query(`ALTER TABLE assignments DROP COLUMN expected_length_max, DROP COLUMN expected_length_min, DROP COLUMN pass_mark, DROP COLUMN escalate`);
  }
}
