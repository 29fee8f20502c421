import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Two quality signals made durable. `quality_alerts`: a shadow-agreement alert fires once per
 * tenant, month and rubric, however many instances notice it at once (its key decides). And the
 * exact cache keeps whether its answer came from a repair, so a cache hit of a repaired grading is
 * as low-confidence as the grading was (escalation).
 */
export class QualitySignals1766100000000 implements MigrationInterface {
  name = 'QualitySignals1766100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE quality_alerts (
        tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        period      text NOT NULL,
        rubric      text NOT NULL,
        qwk         numeric(6,4) NOT NULL,
        n           integer NOT NULL,
        threshold   numeric(4,3) NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, period, rubric)
      )`);
    await q.query(`ALTER TABLE llm_cache ADD COLUMN repaired boolean NOT NULL DEFAULT false`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_cache DROP COLUMN repaired`);
    await q.query(`DROP TABLE quality_alerts`);
  }
}
