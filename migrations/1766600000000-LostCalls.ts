import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Calls lost in flight: a reservation records the call it holds budget for (`call`: the ledger
 * row's identifying columns). When its process dies before settling it, the sweeper no longer
 * hands the worst case back to the budget: the provider may have answered (and billed) a process
 * that did not live to record it. It charges the reservation — the most the call could have cost —
 * and writes the ledger row (outcome `lost_in_flight`, its id the reservation's), so spend never
 * falls below what providers bill and the ledger still sums to the spend. A settlement that arrives
 * after that (a process that stalled, not died) charges nothing more.
 */
export class LostCalls1766600000000 implements MigrationInterface {
  name = 'LostCalls1766600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_reservations ADD COLUMN call jsonb`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_reservations DROP COLUMN call`);
  }
}
