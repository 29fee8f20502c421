import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `Idempotency-Key` on essay submissions: the first answer to a key is kept for 24 hours, and a
 * retry with the same key and the same request gets it again instead of a second essay.
 */
export class IdempotencyKeys1767700000000 implements MigrationInterface {
  name = 'IdempotencyKeys1767700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE idempotency_keys (
        tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key           text NOT NULL,
        request_hash  text NOT NULL,
        status_code   int,
        response      jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, key)
      )`);
    await q.query(`CREATE INDEX idempotency_keys_age_idx ON idempotency_keys (tenant_id, created_at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE idempotency_keys`);
  }
}
