import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Budget leases are found by their key only. An index on `instance_id` alone let the planner read
 * all of an instance's leases to settle a few of them: with 10,000 tenants' leases on one instance
 * and statistics taken while the table was small (a new instance warms up faster than autovacuum
 * analyses), every group commit read the 10,000 rows, 2–4 ms a statement, and the miss path with
 * 10,000 tenants fell 10–20% behind the one with one tenant. Settlements, renewals and returns name
 * each lease by (tenant_id, period, instance_id), the primary key; the sweeper finds expired leases
 * by `expires_at`. Nothing needs the instance index, so it goes.
 */
export class LeaseKeys1766700000000 implements MigrationInterface {
  name = 'LeaseKeys1766700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX budget_leases_instance_idx`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX budget_leases_instance_idx ON budget_leases (instance_id)`);
  }
}
