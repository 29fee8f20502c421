import { clientForSuite } from './support/test-database';

/**
 * Every tenant table can be distributed by tenant (docs/scaling.md): its primary key and each of its
 * unique keys lead with tenant_id, so a row's identity and its uniqueness live on one tenant's shard
 * (Citus requires the distribution column in every primary and unique key).
 */
/**
 * Tenant tables read before the tenant is known, kept whole on every node (a Citus reference table),
 * each with the reason.
 */
const DIRECTORY: Record<string, string> = {
  api_keys: 'a request is authenticated by its key before its tenant is known: the key directory (prefix → tenant) is looked up by the key',
};

describe('the keys of tenant tables lead with tenant_id (real PostgreSQL)', () => {
  const suite = clientForSuite();

  it('has a primary key, and every primary and unique key (constraint or index) starts with tenant_id', async () => {
    const { rows: tables } = await suite.client.query<{ table: string }>(
      `SELECT c.relname AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        ORDER BY 1`,
    );
    expect(tables.length).toBeGreaterThan(15);
    for (const t of Object.keys(DIRECTORY)) expect(tables.map((x) => x.table)).toContain(t); // no stale exemption
    const { rows: keys } = await suite.client.query<{ table: string; index: string; primary: boolean; first: string | null }>(
      `SELECT t.relname AS table, i.relname AS index, x.indisprimary AS primary,
              (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = x.indkey[0]) AS first
         FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public' AND (x.indisunique OR x.indisprimary)`,
    );
    const tenantTables = new Set(tables.map((t) => t.table).filter((t) => !(t in DIRECTORY)));
    const withoutPrimary = [...tenantTables].filter((t) => !keys.some((k) => k.table === t && k.primary));
    const notLeading = keys.filter((k) => tenantTables.has(k.table) && k.first !== 'tenant_id').map((k) => `${k.table}.${k.index} (starts with ${k.first ?? 'an expression'})`);
    expect({ withoutPrimary, notLeading }).toEqual({ withoutPrimary: [], notLeading: [] });
  });
});
