import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What an instance's lease had promised to calls still in flight, as the instance last wrote it (a
 * settlement on the lease, a renewal, a return): a call admitted on a lease has no reservation row,
 * so when the instance dies with calls in flight, this is all the sweeper knows of them. It books
 * it as a `lost_in_flight` incident that the platform absorbs (no provider or model: the lease's
 * calls, not one call). Never more than the lease holds.
 */
export class LeasedInFlight1768400000000 implements MigrationInterface {
  name = 'LeasedInFlight1768400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_leases ADD COLUMN in_flight_nanos bigint NOT NULL DEFAULT 0 CHECK (in_flight_nanos >= 0)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE budget_leases DROP COLUMN in_flight_nanos`);
  }
}
