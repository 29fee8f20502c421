import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Each essay's MinHash signature (128 × 32 bits) and shingle count, written when the essay is
 * indexed for near-duplicates, so candidates are compared by what is stored instead of by loading
 * and shingling their texts again. Essays indexed before this migration have no row; the index
 * computes theirs from the text the first time one is a candidate, and stores it (SQL cannot
 * compute a signature, and a backfill here would hold every instance's start for the whole table).
 */
export class EssaySignatures1765400000000 implements MigrationInterface {
  name = 'EssaySignatures1765400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE essay_signatures (
        tenant_id  uuid NOT NULL,
        essay_id   uuid NOT NULL,
        minhash    bytea NOT NULL CHECK (length(minhash) = 512),
        shingles   integer NOT NULL CHECK (shingles >= 0),
        PRIMARY KEY (tenant_id, essay_id),
        -- with tenant_id, so a signature cannot point at another tenant's essay (see 1765300000000)
        FOREIGN KEY (tenant_id, essay_id) REFERENCES essays (tenant_id, id) ON DELETE CASCADE
      )`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE essay_signatures`);
  }
}
