import { MigrationInterface, QueryRunner } from 'typeorm';
import { timeZoneNames } from '../src/common/time-zone';

/**
 * A tenant created with a zone name Intl takes and PostgreSQL's zone data does not (an old alias,
 * "US/Pacific-New"; on newer images a name ICU resolves to, "Asia/Calcutta") could not settle a
 * model call (the ledger's roll-up reads `AT TIME ZONE` the tenant's zone): its zone is set to the
 * first other name of the same zone the database knows, as new tenants' are (TenantsService.create).
 * A zone with no such name is left as it is.
 */
export class TenantZonesKnown1769400000000 implements MigrationInterface {
  name = 'TenantZonesKnown1769400000000';

  public async up(q: QueryRunner): Promise<void> {
    const known = new Set((await q.query(`SELECT lower(name) AS name FROM pg_timezone_names`)).map((r: { name: string }) => r.name));
    const zones: Array<{ timezone: string }> = await q.query(`SELECT DISTINCT timezone FROM tenants`);
    for (const { timezone } of zones) {
      if (known.has(timezone.toLowerCase())) continue;
      let names: string[];
      try {
        names = timeZoneNames(timezone);
      } catch {
        continue; // not a zone Intl takes either
      }
      const current = names.find((n) => known.has(n.toLowerCase()));
      if (current) await q.query(`UPDATE tenants SET timezone = $2 WHERE timezone = $1`, [timezone, current]);
    }
  }

  public async down(): Promise<void> {
    // The old names are not kept: the database could not use them.
  }
}
