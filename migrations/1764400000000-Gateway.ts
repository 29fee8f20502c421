import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Budgets (one row per tenant per calendar month, with reservations held against it), the call
 * ledger (one row per model call attempt, cache hits included) and the response cache.
 * Money is BIGINT nano-yuan (1e-9 CNY).
 */
export class Gateway1764400000000 implements MigrationInterface {
  name = 'Gateway1764400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE tenants
        ADD COLUMN budget_when_exhausted text NOT NULL DEFAULT 'offline'
          CHECK (budget_when_exhausted IN ('offline', 'reject')),
        ADD COLUMN budget_alert_thresholds numeric(6,4)[] NOT NULL DEFAULT '{0.8,1.0}'`);

    await q.query(`
      CREATE TABLE budget_periods (
        tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        period          text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
        cap_nanos       bigint NOT NULL CHECK (cap_nanos >= 0),
        spent_nanos     bigint NOT NULL DEFAULT 0 CHECK (spent_nanos >= 0),
        reserved_nanos  bigint NOT NULL DEFAULT 0 CHECK (reserved_nanos >= 0),
        updated_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, period)
      )`);

    await q.query(`
      CREATE TABLE budget_reservations (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL,
        period        text NOT NULL,
        amount_nanos  bigint NOT NULL CHECK (amount_nanos >= 0),
        created_at    timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL,
        FOREIGN KEY (tenant_id, period) REFERENCES budget_periods (tenant_id, period) ON DELETE CASCADE
      )`);
    await q.query(`CREATE INDEX budget_reservations_expiry_idx ON budget_reservations (expires_at)`);
    await q.query(`CREATE INDEX budget_reservations_tenant_idx ON budget_reservations (tenant_id, period)`);

    await q.query(`
      CREATE TABLE llm_calls (
        id                        uuid PRIMARY KEY,
        tenant_id                 uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        period                    text NOT NULL,
        created_at                timestamptz NOT NULL DEFAULT now(),
        request_id                text,
        call_group                uuid NOT NULL,
        attempt                   integer NOT NULL,
        api_key_id                uuid,
        essay_id                  uuid,
        purpose                   text NOT NULL,
        tier                      text,
        provider                  text,
        model                     text,
        cache_status              text NOT NULL CHECK (cache_status IN ('hit', 'miss', 'bypass')),
        outcome                   text NOT NULL,
        error_reason              text,
        input_tokens              integer NOT NULL DEFAULT 0,
        cached_input_tokens       integer NOT NULL DEFAULT 0,
        output_tokens             integer NOT NULL DEFAULT 0,
        estimated_input_tokens    integer,
        usage_source              text NOT NULL DEFAULT 'none' CHECK (usage_source IN ('provider', 'estimated', 'none')),
        cost_nanos                bigint NOT NULL DEFAULT 0 CHECK (cost_nanos >= 0),
        saved_nanos               bigint NOT NULL DEFAULT 0 CHECK (saved_nanos >= 0),
        compression_saved_tokens  integer NOT NULL DEFAULT 0,
        latency_ms                integer NOT NULL DEFAULT 0,
        streamed                  boolean NOT NULL DEFAULT false
      )`);
    await q.query(`CREATE INDEX llm_calls_tenant_time_idx ON llm_calls (tenant_id, created_at)`);
    await q.query(`CREATE INDEX llm_calls_tenant_period_idx ON llm_calls (tenant_id, period)`);

    await q.query(`
      CREATE TABLE llm_cache (
        tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        cache_key    text NOT NULL,
        content      text NOT NULL,
        provider     text NOT NULL,
        model        text NOT NULL,
        finish_reason text NOT NULL,
        input_tokens integer NOT NULL,
        cached_input_tokens integer NOT NULL,
        output_tokens integer NOT NULL,
        cost_nanos   bigint NOT NULL CHECK (cost_nanos >= 0),
        created_at   timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        hits         integer NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, cache_key)
      )`);
    await q.query(`CREATE INDEX llm_cache_expiry_idx ON llm_cache (expires_at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE llm_cache`);
    await q.query(`DROP TABLE llm_calls`);
    await q.query(`DROP TABLE budget_reservations`);
    await q.query(`DROP TABLE budget_periods`);
    await q.query(`ALTER TABLE tenants DROP COLUMN budget_alert_thresholds, DROP COLUMN budget_when_exhausted`);
  }
}
