import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A school may keep essays for a limited time: `essay_retention_days` (null: kept until erased).
 * Essays older than that are erased as DELETE /v1/essays/:id erases one (EssayRetention). The
 * partial index finds each tenant's oldest essays not erased yet without passing over tombstones;
 * the other finds the essays erased lately, whose rows a grading that outlived its lease may have
 * written after the erasure (EssayRetention removes them).
 */
export class EssayRetention1767500000000 implements MigrationInterface {
  name = 'EssayRetention1767500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants ADD COLUMN essay_retention_days int CHECK (essay_retention_days BETWEEN 1 AND 3650)`);
    await q.query(`CREATE INDEX essays_tenant_unerased_idx ON essays (tenant_id, created_at, id) WHERE erased_at IS NULL`);
    await q.query(`CREATE INDEX essays_erased_idx ON essays (erased_at) WHERE erased_at IS NOT NULL`);
    // An essay's bands by the essay (its erasure deletes them; the key leads with the band).
    await q.query(`CREATE INDEX essay_lsh_essay_idx ON essay_lsh (tenant_id, essay_id)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX essay_lsh_essay_idx`);
    await q.query(`DROP INDEX essays_erased_idx`);
    await q.query(`DROP INDEX essays_tenant_unerased_idx`);
    await q.query(`ALTER TABLE tenants DROP COLUMN essay_retention_days`);
  }
}
