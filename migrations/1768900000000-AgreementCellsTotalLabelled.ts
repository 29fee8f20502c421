import { MigrationInterface, QueryRunner } from 'typeorm';
import { backfillAgreementCells } from './1766000000000-AgreementCells';

/**
 * Agreement cells counted again from the essays, by the rule that came with it: a teacher's total
 * is a pair only when the teacher set it (`labelledTotal`). A comment-only override, or one that
 * scored some dimensions of several, was counted as the teacher agreeing with the model's total
 * (raising `exact` on raw grades, and pairing a raw total with a calibrated one on calibrated ones).
 */
export class AgreementCellsTotalLabelled1768900000000 implements MigrationInterface {
  name = 'AgreementCellsTotalLabelled1768900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM agreement_cells`);
    await backfillAgreementCells(q);
  }

  public async down(): Promise<void> {
    // The cells by the newer rule are kept: the older ones are not worth counting back.
  }
}
