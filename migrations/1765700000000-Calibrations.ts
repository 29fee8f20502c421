import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Calibrations (SPEC §9): per assignment, versioned, fitted from the teachers' overrides. At most
 * one is active; turning one off keeps it (its grades still name their version).
 */
export class Calibrations1765700000000 implements MigrationInterface {
  name = 'Calibrations1765700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE calibrations (
        tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        assignment_id  uuid NOT NULL,
        version        integer NOT NULL,
        method         text NOT NULL,
        model          jsonb NOT NULL,
        essays         integer NOT NULL,
        before         jsonb NOT NULL,
        after          jsonb NOT NULL,
        active         boolean NOT NULL,
        created_by     uuid,
        created_at     timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, assignment_id, version),
        CONSTRAINT calibrations_tenant_assignment_fkey FOREIGN KEY (tenant_id, assignment_id) REFERENCES assignments (tenant_id, id) ON DELETE CASCADE
      )`);
    await q.query(`CREATE UNIQUE INDEX calibrations_active_idx ON calibrations (tenant_id, assignment_id) WHERE active`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE calibrations`);
  }
}
