import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A lease row is updated by every settlement of its tenant's calls, and each update also renews
 * its `expires_at`. With that column indexed, no update could be a HOT update (in place, on the
 * same page, no new index entries): with 10,000 tenants, 18,062 lease updates in a 10 s run and
 * not one HOT, each leaving a dead row and new entries in both indexes until the next vacuum. The
 * sweeper, the only reader by `expires_at`, runs every 30 s per instance over a table of one row
 * per active tenant and instance: it reads the table instead. Half of each page is left free, so
 * the next version of a row finds room beside it.
 */
export class LeaseUpdatesInPlace1767200000000 implements MigrationInterface {
  name = 'LeaseUpdatesInPlace1767200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX budget_leases_expiry_idx`);
    await q.query(`ALTER TABLE budget_leases SET (fillfactor = 50)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_leases RESET (fillfactor)`);
    await q.query(`CREATE INDEX budget_leases_expiry_idx ON budget_leases (expires_at)`);
  }
}
