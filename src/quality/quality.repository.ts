import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { KeysetPosition } from '../common/pagination';
import { tenantQuery } from '../db/tenant-scope';
import type { StoredGrade } from '../grading/grading-types';
import type { Language } from '../grading/rubric';
import type { Cell } from './agreement';

/**
 * An overridden essay, as a calibration reads it: what the grader gave and what the teacher gave,
 * and the essay's text only where the offline features need it (grades made offline).
 */
export interface LabelRow {
  id: string;
  /** the essay's text for an offline grade; null for a model grade (its text is not read) */
  text: string | null;
  language: Language;
  source: 'model' | 'offline';
  /** the grader's own total (before any calibration) */
  raw: number;
  teacherScore: number;
}

/** Where the next page of labels starts: after this essay in the labels' order (its time, its text's hash, its id). */
export interface LabelCursor extends KeysetPosition {
  textHash: string;
}

export interface RegradeRow {
  id: string;
  /** its submission time as PostgreSQL writes it (microseconds kept): with the id, the page's cursor */
  at: string;
  text: string;
  language: Language;
  grade: StoredGrade;
  flags: string[];
}

export const QUALITY_GROUPS = ['rubric', 'tier', 'model', 'source'] as const;
export type QualityGroup = (typeof QUALITY_GROUPS)[number];

/** The column of agreement_cells each grouping reads (fixed SQL: never user text). */
const GROUP_COLUMN: Record<QualityGroup, string> = {
  rubric: 'rubric_key',
  tier: 'tier',
  model: 'model',
  source: 'source',
};

export interface LabelFilter {
  assignmentId?: string;
  /** YYYY-MM-DD: essays submitted on or after this day (the tenant's days) */
  from?: string;
  /** YYYY-MM-DD: essays submitted before this day */
  to?: string;
}

/** One cell of a contingency table, with the group and rubric it belongs to (and the dimension). */
export interface LabelCell extends Cell {
  group: string;
  rubricKey: string;
  rubricVersion: number;
  dimension: string | null;
}

/**
 * The labels (SPEC §9), read only: the agreement cells the overrides and shadow gradings keep
 * (written with them by EssaysRepository), and an assignment's overridden essays for a calibration
 * (the partial index essays_labels_idx).
 */
@Injectable()
export class QualityRepository {
  constructor(private readonly ds: DataSource) {}

  /**
   * Contingency tables of the grader's original grade against the teacher's (labels) or against the
   * deep tier's shadow grade, by group and rubric, for the total and each dimension: sums of the
   * cells the overrides and shadow gradings keep (agreement_cells), so the cost does not grow with
   * the number of labels.
   */
  async cells(tenantId: string, groupBy: QualityGroup, f: LabelFilter, against: 'teacher' | 'shadow' = 'teacher'): Promise<LabelCell[]> {
    const { where, params } = this.where(f);
    const rows = await tenantQuery<Record<string, string | number>>(
      this.ds.manager,
      tenantId,
      `SELECT ${GROUP_COLUMN[groupBy]} AS grp, rubric_key, rubric_version, dimension AS dim, a, b, sum(n)::int AS n
         FROM agreement_cells
        WHERE tenant_id = $1 AND against = $2 ${where}
        GROUP BY 1, 2, 3, 4, 5, 6
       HAVING sum(n) > 0`,
      [against, ...params],
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
    return rows.map((r) => cell(r, r.dim === '' ? null : String(r.dim)));
  }

  /**
   * One page of the assignment's labels for a calibration, newest first: essays a teacher overrode
   * whose grader's grade is of the standard tier, made by a model or offline. Essays of one batch
   * share their time: among them the order follows the text (then the id, for the same text), not
   * the random ids, so that the same labels deal the same cross-validation folds on every run.
   * Read a page at a time (the caller keeps each label's features, not its text), so that a fit
   * over thousands of long essays never holds their texts at once.
   */
  async labelsPage(tenantId: string, assignmentId: string, after: LabelCursor | null, limit: number): Promise<{ rows: LabelRow[]; next: LabelCursor | null }> {
    const rows = await tenantQuery<LabelRow & { at: string; hash: string }>(
      this.ds.manager,
      tenantId,
      `SELECT e.id, e.created_at::text AS at, md5(e.text) AS hash, e.language,
              CASE WHEN e.model_grade->>'source' = 'offline' THEN e.text END AS text,
              e.model_grade->>'source' AS source,
              coalesce((e.model_grade->'calibration'->>'rawScore')::float8, (e.model_grade->>'score')::float8) AS raw,
              (e.grade->>'score')::float8 AS "teacherScore"
         FROM essays e
        WHERE e.tenant_id = $1 AND e.assignment_id = $2 AND e.model_grade IS NOT NULL AND e.grade->>'source' = 'teacher'
          AND coalesce((e.grade->>'labelledTotal')::boolean, true)
          AND e.model_grade->>'source' IN ('model', 'offline') AND coalesce(e.model_grade->>'tier', 'standard') = 'standard'
          AND ($3::timestamptz IS NULL
               OR e.created_at < $3::timestamptz
               OR (e.created_at = $3::timestamptz AND (md5(e.text) > $4 OR (md5(e.text) = $4 AND e.id < $5::uuid))))
        ORDER BY e.created_at DESC, md5(e.text), e.id DESC
        LIMIT $6`,
      [assignmentId, after?.at ?? null, after?.textHash ?? null, after?.id ?? null, limit],
    );
    const last = rows[rows.length - 1];
    return {
      rows: rows.map(({ at: _at, hash: _hash, ...r }) => ({ ...r, raw: Number(r.raw), teacherScore: Number(r.teacherScore) })),
      next: rows.length === limit && last ? { at: last.at, textHash: last.hash, id: last.id } : null,
    };
  }

  /**
   * One page of the assignment's essays, newest first, after `after` (a regrade's pages): of them,
   * the standard model or offline grades no teacher overrode; `next` null after the last page.
   * A range of essays_tenant_assignment_idx (tenant, assignment, created_at DESC, id DESC), the
   * grades filtered here: with the filter on the grade's JSON in the query, the planner (no
   * statistics for it) scanned and sorted every remaining essay of the class for each page.
   */
  async regradable(tenantId: string, assignmentId: string, after: { at: string; id: string } | null, limit: number): Promise<{ rows: RegradeRow[]; next: { at: string; id: string } | null }> {
    const page = await tenantQuery<RegradeRow & { status: string }>(
      this.ds.manager,
      tenantId,
      `SELECT e.id, e.created_at::text AS at, e.status, e.text, e.language, e.grade, e.flags
         FROM essays e
        WHERE e.tenant_id = $1 AND e.assignment_id = $2
          AND ($3::timestamptz IS NULL OR (e.created_at, e.id) < ($3::timestamptz, $4::uuid))
        ORDER BY e.created_at DESC, e.id DESC
        LIMIT $5`,
      [assignmentId, after?.at ?? null, after?.id ?? null, limit],
    );
    const last = page[page.length - 1];
    const rows = page
      .filter((e) => (e.status === 'graded' || e.status === 'needs_review') && e.grade && (e.grade.source === 'model' || e.grade.source === 'offline') && (e.grade.tier ?? 'standard') === 'standard')
      .map(({ status: _status, ...e }) => e);
    return { rows, next: page.length === limit && last ? { at: last.at, id: last.id } : null };
  }

  /** The filter's clauses over agreement_cells, their parameters numbered from $3. */
  private where(f: LabelFilter): { where: string; params: unknown[] } {
    const params: unknown[] = [];
    const clauses: string[] = [];
    const add = (sql: (p: string) => string, value: unknown) => {
      params.push(value);
      clauses.push(sql(`$${params.length + 2}`));
    };
    if (f.assignmentId) add((p) => `assignment_id = ${p}`, f.assignmentId);
    // Days of submission in the tenant's time zone (the cells are kept by them).
    if (f.from) add((p) => `day >= ${p}::date`, f.from);
    if (f.to) add((p) => `day < ${p}::date`, f.to);
    return { where: clauses.map((c) => `AND ${c}`).join(' '), params };
  }

}
