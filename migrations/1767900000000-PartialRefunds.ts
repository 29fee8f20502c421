import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Partial refunds: a payment provider can give back part of what was paid. Such a refund is kept on
 * the order (`partially_refunded_nanos`, the sum so far, always less than the price) and the order
 * stays paid or delivered; a refund of what is left refunds the order. Before, a `payment.refunded`
 * whose amount was not the price was answered 409 and not recorded, so the provider retried it
 * for ever and the money that went back left no trace.
 */
export class PartialRefunds1767900000000 implements MigrationInterface {
  name = 'PartialRefunds1767900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE orders ADD COLUMN partially_refunded_nanos bigint NOT NULL DEFAULT 0
         CONSTRAINT orders_partial_refunds_check CHECK (partially_refunded_nanos = 0 OR partially_refunded_nanos BETWEEN 1 AND price_nanos - 1)`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE orders DROP COLUMN partially_refunded_nanos`);
  }
}
