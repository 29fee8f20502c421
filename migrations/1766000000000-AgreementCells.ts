import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Agreement, kept incrementally (SPEC §9): how many essays the grader scored `a` and a teacher (or
 * the deep tier's shadow grading) scored `b`, by tenant, submission day (in the tenant's time
 * zone), assignment, rubric, the
 * grader's tier, model and source, and dimension ('' for the total). An override adds one to its
 * cell (and takes one from the cell of the override it replaces); a shadow grading adds one. An
 * essay without an assignment counts under the nil uuid. So
 * /v1/quality sums a few hundred cells instead of reading every labelled essay's grades.
 */
export class AgreementCells1766000000000 implements MigrationInterface {
  name = 'AgreementCells1766000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE agreement_cells (
        tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        against         text NOT NULL CHECK (against IN ('teacher', 'shadow')),
        day             date NOT NULL,
        assignment_id   uuid NOT NULL,
        rubric_key      text NOT NULL,
        rubric_version  integer NOT NULL,
        tier            text NOT NULL,
        model           text NOT NULL,
        source          text NOT NULL,
        dimension       text NOT NULL,
        a               numeric(8,2) NOT NULL,
        b               numeric(8,2) NOT NULL,
        n               integer NOT NULL,
        PRIMARY KEY (tenant_id, against, day, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a, b)
      )`);
    await q.query(`CREATE INDEX agreement_cells_assignment_idx ON agreement_cells (tenant_id, assignment_id)`);
    await backfillAgreementCells(q);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE agreement_cells`);
  }
}

/**
 * Counts into agreement_cells what is labelled already: every overridden essay and every shadow
 * grading, of every tenant (or of those listed), by the rules EssaysRepository counts them with
 * now: the grader's own scores (a calibrated grade's raw ones), no teacher label of a reused
 * grade, and a teacher's total only where the teacher set it. Run by this migration, by the
 * rebuilds (AgreementCellsRebuild, AgreementCellsTotalLabelled: when those rules came), and by
 * bench/quality.ts over the overrides it generates in the database.
 */
export async function backfillAgreementCells(q: { query(sql: string, params?: unknown[]): Promise<unknown> }, tenantIds?: string[]): Promise<void> {
  const only = tenantIds ? `AND e.tenant_id = ANY($1::uuid[])` : '';
  const params = tenantIds ? [tenantIds] : [];
  // A teacher's grade counts only the dimensions the teacher scored (labelledDimensions), and its
  // total only when the teacher set it (labelledTotal: a comment alone, or some dimensions of
  // several, is no teacher's total).
  for (const [against, other, which, dims, total] of [
    [
      'teacher',
      'e.grade',
      `e.grade->>'source' = 'teacher' AND coalesce(e.model_grade->>'source', 'model') <> 'reused'`,
      `AND coalesce(e.grade->'labelledDimensions', '[]'::jsonb) ? (md->>'key')`,
      `AND coalesce((e.grade->>'labelledTotal')::boolean, true)`,
    ],
    ['shadow', 'e.shadow_grade', 'e.shadow_grade IS NOT NULL', '', ''],
  ]) {
    const keys = `e.tenant_id, '${against}', (e.created_at AT TIME ZONE t.timezone)::date, coalesce(e.assignment_id, '00000000-0000-0000-0000-000000000000'),
                  e.rubric_key, e.rubric_version, coalesce(e.model_grade->>'tier', e.tier),
                  coalesce(nullif(concat_ws(':', e.model_grade->>'provider', e.model_grade->>'model'), ''), 'offline'),
                  coalesce(e.model_grade->>'source', 'model')`;
    await q.query(`
      INSERT INTO agreement_cells (tenant_id, against, day, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a, b, n)
      SELECT ${keys}, '', coalesce((e.model_grade->'calibration'->>'rawScore')::numeric, (e.model_grade->>'score')::numeric), (${other}->>'score')::numeric, count(*)
        FROM essays e JOIN tenants t ON t.id = e.tenant_id WHERE e.model_grade IS NOT NULL AND ${which} ${total} ${only}
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12`, params);
    await q.query(`
      INSERT INTO agreement_cells (tenant_id, against, day, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a, b, n)
      SELECT ${keys}, md->>'key',
             coalesce((SELECT (rd->>'score')::numeric FROM jsonb_array_elements(e.model_grade->'calibration'->'rawDimensions') rd WHERE rd->>'key' = md->>'key' LIMIT 1), (md->>'score')::numeric),
             (td->>'score')::numeric, count(*)
        FROM essays e
        JOIN tenants t ON t.id = e.tenant_id
        CROSS JOIN LATERAL jsonb_array_elements(e.model_grade->'dimensions') md
        JOIN LATERAL jsonb_array_elements(${other}->'dimensions') td ON td->>'key' = md->>'key'
       WHERE e.model_grade IS NOT NULL AND ${which} ${dims} ${only}
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12`, params);
  }
}
