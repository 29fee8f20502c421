import { MigrationInterface, QueryRunner } from 'typeorm';

/** The premium tier is reached through a deep-review order, unless the tenant admin turns on directDeep. */
export class DirectDeep1765200000000 implements MigrationInterface {
  name = 'DirectDeep1765200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants ADD COLUMN direct_deep boolean NOT NULL DEFAULT false`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tenants DROP COLUMN direct_deep`);
  }
}
