import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A refused call is its own alert, `budget.call_refused`, once per tenant and period, instead of
 * firing every threshold not yet fired: a class set's reservations can be refused well below the
 * cap, and an alert saying "100% reached" at 40% spent was wrong and kept the real crossing silent.
 * Its record sits beside the thresholds' in `budget_alerts`, told apart by `kind`; its `threshold`
 * is 1 (the cap the call did not fit under).
 */
export class BudgetCallRefused1767800000000 implements MigrationInterface {
  name = 'BudgetCallRefused1767800000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_alerts ADD COLUMN kind text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'call_refused'))`);
    await q.query(`ALTER TABLE budget_alerts DROP CONSTRAINT budget_alerts_pkey`);
    await q.query(`ALTER TABLE budget_alerts ADD PRIMARY KEY (tenant_id, period, kind, threshold)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM budget_alerts WHERE kind = 'call_refused'`);
    await q.query(`ALTER TABLE budget_alerts DROP CONSTRAINT budget_alerts_pkey`);
    await q.query(`ALTER TABLE budget_alerts ADD PRIMARY KEY (tenant_id, period, threshold)`);
    await q.query(`ALTER TABLE budget_alerts DROP COLUMN kind`);
  }
}
