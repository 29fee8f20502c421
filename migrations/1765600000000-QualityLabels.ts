import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every teacher override is a label (SPEC §9): the essays whose current grade is the teacher's and
 * whose grader's original is kept beside it. This partial index holds only those, so agreement
 * over an assignment or a tenant reads the labels and nothing else.
 */
export class QualityLabels1765600000000 implements MigrationInterface {
  name = 'QualityLabels1765600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX essays_labels_idx ON essays (tenant_id, assignment_id, created_at)
        WHERE model_grade IS NOT NULL AND grade->>'source' = 'teacher'`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX essays_labels_idx`);
  }
}
