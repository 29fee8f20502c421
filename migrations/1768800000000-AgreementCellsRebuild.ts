import { MigrationInterface, QueryRunner } from 'typeorm';
import { backfillAgreementCells } from './1766000000000-AgreementCells';

/**
 * Agreement cells counted again from the essays, by the rules that came with it: the grader's own
 * scores (a calibrated grade's raw ones, where the cells had the calibrated total), and no teacher
 * label of a reused grade (it may be a teacher's own grade). Left as they were, a later override of
 * such an essay would take away a pair that was never added, and keep the old one.
 */
export class AgreementCellsRebuild1768800000000 implements MigrationInterface {
  name = 'AgreementCellsRebuild1768800000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM agreement_cells`);
    await backfillAgreementCells(q);
  }

  public async down(): Promise<void> {
    // The cells by the newer rules are kept: the older ones are not worth counting back.
  }
}
