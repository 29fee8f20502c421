import { MigrationInterface, QueryRunner } from 'typeorm';
import { ledgerDailyTrigger } from './1766800000000-LedgerDailySchedule';

/**
 * The roll-up's trigger writes its rows in key order. Two settlement statements that add to the
 * same roll-up rows (two instances settling the same tenants' calls) then take those rows' locks in
 * one order and wait for each other instead of deadlocking. Paid calls were already serialized by
 * their budget period's lock, taken in key order; cache hits no longer take it (a hit changes no
 * budget), so for them the roll-up's own order is what keeps two statements out of a deadlock.
 */
export class LedgerDailyOrder1767000000000 implements MigrationInterface {
  name = 'LedgerDailyOrder1767000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(ledgerDailyTrigger(true, true));
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(ledgerDailyTrigger(true, false));
  }
}
