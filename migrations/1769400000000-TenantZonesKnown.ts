import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A tenant created with a zone name Intl takes and PostgreSQL's zone data does not ("US/Pacific-New")
 * could not settle a model call (the ledger's roll-up reads `AT TIME ZONE` the tenant's zone): its
 * zone is set to the name Intl resolves it to, as new tenants' are (TenantsService.create).
 */
export class TenantZonesKnown1769400000000 implements MigrationInterface {
  name = 'TenantZonesKnown1769400000000';

  public async up(q: QueryRunner): Promise<void> {
    const unknown: Array<{ timezone: string }> = await q.query(
      `SELECT DISTINCT t.timezone FROM tenants t WHERE NOT EXISTS (SELECT 1 FROM pg_timezone_names n WHERE lower(n.name) = lower(t.timezone))`,
    );
    for (const { timezone } of unknown) {
      // (A migration keeps its own copy of the rule: TenantsService.create's canonicalTimeZone may change.)
      let canonical: string;
      try {
        canonical = new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
      } catch {
        continue;
      }
      if (canonical !== timezone) await q.query(`UPDATE tenants SET timezone = $2 WHERE timezone = $1`, [timezone, canonical]);
    }
  }

  public async down(): Promise<void> {
    // The old names are not kept: the database could not use them.
  }
}
