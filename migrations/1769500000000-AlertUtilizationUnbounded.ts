import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A budget alert's `utilization` (spend / cap when it fired) was numeric(8,4): a cap lowered to a
 * sliver of what was spent (0.01 CNY after 200 spent: 20,000) overflowed it, so the alert was not
 * recorded and every later check of that month failed the same way. The ratio has no upper bound.
 */
export class AlertUtilizationUnbounded1769500000000 implements MigrationInterface {
  name = 'AlertUtilizationUnbounded1769500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_alerts ALTER COLUMN utilization TYPE numeric(30,4)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_alerts ALTER COLUMN utilization TYPE numeric(8,4) USING least(utilization, 9999.9999)`);
  }
}
