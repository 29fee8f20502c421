import { MigrationInterface, QueryRunner } from 'typeorm';
import {
  LEDGER_DAILY_GROUP,
  LEDGER_DAILY_KEY,
  LEDGER_DAILY_KEY_SELECT,
  LEDGER_DAILY_SELECT,
  LEDGER_DAILY_SUMS,
  LEDGER_DAILY_UPSERT,
} from './1766200000000-LedgerDaily';

/**
 * The roll-up's statement, as the trigger function runs it on the statement's new ledger rows
 * (`new_rows`): LedgerDaily1766200000000's, and with `withSchedule` its sums followed by what
 * schedules saved; `ordered` (LedgerDailyOrder1767000000000) writes the roll-up rows in key order;
 * `tenantByKey` (LedgerDailyTenantByKey1767100000000) finds each row's tenant (its time zone) by its
 * key: PL/pgSQL keeps a statement's plan, and one made while \`tenants\` was small joined by
 * scanning every tenant, on every settlement, until the table was next analyzed.
 */
export const ledgerDailyInsert = (withSchedule: boolean, ordered = false, tenantByKey = false) => `
        INSERT INTO ledger_daily (${[...LEDGER_DAILY_KEY, ...LEDGER_DAILY_SUMS, ...(withSchedule ? ['schedule_saved_nanos'] : [])].join(', ')})
        ${LEDGER_DAILY_SELECT}${withSchedule ? ', coalesce(sum(c.schedule_saved_nanos), 0)' : ''}
          FROM new_rows c ${tenantByKey ? 'CROSS JOIN LATERAL (SELECT timezone FROM tenants WHERE id = c.tenant_id OFFSET 0) t' : 'JOIN tenants t ON t.id = c.tenant_id'}
        ${LEDGER_DAILY_GROUP}${ordered ? `\n        ORDER BY ${LEDGER_DAILY_KEY.map((_, i) => i + 1).join(', ')}` : ''}
        ${LEDGER_DAILY_UPSERT}${withSchedule ? ', schedule_saved_nanos = ledger_daily.schedule_saved_nanos + EXCLUDED.schedule_saved_nanos' : ''}`;

/** The roll-up's trigger function, running ledgerDailyInsert. */
export const ledgerDailyTrigger = (withSchedule: boolean, ordered = false, tenantByKey = false) => `
      CREATE OR REPLACE FUNCTION ledger_daily_add() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN${ledgerDailyInsert(withSchedule, ordered, tenantByKey)};
        RETURN NULL;
      END
      $fn$`;

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
    await q.query(ledgerDailyTrigger(true));
    await q.query(`
      UPDATE ledger_daily d SET schedule_saved_nanos = s.saved
        FROM (SELECT ${LEDGER_DAILY_KEY_SELECT}, sum(c.schedule_saved_nanos) AS saved
                FROM llm_calls c JOIN tenants t ON t.id = c.tenant_id
               WHERE c.schedule_saved_nanos IS NOT NULL
               ${LEDGER_DAILY_GROUP}) AS s(${LEDGER_DAILY_KEY.join(', ')}, saved)
       WHERE ${LEDGER_DAILY_KEY.map((k) => `d.${k} = s.${k}`).join(' AND ')}`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(ledgerDailyTrigger(false));
    await q.query(`ALTER TABLE ledger_daily DROP COLUMN schedule_saved_nanos`);
  }
}
