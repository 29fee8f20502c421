import { MigrationInterface, QueryRunner } from 'typeorm';

/** Tenants and their API keys. */
export class Foundation1764300000000 implements MigrationInterface {
  name = 'Foundation1764300000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE tenants (
        id                 uuid PRIMARY KEY,
        name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        timezone           text NOT NULL,
        monthly_cap_nanos  bigint NOT NULL CHECK (monthly_cap_nanos >= 0),
        created_at         timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE api_keys (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        role          text NOT NULL CHECK (role IN ('admin', 'teacher')),
        prefix        text NOT NULL UNIQUE,
        key_hash      bytea NOT NULL CHECK (length(key_hash) = 32),
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_used_at  timestamptz,
        revoked_at    timestamptz
      )`);
    await q.query(`CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE api_keys`);
    await q.query(`DROP TABLE tenants`);
  }
}
