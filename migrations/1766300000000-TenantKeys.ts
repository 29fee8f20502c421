import { MigrationInterface, QueryRunner } from 'typeorm';

/** Tenant tables whose primary key was (id) alone. */
const TABLES = ['assignments', 'essays', 'orders', 'grade_overrides', 'llm_calls', 'budget_reservations', 'outbound_webhooks', 'jobs'];

interface Constraint {
  name: string;
  index: string;
}

/**
 * Primary keys that lead with tenant_id (docs/scaling.md): (tenant_id, id) instead of (id), so each
 * tenant table can be distributed by tenant_id (Citus needs the distribution column in every primary
 * and unique key). The unique (tenant_id, id) that foreign keys between tenant tables pointed at
 * becomes the primary key itself; those foreign keys are re-created against it. The job queue, which
 * finds its running jobs by id across tenants, keeps a plain index on id.
 */
export class TenantKeys1766300000000 implements MigrationInterface {
  name = 'TenantKeys1766300000000';

  public async up(q: QueryRunner): Promise<void> {
    for (const table of TABLES) await rekey(q, table, 'PRIMARY KEY (tenant_id, id)', []);
    await q.query(`CREATE INDEX jobs_id_idx ON jobs (id)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX jobs_id_idx`);
    for (const table of TABLES) await rekey(q, table, 'PRIMARY KEY (id)', [`ADD CONSTRAINT ${table}_tenant_id_id_key UNIQUE (tenant_id, id)`]);
  }
}

/**
 * Gives `table` a new primary key (and `more`), the foreign keys that point at its old primary key
 * or at its unique (tenant_id, id) dropped first and created again after.
 */
async function rekey(q: QueryRunner, table: string, primary: string, more: string[]): Promise<void> {
  const keys: Array<Constraint & { kind: string }> = await q.query(
    `SELECT c.conname AS name, c.conindid::text AS index, c.contype AS kind FROM pg_constraint c
      WHERE c.conrelid = $1::regclass
        AND (c.contype = 'p' OR (c.contype = 'u' AND c.conkey = ARRAY[
              (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'tenant_id'),
              (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'id')]::int2[]))`,
    [table],
  );
  const fks: Array<{ name: string; source: string; def: string }> = await q.query(
    `SELECT conname AS name, conrelid::regclass::text AS source, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::regclass AND conindid::text = ANY($2::text[])`,
    [table, keys.map((k) => k.index)],
  );
  for (const fk of fks) await q.query(`ALTER TABLE ${fk.source} DROP CONSTRAINT ${fk.name}`);
  for (const k of keys) await q.query(`ALTER TABLE ${table} DROP CONSTRAINT ${k.name}`);
  await q.query(`ALTER TABLE ${table} ADD CONSTRAINT ${table}_pkey ${primary}`);
  for (const m of more) await q.query(`ALTER TABLE ${table} ${m}`);
  for (const fk of fks) await q.query(`ALTER TABLE ${fk.source} ADD CONSTRAINT ${fk.name} ${fk.def}`);
}
