import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { tenantQuery } from '../db/tenant-scope';
import { AssignmentQualityDto, CreateAssignmentDto, Escalation } from './dto/assignment.dto';
import { detectLanguage } from './essay-text';
import { languageMismatch, maxScore, Rubric, totalStep } from './rubric';
import { RubricsService } from './rubrics.service';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { LimitsService } from '../tenancy/limits.service';
import { csvHeader, csvRows } from '../common/csv';
import { localDate, localParts } from '../common/time-zone';
import { deadlineProblem } from './deadline';
import { JobQueue } from '../jobs/job-queue';
import { Clock } from '../common/clock';
import type { StoredGrade } from './grading-types';
import { UUID } from '../common/ids';
import { cursorAtSql, decodeCursor, keysetPage, pageLimit, type KeysetPosition } from '../common/pagination';

export interface Assignment {
  id: string;
  title: string;
  prompt: string;
  rubric: { key: string; version: number };
  language: 'zh' | 'en';
  /** a low-confidence standard grade: left alone, flagged for review, or graded again on the deep tier */
  escalate: Escalation;
  /** the total at which an essay passes (a grade within one step of it is low-confidence), or null */
  passMark: number | null;
  /** the length the task asks for; null: the rubric's */
  expectedLength: { min: number; max: number } | null;
  /** the class set is graded by then, where it costs least (off-peak scheduling); null: at once */
  dueBy: string | null;
  createdAt: string;
}

/** GET /v1/assignments/:id: the assignment, its essays counted by status and the distribution of their scores. */
/** An assignment in the list: its essays counted by status. */
export interface AssignmentSummary extends Assignment {
  counts: { total: number; queued: number; grading: number; graded: number; failed: number; needs_review: number };
}

export interface AssignmentDetail extends Assignment {
  /** the rubric's highest total */
  maxScore: number;
  /** essays by status (queued, grading, graded, failed, needs_review) and in all */
  counts: { total: number; [status: string]: number };
  scores: {
    count: number;
    mean: number | null;
    median: number | null;
    min: number | null;
    max: number | null;
    /** at most ten buckets from 0 to maxScore, each a whole number of the rubric's score steps wide (scoreBuckets) */
    distribution: Array<{ from: number; to: number; count: number }>;
  };
}


/** An export's rows at most (the oldest essays). */
const MAX_CSV_ROWS = 20_000;
/** Assignments a page of GET /v1/assignments holds at most (and by default). */
const MAX_LIST_PAGE = 200;
/** Essays an export reads at a time (each page is sent before the next is read). */
const CSV_PAGE = 250;
/** An assignment's columns as toAssignment reads them. */
const ASSIGNMENT_COLUMNS = `id, title, prompt, rubric_key, rubric_version, language, escalate, pass_mark::float8 AS pass_mark,
  expected_length_min, expected_length_max, due_by, created_at`;

/** An essay as the grades sheet reads it: of its grade, only what the sheet shows. */
interface CsvRow {
  student_ref: string | null;
  title: string | null;
  status: string;
  graded_at: Date | null;
  grade: (Pick<StoredGrade, 'score' | 'maxScore' | 'summary' | 'source' | 'flags' | 'dimensions'> & { calibration?: { version: number } }) | null;
}

/** An assignment pins its rubric's version when it is created: later edits do not move its grades. */
@Injectable()
export class AssignmentsService {
  constructor(
    private readonly ds: DataSource,
    private readonly rubrics: RubricsService,
    private readonly tenants: TenantsRepository,
    private readonly clock: Clock,
    private readonly limits: LimitsService,
    private readonly jobs: JobQueue,
  ) {}

  async create(auth: TenantAuth, dto: CreateAssignmentDto): Promise<Assignment> {
    const rubric = await this.rubrics.resolve(auth.tenantId, dto.rubric);
    this.check(auth, dto, rubric);
    const mismatch = languageMismatch(rubric, dto.language);
    if (mismatch) throw ApiError.validation([{ field: 'language', message: mismatch }]);
    const language = dto.language ?? (rubric.language === 'any' ? detectLanguage(dto.prompt) : rubric.language);
    const id = randomUUID();
    // Assignments are kept (their essays and grades refer to them): a tenant's are bounded (`assignments`).
    // The answer is the row as written (RETURNING): a read after the commit could fail and free the
    // request's Idempotency-Key, and its retry would make a second assignment.
    const [row] = await this.limits.withinCount(
      auth.tenantId,
      'assignments',
      (max) => `This tenant has its limit of ${max} assignments; an operator can raise it`,
      (tx) =>
        tenantQuery<Record<string, string | number | Date | null>>(
          tx,
          auth.tenantId,
          `INSERT INTO assignments (tenant_id, id, title, prompt, rubric_key, rubric_version, language, created_by, escalate, pass_mark, expected_length_min, expected_length_max, due_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           RETURNING ${ASSIGNMENT_COLUMNS}`,
          [id, dto.title, dto.prompt, rubric.key, rubric.version, language, auth.keyId, dto.escalate ?? 'off', dto.passMark ?? null, dto.expectedLength?.min ?? null, dto.expectedLength?.max ?? null, dto.dueBy ? new Date(dto.dueBy).toISOString() : null],
        ),
    );
    return toAssignment(row);
  }

  /**
   * Changes how the assignment's grades are checked (escalate, passMark, expectedLength) and its
   * deadline (dueBy); null clears one. A new deadline reaches the gradings not done, in the same
   * transaction (JobQueue.moveDeadline): those waiting for a cheaper window are planned again at
   * once (moved earlier, or cleared, a wait could pass it); one running, or waiting in a provider
   * batch, keeps the plan it was sent on and carries the new deadline into any later attempt.
   */
  async update(auth: TenantAuth, id: string, dto: AssignmentQualityDto): Promise<Assignment> {
    const a = await this.get(auth.tenantId, id);
    this.check(auth, dto, await this.rubrics.resolve(auth.tenantId, a.rubric.key, a.rubric.version));
    const has = (k: keyof AssignmentQualityDto) => Object.prototype.hasOwnProperty.call(dto, k) && dto[k] !== undefined;
    await this.ds.transaction(async (tx) => {
      await tenantQuery(
        tx,
        auth.tenantId,
        `UPDATE assignments SET
          escalate = CASE WHEN $3 THEN $4 ELSE escalate END,
          pass_mark = CASE WHEN $5 THEN $6::numeric ELSE pass_mark END,
          expected_length_min = CASE WHEN $7 THEN $8::int ELSE expected_length_min END,
          expected_length_max = CASE WHEN $7 THEN $9::int ELSE expected_length_max END,
          due_by = CASE WHEN $10 THEN $11::timestamptz ELSE due_by END
        WHERE tenant_id = $1 AND id = $2`,
        [id, has('escalate'), dto.escalate ?? 'off', has('passMark'), dto.passMark ?? null, has('expectedLength'), dto.expectedLength?.min ?? null, dto.expectedLength?.max ?? null, dto.dueBy !== undefined, dto.dueBy ? new Date(dto.dueBy).toISOString() : null],
      );
      if (dto.dueBy !== undefined) await this.jobs.moveDeadline(tx, auth.tenantId, id, dto.dueBy ? new Date(dto.dueBy) : null);
    });
    return this.get(auth.tenantId, id);
  }

  private check(auth: TenantAuth, dto: AssignmentQualityDto, rubric: Rubric): void {
    // Escalating to the deep tier spends the school's budget on the premium model, for every
    // uncertain grade of the assignment: the tenant admin's decision, as the grading settings are.
    if (dto.escalate === 'deep' && auth.role !== 'admin') {
      throw new ApiError('FORBIDDEN', 'escalate "deep" grades uncertain essays again on the premium tier, paid from the budget: it needs an admin key (a teacher may set "flag")');
    }
    const top = maxScore(rubric);
    if (dto.passMark !== undefined && dto.passMark !== null && dto.passMark > top) {
      throw ApiError.validation([{ field: 'passMark', message: `passMark must be 0–${top} (the rubric's maximum)` }]);
    }
    if (dto.expectedLength && dto.expectedLength.min > dto.expectedLength.max) {
      throw ApiError.validation([{ field: 'expectedLength', message: 'expectedLength.min must not be above expectedLength.max' }]);
    }
    if (dto.dueBy) {
      const problem = deadlineProblem(dto.dueBy, this.clock.now());
      if (problem) throw ApiError.validation([{ field: 'dueBy', message: problem }]);
    }
  }

  async get(tenantId: string, id: string): Promise<Assignment> {
    if (!UUID.test(id)) throw ApiError.notFound('Assignment');
    const [row] = await tenantQuery<Record<string, string | number | Date | null>>(
      this.ds.manager,
      tenantId,
      `SELECT ${ASSIGNMENT_COLUMNS} FROM assignments WHERE tenant_id = $1 AND id = $2`,
      [id],
    );
    if (!row) throw ApiError.notFound('Assignment');
    return toAssignment(row);
  }

  /** The latest 200 assignments, each with its essays counted by status (one statement). */
  /** The tenant's assignments, newest first, `limit` (1-200, default 200) a page, with each one's essay counts. */
  async list(auth: TenantAuth, q: { limit?: string; cursor?: string } = {}): Promise<{ data: AssignmentSummary[]; nextCursor: string | null }> {
    const limit = pageLimit(q.limit, MAX_LIST_PAGE);
    const after: KeysetPosition | null = q.cursor !== undefined ? decodeCursor(q.cursor) : null;
    const rows = await tenantQuery<Record<string, string | number | Date | null>>(
      this.ds.manager,
      auth.tenantId,
      `SELECT a.id, a.title, a.prompt, a.rubric_key, a.rubric_version, a.language, a.escalate, a.pass_mark::float8 AS pass_mark,
              a.expected_length_min, a.expected_length_max, a.due_by, a.created_at,
              ${cursorAtSql('a.created_at')} AS cursor_at, c.*
         FROM (SELECT * FROM assignments
                WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $4) a
         LEFT JOIN LATERAL (
           SELECT count(*)::int AS total,
                  count(*) FILTER (WHERE status = 'queued')::int AS queued,
                  count(*) FILTER (WHERE status = 'grading')::int AS grading,
                  count(*) FILTER (WHERE status = 'graded')::int AS graded,
                  count(*) FILTER (WHERE status = 'failed')::int AS failed,
                  count(*) FILTER (WHERE status = 'needs_review')::int AS needs_review
             FROM essays e WHERE e.tenant_id = a.tenant_id AND e.assignment_id = a.id AND e.erased_at IS NULL
         ) c ON true
        ORDER BY a.created_at DESC, a.id DESC`,
      [after?.at ?? null, after?.id ?? null, limit + 1],
    );
    const page = keysetPage(rows, limit);
    return {
      data: page.rows.map((row) => ({
        ...toAssignment(row),
        counts: { total: Number(row.total), queued: Number(row.queued), grading: Number(row.grading), graded: Number(row.graded), failed: Number(row.failed), needs_review: Number(row.needs_review) },
      })),
      nextCursor: page.nextCursor,
    };
  }

  /**
   * The assignment's grades as CSV for Excel (UTF-8 with BOM): one row per essay, oldest first —
   * student, title, status, total and maximum, each dimension, the comment, who graded it (model,
   * offline, reused, teacher), the calibration version, flags, and when it was graded in the
   * tenant's time zone. At most 20,000 essays. The assignment is looked up first (another tenant's
   * is 404 before anything is sent); the sheet then comes a page of `pageSize` essays at a time, each
   * read when the one before has been taken (streamed to the client): a class whose comments run to
   * thousands of characters is never held whole in the process (built as one string, 10,000 essays
   * with 4,000-character comments ran a 192 MB heap out of memory).
   */
  async gradesCsv(tenantId: string, id: string, pageSize = CSV_PAGE): Promise<{ title: string; chunks: AsyncGenerator<string> }> {
    const a = await this.get(tenantId, id);
    const rubric = await this.rubrics.resolve(tenantId, a.rubric.key, a.rubric.version);
    const { timezone } = await this.tenants.budget(tenantId);
    const when = (d: Date | null) => {
      if (!d) return null;
      const p = localParts(d, timezone);
      return `${localDate(p)} ${String(p.hour).padStart(2, '0')}:${String(p.minute).padStart(2, '0')}`;
    };
    const header = ['studentRef', 'title', 'status', 'score', 'maxScore', ...rubric.dimensions.map((d) => d.name), 'comment', 'gradedBy', 'calibration', 'flags', `gradedAt (${timezone})`];
    const line = (r: CsvRow) => {
      const g = r.grade;
      const dims = new Map((g?.dimensions ?? []).map((d) => [d.key, d.score]));
      return [
        r.student_ref,
        r.title,
        r.status,
        g?.score ?? null,
        g?.maxScore ?? null,
        ...rubric.dimensions.map((d) => dims.get(d.key) ?? null),
        g?.summary ?? null,
        g?.source ?? null,
        g?.calibration?.version ?? null,
        (g?.flags ?? []).join(' '),
        when(r.graded_at),
      ];
    };
    const ds = this.ds;
    async function* chunks(): AsyncGenerator<string> {
      yield csvHeader(header);
      // Of each grade only what the sheet shows (not its annotations and comments).
      let after: KeysetPosition | null = null;
      for (let sent = 0; sent < MAX_CSV_ROWS; ) {
        const want = Math.min(pageSize, MAX_CSV_ROWS - sent);
        const page: Array<CsvRow & KeysetPosition> = await tenantQuery(
          ds.manager,
          tenantId,
          `SELECT e.id, e.created_at::text AS at, e.student_ref, e.title, e.status, e.graded_at,
                  CASE WHEN e.grade IS NOT NULL THEN jsonb_build_object(
                    'score', e.grade->'score', 'maxScore', e.grade->'maxScore', 'summary', e.grade->'summary', 'source', e.grade->'source',
                    'calibration', CASE WHEN jsonb_typeof(e.grade->'calibration') = 'object' THEN jsonb_build_object('version', e.grade->'calibration'->'version') END,
                    'flags', e.grade->'flags',
                    'dimensions', (SELECT jsonb_agg(jsonb_build_object('key', d->'key', 'score', d->'score'))
                                     FROM jsonb_array_elements(CASE jsonb_typeof(e.grade->'dimensions') WHEN 'array' THEN e.grade->'dimensions' ELSE '[]'::jsonb END) d)
                  ) END AS grade
             FROM essays e
            WHERE e.tenant_id = $1 AND e.assignment_id = $2 AND e.erased_at IS NULL
              AND ($3::timestamptz IS NULL OR (e.created_at, e.id) > ($3::timestamptz, $4::uuid))
            ORDER BY e.created_at, e.id LIMIT $5`,
          [id, after?.at ?? null, after?.id ?? null, want],
        );
        if (page.length) yield csvRows(page.map(line));
        sent += page.length;
        if (page.length < want) break;
        after = { at: page[page.length - 1].at, id: page[page.length - 1].id };
      }
    }
    return { title: a.title, chunks: chunks() };
  }

  /** The assignment with its essays counted by status and the distribution of their scores. */
  async detail(auth: TenantAuth, id: string): Promise<AssignmentDetail> {
    const a = await this.get(auth.tenantId, id);
    const rubric = await this.rubrics.resolve(auth.tenantId, a.rubric.key, a.rubric.version);
    const counts = await tenantQuery<{ status: string; n: number }>(
      this.ds.manager,
      auth.tenantId,
      `SELECT status, count(*)::int AS n FROM essays WHERE tenant_id = $1 AND assignment_id = $2 AND erased_at IS NULL GROUP BY status`,
      [id],
    );
    // The scores' figures are computed where they are (an assignment has no bound on its essays:
    // all its scores, read into this process, took 112 MB of heap for a million).
    const top = maxScore(rubric);
    const grid = bucketGrid(top, totalStep(rubric));
    // One read of the scores (a CTE used twice is computed once), each in its bucket as bucketOf places it.
    const [stats] = await tenantQuery<{ n: number; mean: number | null; median: number | null; min: number | null; max: number | null; buckets: Array<[number, number]> }>(
      this.ds.manager,
      auth.tenantId,
      `WITH x AS (SELECT (grade->>'score')::numeric::float8 AS s FROM essays
                   WHERE tenant_id = $1 AND assignment_id = $2 AND grade IS NOT NULL AND erased_at IS NULL AND grade->>'score' IS NOT NULL)
       SELECT count(*)::int AS n, avg(s) AS mean, percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median, min(s) AS min, max(s) AS max,
              (SELECT coalesce(json_agg(json_build_array(b, k)), '[]'::json)
                 FROM (SELECT least($4::int - 1, greatest(0, floor(s / $3::float8 + 1e-9)))::int AS b, count(*)::int AS k FROM x GROUP BY 1) g) AS buckets
         FROM x`,
      [id, grid.width, grid.buckets.length],
    );
    for (const [b, n] of stats.buckets) grid.buckets[b].count += n;
    const byStatus = Object.fromEntries(['queued', 'grading', 'graded', 'failed', 'needs_review'].map((s) => [s, 0]));
    for (const c of counts) byStatus[c.status] = c.n;
    const num = (v: number | null) => (v === null ? null : Number(v));
    return {
      ...a,
      maxScore: top,
      counts: { total: counts.reduce((n, c) => n + c.n, 0), ...byStatus },
      scores: {
        count: stats.n,
        mean: stats.n ? round2(Number(stats.mean)) : null,
        median: stats.n ? round2(Number(stats.median)) : null,
        min: num(stats.min),
        max: num(stats.max),
        distribution: grid.buckets,
      },
    };
  }
}

/**
 * At most ten buckets from 0 to the rubric's maximum, each a whole number of its score steps wide
 * (高考 60: 6 points; IELTS: a whole band, not 0.9 of one), so that no bucket boundary falls between
 * two marks the rubric can give. A bucket holds `from` ≤ score < `to`; the last one holds `to` too.
 */
export function scoreBuckets(top: number, step: number, scores: number[]): Array<{ from: number; to: number; count: number }> {
  const { width, buckets } = bucketGrid(top, step);
  for (const s of scores) buckets[bucketOf(s, width, buckets.length)].count++;
  return buckets;
}

/** The buckets of scoreBuckets, empty, and their width. */
export function bucketGrid(top: number, step: number): { width: number; buckets: Array<{ from: number; to: number; count: number }> } {
  const width = Math.max(step, Math.ceil(top / 10 / step - 1e-9) * step);
  const n = Math.max(1, Math.ceil(top / width - 1e-9));
  return { width, buckets: Array.from({ length: n }, (_, i) => ({ from: round2(width * i), to: round2(Math.min(top, width * (i + 1))), count: 0 })) };
}

/** A score's bucket (AssignmentsService.detail computes the same in SQL). */
function bucketOf(score: number, width: number, n: number): number {
  return Math.min(n - 1, Math.max(0, Math.floor(score / width + 1e-9)));
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function toAssignment(row: Record<string, string | number | Date | null>): Assignment {
  return {
    id: String(row.id),
    title: String(row.title),
    prompt: String(row.prompt),
    rubric: { key: String(row.rubric_key), version: Number(row.rubric_version) },
    language: row.language as 'zh' | 'en',
    escalate: row.escalate as Escalation,
    passMark: row.pass_mark === null ? null : Number(row.pass_mark),
    expectedLength: row.expected_length_min === null ? null : { min: Number(row.expected_length_min), max: Number(row.expected_length_max) },
    dueBy: row.due_by ? (row.due_by as Date).toISOString() : null,
    createdAt: (row.created_at as Date).toISOString(),
  };
}
