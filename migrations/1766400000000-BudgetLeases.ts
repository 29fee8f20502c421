import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Budget leases (SPEC §5): a slice of a tenant's remaining budget held by one service instance,
 * counted in the period's reserved_nanos like a reservation, so spent + reserved (reservations and
 * leases) stays within the cap across any number of instances. The instance admits calls against
 * its slice in memory; settlements move money from the lease into the spend. A lease lives until
 * `expires_at` unless its instance renews it; the sweeper returns an expired one (a dead instance's).
 */
export class BudgetLeases1766400000000 implements MigrationInterface {
  name = 'BudgetLeases1766400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE budget_leases (
        tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        period        text NOT NULL,
        instance_id   text NOT NULL,
        amount_nanos  bigint NOT NULL CHECK (amount_nanos >= 0),
        expires_at    timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, period, instance_id)
      )`);
    await q.query(`CREATE INDEX budget_leases_expiry_idx ON budget_leases (expires_at)`);
    await q.query(`CREATE INDEX budget_leases_instance_idx ON budget_leases (instance_id)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    // What leases hold goes back to the periods before the table goes.
    await q.query(`
      UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - l.amount
        FROM (SELECT tenant_id, period, sum(amount_nanos) AS amount FROM budget_leases GROUP BY 1, 2) l
       WHERE p.tenant_id = l.tenant_id AND p.period = l.period`);
    await q.query(`DROP TABLE budget_leases`);
  }
}
