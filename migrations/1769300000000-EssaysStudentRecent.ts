import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A student's newest essays, read in a step (NearDuplicateIndex.ownRecent): a resubmission is
 * compared with them whatever the LSH buckets' samples hold (a model essay copied by hundreds fills
 * every bucket's sample with other students' copies). It replaces the (tenant_id, student_ref)
 * index, a prefix of it.
 */
export class EssaysStudentRecent1769300000000 implements MigrationInterface {
  name = 'EssaysStudentRecent1769300000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX essays_tenant_student_recent_idx ON essays (tenant_id, student_ref, created_at DESC) WHERE student_ref IS NOT NULL`);
    await q.query(`DROP INDEX essays_tenant_student_idx`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX essays_tenant_student_idx ON essays (tenant_id, student_ref) WHERE student_ref IS NOT NULL`);
    await q.query(`DROP INDEX essays_tenant_student_recent_idx`);
  }
}
