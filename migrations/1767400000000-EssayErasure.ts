import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A student's essay can be erased (DELETE /v1/essays/:id). The essay's row stays as a tombstone,
 * because its ledger rows, orders and roll-ups are money and stay exact; its personal data goes:
 * the text, title, student reference and grades are cleared and `erased_at` is set.
 *
 * What was derived from the text must go with it. So an answer kept in the answer cache, and an
 * answer a call guard keeps for a replay, now name the essay whose grading produced them. Erasure
 * finds them by the essay and deletes them. Chat calls have no essay: their rows carry NULL, and the
 * partial indexes leave them out.
 */
export class EssayErasure1767400000000 implements MigrationInterface {
  name = 'EssayErasure1767400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE essays ADD COLUMN erased_at timestamptz, ADD COLUMN erased_by uuid`);
    await q.query(`ALTER TABLE llm_cache ADD COLUMN essay_id uuid`);
    await q.query(`CREATE INDEX llm_cache_essay ON llm_cache (tenant_id, essay_id) WHERE essay_id IS NOT NULL`);
    await q.query(`ALTER TABLE call_guards ADD COLUMN essay_id uuid`);
    await q.query(`CREATE INDEX call_guards_essay ON call_guards (tenant_id, essay_id) WHERE essay_id IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX call_guards_essay`);
    await q.query(`ALTER TABLE call_guards DROP COLUMN essay_id`);
    await q.query(`DROP INDEX llm_cache_essay`);
    await q.query(`ALTER TABLE llm_cache DROP COLUMN essay_id`);
    await q.query(`ALTER TABLE essays DROP COLUMN erased_by, DROP COLUMN erased_at`);
  }
}
