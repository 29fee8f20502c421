import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Commerce: deep-review orders and the payment events that move them (idempotent by event id),
 * budget alerts (once per threshold per period) and outgoing webhooks with retries.
 */
export class Commerce1764600000000 implements MigrationInterface {
  name = 'Commerce1764600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE tenants
        ADD COLUMN deep_review_price_nanos bigint CHECK (deep_review_price_nanos >= 0),
        ADD COLUMN payment_mode text CHECK (payment_mode IN ('webhook', 'invoice')),
        ADD COLUMN payment_webhook_secret text,
        ADD COLUMN alert_webhook_url text,
        ADD COLUMN alert_webhook_secret text`);

    await q.query(`ALTER TABLE essays ADD COLUMN deep_grade jsonb`);

    await q.query(`
      CREATE TABLE orders (
        id             uuid PRIMARY KEY,
        tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        essay_id       uuid NOT NULL REFERENCES essays(id) ON DELETE CASCADE,
        price_nanos    bigint NOT NULL CHECK (price_nanos >= 0),
        payment_mode   text NOT NULL CHECK (payment_mode IN ('webhook', 'invoice')),
        status         text NOT NULL CHECK (status IN ('awaiting_payment', 'paid', 'delivered', 'refunded')),
        refund_reason  text,
        created_by     uuid,
        created_at     timestamptz NOT NULL DEFAULT now(),
        paid_at        timestamptz,
        delivered_at   timestamptz,
        refunded_at    timestamptz
      )`);
    await q.query(`CREATE INDEX orders_tenant_idx ON orders (tenant_id, created_at DESC)`);
    // At most one live order per essay: a second request answers with the first.
    await q.query(`CREATE UNIQUE INDEX orders_one_open_per_essay ON orders (tenant_id, essay_id) WHERE status IN ('awaiting_payment', 'paid')`);

    await q.query(`ALTER TABLE jobs ADD COLUMN order_id uuid REFERENCES orders(id) ON DELETE CASCADE`);

    await q.query(`
      CREATE TABLE payment_events (
        tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        event_id      text NOT NULL,
        type          text NOT NULL,
        order_id      uuid,
        amount_nanos  bigint,
        outcome       text NOT NULL,
        received_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, event_id)
      )`);

    await q.query(`
      CREATE TABLE budget_alerts (
        tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        period      text NOT NULL,
        threshold   numeric(6,4) NOT NULL,
        utilization numeric(8,4) NOT NULL,
        fired_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, period, threshold)
      )`);

    await q.query(`
      CREATE TABLE outbound_webhooks (
        id               uuid PRIMARY KEY,
        tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        url              text NOT NULL,
        body             text NOT NULL,
        status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz NOT NULL DEFAULT now(),
        last_error       text,
        created_at       timestamptz NOT NULL DEFAULT now(),
        delivered_at     timestamptz
      )`);
    await q.query(`CREATE INDEX outbound_webhooks_due_idx ON outbound_webhooks (next_attempt_at) WHERE status = 'pending'`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE outbound_webhooks`);
    await q.query(`DROP TABLE budget_alerts`);
    await q.query(`DROP TABLE payment_events`);
    await q.query(`ALTER TABLE jobs DROP COLUMN order_id`);
    await q.query(`DROP TABLE orders`);
    await q.query(`ALTER TABLE essays DROP COLUMN deep_grade`);
    await q.query(`ALTER TABLE tenants DROP COLUMN alert_webhook_secret, DROP COLUMN alert_webhook_url, DROP COLUMN payment_webhook_secret, DROP COLUMN payment_mode, DROP COLUMN deep_review_price_nanos`);
  }
}
