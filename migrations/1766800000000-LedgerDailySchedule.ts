import { MigrationInterface, QueryRunner } from 'typeorm';

const NIL = `'00000000-0000-0000-0000-000000000000'::uuid`;

/** The roll-up's key (as LedgerDaily1766200000000 made it). */
const KEY = ['tenant_id', 'day', 'period', 'purpose', 'tier', 'provider', 'model', 'batch', 'api_key_id', 'cache_status', 'outcome'];

/** The roll-up's key columns of a set of llm_calls rows `c` joined to their tenants `t`, in KEY order. */
const KEY_SELECT = `c.tenant_id, (c.created_at AT TIME ZONE t.timezone)::date, c.period, c.purpose, coalesce(c.tier, ''), coalesce(c.provider, ''),
         coalesce(c.model, ''), c.batch, coalesce(c.api_key_id, ${NIL}), c.cache_status, c.outcome`;
const GROUP = `GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11`;

/** The sums, each with what it adds up: the ones LedgerDaily1766200000000 kept, then what schedules saved. */
const sums = (withSchedule: boolean) => [
  ['calls', 'count(*)'],
  ['input_tokens', 'sum(c.input_tokens)'],
  ['cached_input_tokens', 'sum(c.cached_input_tokens)'],
  ['output_tokens', 'sum(c.output_tokens)'],
  ['cost_nanos', 'sum(c.cost_nanos)'],
  ['saved_nanos', 'sum(c.saved_nanos)'],
  ['compression_saved_tokens', 'sum(c.compression_saved_tokens)'],
  ['latency_ms', 'sum(c.latency_ms)'],
  ...(withSchedule ? [['schedule_saved_nanos', 'coalesce(sum(c.schedule_saved_nanos), 0)']] : []),
];

const trigger = (withSchedule: boolean) => {
  const s = sums(withSchedule);
  return `
      CREATE OR REPLACE FUNCTION ledger_daily_add() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ledger_daily (${[...KEY, ...s.map(([c]) => c)].join(', ')})
        SELECT ${KEY_SELECT}, ${s.map(([, e]) => e).join(', ')}
          FROM new_rows c JOIN tenants t ON t.id = c.tenant_id
        ${GROUP}
        ON CONFLICT (${KEY.join(', ')}) DO UPDATE SET ${s.map(([c]) => `${c} = ledger_daily.${c} + EXCLUDED.${c}`).join(', ')};
        RETURN NULL;
      END
      $fn$`;
};

/**
 * What off-peak scheduling saved, in the daily roll-up: ledger_daily gets the sum of the ledger
 * rows' schedule_saved_nanos (what each scheduled call cost less than it would have in real time
 * when its work was submitted; null, counted as 0, for unscheduled calls), kept by the same
 * statement trigger, so the monthly report can say what scheduling saved without scanning the
 * ledger. Rows already rolled up are filled in from the ledger's scheduled rows (a one-off scan of
 * llm_calls when this runs).
 */
export class LedgerDailySchedule1766800000000 implements MigrationInterface {
  name = 'LedgerDailySchedule1766800000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ledger_daily ADD COLUMN schedule_saved_nanos bigint NOT NULL DEFAULT 0`);
    await q.query(trigger(true));
    await q.query(`
      UPDATE ledger_daily d SET schedule_saved_nanos = s.saved
        FROM (SELECT ${KEY_SELECT}, sum(c.schedule_saved_nanos) AS saved
                FROM llm_calls c JOIN tenants t ON t.id = c.tenant_id
               WHERE c.schedule_saved_nanos IS NOT NULL
               ${GROUP}) AS s(${KEY.join(', ')}, saved)
       WHERE ${KEY.map((k) => `d.${k} = s.${k}`).join(' AND ')}`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(trigger(false));
    await q.query(`ALTER TABLE ledger_daily DROP COLUMN schedule_saved_nanos`);
  }
}
