import { MigrationInterface, QueryRunner } from 'typeorm';
import { timeZoneNames } from '../src/common/time-zone';

/**
 * A tenant created with a zone name Intl takes and PostgreSQL's zone data does not (an old alias,
 * "US/Pacific-New"; on newer images a name ICU resolves to, "Asia/Calcutta") could not settle a
 * model call (the ledger's roll-up reads `AT TIME ZONE` the tenant's zone): its zone is set to the
 * first other name of the same zone the database knows, as new tenants' are (TenantsService.create);
 * so is one the database reads as an abbreviation ("CET": a fixed offset there, summer time in Intl).
 * A zone with no such name is left as it is ("UTC").
 */
export class TenantZonesKnown1769400000000 implements MigrationInterface {
  name = 'TenantZonesKnown1769400000000';

  public async up(q: QueryRunner): Promise<void> {
    const known = new Set((await q.query(`SELECT lower(name) AS name FROM pg_timezone_names`)).map((r: { name: string }) => r.name));
    // (and not a time zone abbreviation, which the database reads first, as a fixed offset: "CET")
    const abbreviations = new Set((await q.query(`SELECT lower(abbrev) AS abbrev FROM pg_timezone_abbrevs`)).map((r: { abbrev: string }) => r.abbrev));
    const isZone = (name: string) => known.has(name.toLowerCase()) && !abbreviations.has(name.toLowerCase());
    const zones: Array<{ timezone: string }> = await q.query(`SELECT DISTINCT timezone FROM tenants`);
    for (const { timezone } of zones) {
      if (isZone(timezone)) continue;
      let names: string[];
      try {
        names = timeZoneNames(timezone);
      } catch {
        continue; // not a zone Intl takes either
      }
      const current = names.find((n) => n !== timezone && isZone(n));
      if (current) await q.query(`UPDATE tenants SET timezone = $2 WHERE timezone = $1`, [timezone, current]);
    }
  }

  public async down(): Promise<void> {
    // The old names are not kept: the database could not use them.
  }
}
