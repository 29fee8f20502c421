import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An order closed before it was paid (its essay erased) is `cancelled`, not `refunded`: nothing was
 * paid, so nothing is refunded, and the month report's refunds count only money that came back.
 * Such orders already closed as `refunded` (no `paid_at`) become `cancelled`.
 * A payment event that could not be applied (the order was no longer awaiting payment) is kept
 * with the outcome `unapplied`: the money came in for nothing and must go back to the payer.
 */
export class OrderCancelled1767600000000 implements MigrationInterface {
  name = 'OrderCancelled1767600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE orders DROP CONSTRAINT orders_status_check`);
    await q.query(`ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('awaiting_payment', 'paid', 'delivered', 'refunded', 'cancelled'))`);
    await q.query(`ALTER TABLE orders ADD COLUMN cancelled_at timestamptz`);
    // An order's payment events, for what came for it and could not be applied.
    await q.query(`CREATE INDEX payment_events_order_idx ON payment_events (tenant_id, order_id)`);
    // (Not those a provider's refund event closed before its payment event came: money did move.)
    await q.query(
      `UPDATE orders SET status = 'cancelled', cancelled_at = refunded_at, refunded_at = NULL
        WHERE status = 'refunded' AND paid_at IS NULL AND refund_reason IS DISTINCT FROM 'refunded by the payment provider'`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`UPDATE orders SET status = 'refunded', refunded_at = cancelled_at WHERE status = 'cancelled'`);
    await q.query(`DROP INDEX payment_events_order_idx`);
    await q.query(`ALTER TABLE orders DROP COLUMN cancelled_at`);
    await q.query(`ALTER TABLE orders DROP CONSTRAINT orders_status_check`);
    await q.query(`ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('awaiting_payment', 'paid', 'delivered', 'refunded'))`);
  }
}
