import { MigrationInterface, QueryRunner } from 'typeorm';

const NIL = `'00000000-0000-0000-0000-000000000000'::uuid`;

/** The roll-up's key: the columns every report groups or filters by ('' and the nil uuid for none). */
export const LEDGER_DAILY_KEY = ['tenant_id', 'day', 'period', 'purpose', 'tier', 'provider', 'model', 'batch', 'api_key_id', 'cache_status', 'outcome'];
/** The roll-up's sums, as this migration made them (later ones add to the end). */
export const LEDGER_DAILY_SUMS = ['calls', 'input_tokens', 'cached_input_tokens', 'output_tokens', 'cost_nanos', 'saved_nanos', 'compression_saved_tokens', 'latency_ms'];
const KEY = LEDGER_DAILY_KEY;
const SUMS = LEDGER_DAILY_SUMS;

/** The key of a set of llm_calls rows `c` joined to their tenants `t`, in KEY order. */
export const LEDGER_DAILY_KEY_SELECT = `c.tenant_id, (c.created_at AT TIME ZONE t.timezone)::date, c.period, c.purpose, coalesce(c.tier, ''), coalesce(c.provider, ''),
         coalesce(c.model, ''), c.batch, coalesce(c.api_key_id, ${NIL}), c.cache_status, c.outcome`;

/** The roll-up of a set of llm_calls rows `c` joined to their tenants `t`, in KEY then SUMS order. */
export const LEDGER_DAILY_SELECT = `
  SELECT ${LEDGER_DAILY_KEY_SELECT},
         count(*), sum(c.input_tokens), sum(c.cached_input_tokens), sum(c.output_tokens), sum(c.cost_nanos), sum(c.saved_nanos),
         sum(c.compression_saved_tokens), sum(c.latency_ms)`;
export const LEDGER_DAILY_GROUP = `GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11`;
export const LEDGER_DAILY_UPSERT = `ON CONFLICT (${KEY.join(', ')}) DO UPDATE SET ${SUMS.map((s) => `${s} = ledger_daily.${s} + EXCLUDED.${s}`).join(', ')}`;

/**
 * The ledger rolled up by day (SPEC §8): one row per tenant, day (in the tenant's time zone when
 * the call was written), budget period, purpose, tier, provider, model, batch, key, cache status
 * and outcome, with its call count and token, money and latency sums. Kept by a statement trigger
 * on llm_calls, in the statement that writes the ledger rows (one upsert per statement and key, so
 * a multi-row insert adds to each roll-up row once). GET /v1/usage, /v1/stats and the monthly
 * report read it instead of scanning the ledger: a month is at most a few thousand rows, however
 * many calls it had.
 */
export class LedgerDaily1766200000000 implements MigrationInterface {
  name = 'LedgerDaily1766200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE ledger_daily (
        tenant_id                 uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        day                       date NOT NULL,
        period                    text NOT NULL,
        purpose                   text NOT NULL,
        tier                      text NOT NULL,
        provider                  text NOT NULL,
        model                     text NOT NULL,
        batch                     boolean NOT NULL,
        api_key_id                uuid NOT NULL,
        cache_status              text NOT NULL,
        outcome                   text NOT NULL,
        calls                     bigint NOT NULL,
        input_tokens              bigint NOT NULL,
        cached_input_tokens       bigint NOT NULL,
        output_tokens             bigint NOT NULL,
        cost_nanos                bigint NOT NULL,
        saved_nanos               bigint NOT NULL,
        compression_saved_tokens  bigint NOT NULL,
        latency_ms                bigint NOT NULL,
        PRIMARY KEY (${KEY.join(', ')})
      )`);
    await q.query(`CREATE INDEX ledger_daily_period_idx ON ledger_daily (tenant_id, period)`);
    await q.query(`
      CREATE FUNCTION ledger_daily_add() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ledger_daily (${[...KEY, ...SUMS].join(', ')})
        ${LEDGER_DAILY_SELECT}
          FROM new_rows c JOIN tenants t ON t.id = c.tenant_id
        ${LEDGER_DAILY_GROUP}
        ${LEDGER_DAILY_UPSERT};
        RETURN NULL;
      END
      $fn$`);
    await q.query(`
      CREATE TRIGGER llm_calls_ledger_daily AFTER INSERT ON llm_calls
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_daily_add()`);
    // What the ledger holds already.
    await q.query(`
      INSERT INTO ledger_daily (${[...KEY, ...SUMS].join(', ')})
      ${LEDGER_DAILY_SELECT}
        FROM llm_calls c JOIN tenants t ON t.id = c.tenant_id
      ${LEDGER_DAILY_GROUP}`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER llm_calls_ledger_daily ON llm_calls`);
    await q.query(`DROP FUNCTION ledger_daily_add()`);
    await q.query(`DROP TABLE ledger_daily`);
  }
}
