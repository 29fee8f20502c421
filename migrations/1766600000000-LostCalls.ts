import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Calls lost in flight: a reservation records the call it holds budget for (`call`: the ledger
 * row's identifying columns). When its process dies before settling it, the provider may have
 * answered (and billed) a process that did not live to record it. The sweeper then hands the
 * reservation back to the tenant as before — the tenant is not charged for the platform's crash,
 * and the job's retry is its one charge — and records the call: a ledger row that costs the tenant
 * nothing (outcome `lost_in_flight`, its id the reservation's), so every request a provider received
 * has its row, and a budget incident of kind `lost_in_flight` whose excess (the most the call could
 * have cost) the platform absorbs. It does not pause admission.
 */
export class LostCalls1766600000000 implements MigrationInterface {
  name = 'LostCalls1766600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_reservations ADD COLUMN call jsonb`);
    await q.query(`ALTER TABLE budget_incidents DROP CONSTRAINT budget_incidents_kind_check`);
    await q.query(`ALTER TABLE budget_incidents ADD CONSTRAINT budget_incidents_kind_check CHECK (kind IN ('tokens_over_bound', 'over_reservation', 'lost_in_flight'))`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM budget_incidents WHERE kind = 'lost_in_flight'`);
    await q.query(`ALTER TABLE budget_incidents DROP CONSTRAINT budget_incidents_kind_check`);
    await q.query(`ALTER TABLE budget_incidents ADD CONSTRAINT budget_incidents_kind_check CHECK (kind IN ('tokens_over_bound', 'over_reservation'))`);
    await q.query(`ALTER TABLE budget_reservations DROP COLUMN call`);
  }
}
