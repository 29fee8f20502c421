import { MigrationInterface, QueryRunner } from 'typeorm';

/** Ledger rows say whether the call went through a provider's Batch API (priced at its batch rate). */
export class BatchCalls1764700000000 implements MigrationInterface {
  name = 'BatchCalls1764700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_calls ADD COLUMN batch boolean NOT NULL DEFAULT false`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_calls DROP COLUMN batch`);
  }
}
