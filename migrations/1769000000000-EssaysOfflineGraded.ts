import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The month report counts a school's essays graded by the offline grader in the month
 * (ReportsRepository.offlineGradings): without an index of its own that count read every essay of
 * every school, each time a report or its CSV was asked for (262 ms at 300,000 essays, growing with
 * the platform's whole history). Offline grades are few: a partial index of them by school and time.
 */
export class EssaysOfflineGraded1769000000000 implements MigrationInterface {
  name = 'EssaysOfflineGraded1769000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX essays_offline_graded_idx ON essays (tenant_id, graded_at) WHERE 'offline_estimate' = ANY(flags)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX essays_offline_graded_idx`);
  }
}
