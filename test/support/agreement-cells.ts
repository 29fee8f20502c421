import type { DataSource } from 'typeorm';
import { backfillAgreementCells } from '../../migrations/1766000000000-AgreementCells';

/** A tenant's agreement cells, each as one line (the zero cells left out). */
async function cellsOf(ds: DataSource, tenantId: string): Promise<string[]> {
  const rows: Array<Record<string, unknown>> = await ds.query(
    `SELECT against, day::text, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a::text, b::text, n
       FROM agreement_cells WHERE tenant_id = $1 AND n <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11`,
    [tenantId],
  );
  return rows.map((r) => JSON.stringify(r));
}

/**
 * The cells the overrides and shadow gradings kept for the tenant, and those the migrations'
 * backfill counts from its essays now (the cells are rebuilt by it: the two must agree).
 */
export async function keptAndBackfilled(ds: DataSource, tenantId: string): Promise<{ kept: string[]; backfilled: string[] }> {
  const kept = await cellsOf(ds, tenantId);
  await ds.query(`DELETE FROM agreement_cells WHERE tenant_id = $1`, [tenantId]);
  await backfillAgreementCells(ds, [tenantId]);
  return { kept, backfilled: await cellsOf(ds, tenantId) };
}
