import { MigrationInterface, QueryRunner } from 'typeorm';

/** Ledger rows name the time-of-day price window a call was priced in (null: the model's base or batch price). */
export class PriceWindows1764800000000 implements MigrationInterface {
  name = 'PriceWindows1764800000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_calls ADD COLUMN price_window text`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_calls DROP COLUMN price_window`);
  }
}
