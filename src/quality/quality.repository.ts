import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { tenantQuery } from '../db/tenant-scope';
import type { StoredGrade } from '../grading/grading-types';
import type { Language } from '../grading/rubric';
import type { Cell } from './agreement';

/** An overridden essay: what the grader gave and what the teacher gave. */
export interface LabelRow {
  id: string;
  text: string;
  language: Language;
  graderGrade: StoredGrade;
  teacherScore: number;
}

export interface RegradeRow {
  id: string;
  text: string;
  language: Language;
  grade: StoredGrade;
}

export const QUALITY_GROUPS = ['rubric', 'tier', 'model', 'source'] as const;
export type QualityGroup = (typeof QUALITY_GROUPS)[number];

/** What each grouping reads from the grader's original grade (fixed SQL: never user text). */
const GROUP_SQL: Record<QualityGroup, string> = {
  rubric: `e.rubric_key`,
  tier: `coalesce(e.model_grade->>'tier', e.tier)`,
  model: `coalesce(nullif(concat_ws(':', e.model_grade->>'provider', e.model_grade->>'model'), ''), 'offline')`,
  source: `coalesce(e.model_grade->>'source', 'model')`,
};

export interface LabelFilter {
  assignmentId?: string;
  from?: Date;
  to?: Date;
}

/** One cell of a contingency table, with the group and rubric it belongs to (and the dimension). */
export interface LabelCell extends Cell {
  group: string;
  rubricKey: string;
  rubricVersion: number;
  dimension: string | null;
}

/**
 * The labels (SPEC §9): essays a teacher overrode, the grader's original total beside the
 * teacher's. Read only; the database groups them into contingency tables, so the work is one
 * scan of the partial index essays_labels_idx however many labels a tenant has.
 */
@Injectable()
export class QualityRepository {
  constructor(private readonly ds: DataSource) {}

  /**
   * Contingency tables of the grader's original (model_grade) against the teacher's grade (labels),
   * or against the deep tier's shadow grade (shadow evaluation), by group and rubric, for the total
   * and for each dimension.
   */
  async cells(tenantId: string, groupBy: QualityGroup, f: LabelFilter, against: 'teacher' | 'shadow' = 'teacher'): Promise<LabelCell[]> {
    const { where, params } = this.where(f);
    const grp = GROUP_SQL[groupBy];
    const other = against === 'teacher' ? 'e.grade' : 'e.shadow_grade';
    const which = against === 'teacher' ? `e.model_grade IS NOT NULL AND e.grade->>'source' = 'teacher'` : `e.model_grade IS NOT NULL AND e.shadow_grade IS NOT NULL`;
    const totals = await tenantQuery<Record<string, string | number>>(
      this.ds.manager,
      tenantId,
      `SELECT ${grp} AS grp, e.rubric_key, e.rubric_version,
              (e.model_grade->>'score')::numeric AS a, (${other}->>'score')::numeric AS b, count(*)::int AS n
         FROM essays e
        WHERE e.tenant_id = $1 AND ${which} ${where}
        GROUP BY 1, 2, 3, 4, 5`,
      params,
    );
    const dims = await tenantQuery<Record<string, string | number>>(
      this.ds.manager,
      tenantId,
      `SELECT ${grp} AS grp, e.rubric_key, e.rubric_version, md->>'key' AS dim,
              (md->>'score')::numeric AS a, (td->>'score')::numeric AS b, count(*)::int AS n
         FROM essays e
         CROSS JOIN LATERAL jsonb_array_elements(e.model_grade->'dimensions') md
         JOIN LATERAL jsonb_array_elements(${other}->'dimensions') td ON td->>'key' = md->>'key'
        WHERE e.tenant_id = $1 AND ${which} ${where}
        GROUP BY 1, 2, 3, 4, 5, 6`,
      params,
    );
    const cell = (r: Record<string, string | number>, dimension: string | null): LabelCell => ({
      group: String(r.grp),
      rubricKey: String(r.rubric_key),
      rubricVersion: Number(r.rubric_version),
      dimension,
      a: Number(r.a),
      b: Number(r.b),
      n: Number(r.n),
    });
    return [...totals.map((r) => cell(r, null)), ...dims.map((r) => cell(r, String(r.dim)))];
  }

  /** The assignment's labels for a calibration, newest first, at most `limit`. */
  async labels(tenantId: string, assignmentId: string, limit: number): Promise<LabelRow[]> {
    return tenantQuery<LabelRow>(
      this.ds.manager,
      tenantId,
      `SELECT e.id, e.text, e.language, e.model_grade AS "graderGrade", (e.grade->>'score')::float8 AS "teacherScore"
         FROM essays e
        WHERE e.tenant_id = $1 AND e.assignment_id = $2 AND e.model_grade IS NOT NULL AND e.grade->>'source' = 'teacher'
        ORDER BY e.created_at DESC, e.id DESC
        LIMIT $3`,
      [assignmentId, limit],
    );
  }

  /** Graded essays of the assignment that no teacher overrode, after `afterId` in id order (a regrade's pages). */
  async regradable(tenantId: string, assignmentId: string, afterId: string, limit: number): Promise<RegradeRow[]> {
    return tenantQuery<RegradeRow>(
      this.ds.manager,
      tenantId,
      `SELECT e.id, e.text, e.language, e.grade
         FROM essays e
        WHERE e.tenant_id = $1 AND e.assignment_id = $2 AND e.status IN ('graded', 'needs_review') AND e.grade IS NOT NULL
          AND e.grade->>'source' <> 'teacher' AND e.id > $3
        ORDER BY e.id
        LIMIT $4`,
      [assignmentId, afterId, limit],
    );
  }

  private where(f: LabelFilter): { where: string; params: unknown[] } {
    const params: unknown[] = [];
    const clauses: string[] = [];
    const add = (sql: (p: string) => string, value: unknown) => {
      params.push(value);
      clauses.push(sql(`$${params.length + 1}`));
    };
    if (f.assignmentId) add((p) => `e.assignment_id = ${p}`, f.assignmentId);
    if (f.from) add((p) => `e.created_at >= ${p}`, f.from);
    if (f.to) add((p) => `e.created_at < ${p}`, f.to);
    return { where: clauses.map((c) => `AND ${c}`).join(' '), params };
  }
}
