import { MigrationInterface, QueryRunner } from 'typeorm';

/** A foreign key between two tenant tables, as it was (one column) and as it becomes (with tenant_id). */
interface TenantFk {
  table: string;
  column: string;
  references: string;
  /** the single-column constraint it replaces (PostgreSQL's default name), if there was one */
  old?: string;
  name: string;
  onDelete: 'CASCADE' | 'SET NULL';
}

const FKS: TenantFk[] = [
  { table: 'essays', column: 'assignment_id', references: 'assignments', old: 'essays_assignment_id_fkey', name: 'essays_tenant_assignment_fkey', onDelete: 'SET NULL' },
  { table: 'grade_overrides', column: 'essay_id', references: 'essays', old: 'grade_overrides_essay_id_fkey', name: 'grade_overrides_tenant_essay_fkey', onDelete: 'CASCADE' },
  { table: 'jobs', column: 'essay_id', references: 'essays', old: 'jobs_essay_id_fkey', name: 'jobs_tenant_essay_fkey', onDelete: 'CASCADE' },
  { table: 'jobs', column: 'order_id', references: 'orders', old: 'jobs_order_id_fkey', name: 'jobs_tenant_order_fkey', onDelete: 'CASCADE' },
  { table: 'essay_lsh', column: 'essay_id', references: 'essays', old: 'essay_lsh_essay_id_fkey', name: 'essay_lsh_tenant_essay_fkey', onDelete: 'CASCADE' },
  { table: 'orders', column: 'essay_id', references: 'essays', old: 'orders_essay_id_fkey', name: 'orders_tenant_essay_fkey', onDelete: 'CASCADE' },
  // New: an event names the order it paid or refunded; it outlives the order (idempotency record).
  { table: 'payment_events', column: 'order_id', references: 'orders', name: 'payment_events_tenant_order_fkey', onDelete: 'SET NULL' },
];

/** Tables referenced by (tenant_id, id): their id is unique already, the pair must be too. */
const REFERENCED = ['assignments', 'essays', 'orders'];

/**
 * Foreign keys between tenant tables carry tenant_id on both sides, so a row can never point at
 * another tenant's row: `(tenant_id, essay_id) REFERENCES essays (tenant_id, id)`. ON DELETE stays
 * as it was; SET NULL names its column (PostgreSQL 15+), since tenant_id is NOT NULL.
 * (budget_reservations → budget_periods was composite from the start.)
 */
export class TenantForeignKeys1765300000000 implements MigrationInterface {
  name = 'TenantForeignKeys1765300000000';

  public async up(q: QueryRunner): Promise<void> {
    for (const table of REFERENCED) {
      await q.query(`ALTER TABLE ${table} ADD CONSTRAINT ${table}_tenant_id_id_key UNIQUE (tenant_id, id)`);
    }
    for (const fk of FKS) {
      if (fk.old) await q.query(`ALTER TABLE ${fk.table} DROP CONSTRAINT ${fk.old}`);
      const onDelete = fk.onDelete === 'SET NULL' ? `SET NULL (${fk.column})` : 'CASCADE';
      await q.query(
        `ALTER TABLE ${fk.table} ADD CONSTRAINT ${fk.name}
           FOREIGN KEY (tenant_id, ${fk.column}) REFERENCES ${fk.references} (tenant_id, id) ON DELETE ${onDelete}`,
      );
    }
  }

  public async down(q: QueryRunner): Promise<void> {
    for (const fk of [...FKS].reverse()) {
      await q.query(`ALTER TABLE ${fk.table} DROP CONSTRAINT ${fk.name}`);
      if (fk.old) {
        await q.query(`ALTER TABLE ${fk.table} ADD CONSTRAINT ${fk.old} FOREIGN KEY (${fk.column}) REFERENCES ${fk.references} (id) ON DELETE ${fk.onDelete}`);
      }
    }
    for (const table of [...REFERENCED].reverse()) {
      await q.query(`ALTER TABLE ${table} DROP CONSTRAINT ${table}_tenant_id_id_key`);
    }
  }
}
