import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Budget incidents: a call billed beyond the bound it was admitted with (a provider reporting more
 * tokens than a prompt's byte length allows, or more output than max_tokens), or beyond what the
 * cap could still take. The tenant is charged within its cap; the rest is recorded here. An
 * incident of the first kind pauses the tenant's admission until an admin acknowledges it.
 */
export class BudgetIncidents1765500000000 implements MigrationInterface {
  name = 'BudgetIncidents1765500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants ADD COLUMN admission_paused boolean NOT NULL DEFAULT false`);
    await q.query(`
      CREATE TABLE budget_incidents (
        tenant_id               uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        id                      uuid NOT NULL,
        period                  text NOT NULL,
        kind                    text NOT NULL CHECK (kind IN ('tokens_over_bound', 'over_reservation')),
        provider                text,
        model                   text,
        call_group              uuid,
        estimated_input_tokens  integer,
        reported_input_tokens   integer,
        max_output_tokens       integer,
        reported_output_tokens  integer,
        reserved_nanos          bigint NOT NULL CHECK (reserved_nanos >= 0),
        cost_nanos              bigint NOT NULL CHECK (cost_nanos >= 0),
        charged_nanos           bigint NOT NULL CHECK (charged_nanos >= 0),
        excess_nanos            bigint NOT NULL CHECK (excess_nanos >= 0),
        pauses_admission        boolean NOT NULL,
        created_at              timestamptz NOT NULL DEFAULT now(),
        acknowledged_at         timestamptz,
        acknowledged_by         uuid,
        PRIMARY KEY (tenant_id, id)
      )`);
    await q.query(`CREATE INDEX budget_incidents_open ON budget_incidents (tenant_id, created_at) WHERE acknowledged_at IS NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE budget_incidents`);
    await q.query(`ALTER TABLE tenants DROP COLUMN admission_paused`);
  }
}
