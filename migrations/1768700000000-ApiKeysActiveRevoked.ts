import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A tenant's revoked keys grow without bound (only active keys count against `apiKeys`): the active
 * ones are found, listed and counted through an index of their own, and the latest revoked ones
 * listed through another, however many keys the tenant revoked before.
 */
export class ApiKeysActiveRevoked1768700000000 implements MigrationInterface {
  name = 'ApiKeysActiveRevoked1768700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX api_keys_active_idx ON api_keys (tenant_id, created_at, id) WHERE revoked_at IS NULL`);
    await q.query(`CREATE INDEX api_keys_revoked_idx ON api_keys (tenant_id, revoked_at DESC, id) WHERE revoked_at IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX api_keys_revoked_idx`);
    await q.query(`DROP INDEX api_keys_active_idx`);
  }
}
