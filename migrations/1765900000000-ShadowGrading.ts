import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Shadow evaluation (SPEC §9): a share of a tenant's standard gradings is graded again on the deep
 * tier in the background; the deep grade is kept beside the essay (never shown as its grade) and
 * compared with the standard one. An admin may set the agreement under which an alert fires.
 */
export class ShadowGrading1765900000000 implements MigrationInterface {
  name = 'ShadowGrading1765900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants ADD COLUMN shadow_rate numeric(4,3) NOT NULL DEFAULT 0 CHECK (shadow_rate >= 0 AND shadow_rate <= 0.2)`);
    await q.query(`ALTER TABLE tenants ADD COLUMN shadow_alert_qwk numeric(4,3) CHECK (shadow_alert_qwk >= -1 AND shadow_alert_qwk <= 1)`);
    await q.query(`ALTER TABLE essays ADD COLUMN shadow_grade jsonb`);
    await q.query(`CREATE INDEX essays_shadow_idx ON essays (tenant_id, created_at) WHERE shadow_grade IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX essays_shadow_idx`);
    await q.query(`ALTER TABLE essays DROP COLUMN shadow_grade`);
    await q.query(`ALTER TABLE tenants DROP COLUMN shadow_alert_qwk, DROP COLUMN shadow_rate`);
  }
}
