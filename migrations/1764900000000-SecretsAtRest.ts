import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Webhook secrets sealed at rest, and outbound webhooks that carry an event id and are claimed
 * under a lease.
 *
 * The sealed secrets go in new columns that only take the sealed format (`enc:v1:…`, see
 * src/common/secret-box.ts). The old plaintext columns stay for now, as the legacy source: SQL
 * cannot seal (the key is not in the database), so the application seals every plaintext value
 * when it starts and empties the old column in the same statement (TenantSecretsService); a value
 * an older instance writes there meanwhile is sealed the first time it is read. A later migration
 * drops the old columns.
 */
export class SecretsAtRest1764900000000 implements MigrationInterface {
  name = 'SecretsAtRest1764900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE tenants
        ADD COLUMN payment_webhook_secret_enc text CHECK (payment_webhook_secret_enc ~ '^enc:v1:[0-9a-f]{8}:'),
        ADD COLUMN alert_webhook_secret_enc text CHECK (alert_webhook_secret_enc ~ '^enc:v1:[0-9a-f]{8}:')`);
    await q.query(`COMMENT ON COLUMN tenants.payment_webhook_secret IS 'legacy plaintext: sealed into payment_webhook_secret_enc and emptied at start'`);
    await q.query(`COMMENT ON COLUMN tenants.alert_webhook_secret IS 'legacy plaintext: sealed into alert_webhook_secret_enc and emptied at start'`);

    // The id receivers dedupe on (X-Inkstone-Event-Id), the same on every attempt.
    await q.query(`ALTER TABLE outbound_webhooks ADD COLUMN event_id text`);
    await q.query(`UPDATE outbound_webhooks SET event_id = coalesce(body::jsonb ->> 'id', 'evt_' || id::text)`);
    await q.query(`ALTER TABLE outbound_webhooks ALTER COLUMN event_id SET NOT NULL`);
    // Who holds a claimed row; its lease is next_attempt_at. Only the holder records the outcome.
    await q.query(`ALTER TABLE outbound_webhooks ADD COLUMN claim_token uuid`);
    await q.query(`CREATE INDEX outbound_webhooks_claimed_idx ON outbound_webhooks (tenant_id) WHERE status = 'pending' AND claim_token IS NOT NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    const [sealed] = await q.query(
      `SELECT count(*)::int AS n FROM tenants WHERE payment_webhook_secret_enc IS NOT NULL OR alert_webhook_secret_enc IS NOT NULL`,
    );
    if (sealed.n > 0) {
      throw new Error(
        `${sealed.n} tenants have sealed webhook secrets, which SQL cannot unseal; reverting would lose them. ` +
          'Clear payment_webhook_secret_enc and alert_webhook_secret_enc first if that is intended (tenants then set their secrets again).',
      );
    }
    await q.query(`DROP INDEX outbound_webhooks_claimed_idx`);
    await q.query(`ALTER TABLE outbound_webhooks DROP COLUMN claim_token, DROP COLUMN event_id`);
    await q.query(`COMMENT ON COLUMN tenants.payment_webhook_secret IS NULL`);
    await q.query(`COMMENT ON COLUMN tenants.alert_webhook_secret IS NULL`);
    await q.query(`ALTER TABLE tenants DROP COLUMN alert_webhook_secret_enc, DROP COLUMN payment_webhook_secret_enc`);
  }
}
