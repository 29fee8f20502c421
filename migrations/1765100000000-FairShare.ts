import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Fair use: per-tenant limits set by the operator (over the env defaults), and indexes for the
 * round-robin claim: tenants with queued jobs are found by a skip scan, and each tenant's running
 * jobs are counted against its cap.
 */
export class FairShare1765100000000 implements MigrationInterface {
  name = 'FairShare1765100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(limits) = 'object')`);
    await q.query(`CREATE INDEX jobs_queued_tenant_idx ON jobs (kind, tenant_id, run_after) WHERE status = 'queued'`);
    await q.query(`CREATE INDEX jobs_running_tenant_idx ON jobs (tenant_id, kind) WHERE status = 'running'`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX jobs_running_tenant_idx`);
    await q.query(`DROP INDEX jobs_queued_tenant_idx`);
    await q.query(`ALTER TABLE tenants DROP COLUMN limits`);
  }
}
