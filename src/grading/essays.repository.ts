import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { tenantQuery, tenantStatement, TenantStatement } from '../db/tenant-scope';
import type { InterruptedJob } from '../jobs/job-queue';
import { EssayStatus, movableFrom } from './essay-lifecycle';
import { gradedStatus } from './escalation';
import type { StoredGrade } from './grading-types';
import type { Language } from './rubric';

/** An essay as grading reads it when it takes it. */
export interface EssayRow {
  id: string;
  tenant_id: string;
  assignment_id: string | null;
  rubric_key: string;
  rubric_version: number;
  language: Language;
  tier: 'standard' | 'deep';
  title: string | null;
  student_ref: string | null;
  text: string;
  status: string;
  flags: string[];
  /** the API key that submitted it: the ledger's teacher for its model calls */
  submitted_by?: string | null;
  /** the essay's assignment: its prompt and what it says about grading (null without an assignment) */
  task: EssayTask | null;
}

/** An essay's assignment, as its grading reads it. */
export interface EssayTask {
  /** the essay prompt (作文题目) */
  prompt: string;
  escalate: 'off' | 'flag' | 'deep';
  passMark: number | null;
  expectedLength: { min: number; max: number } | null;
}

/** The essay's assignment as EssayRow reads it (`task`), one lookup, for a query over `essays e`. */
const ASSIGNMENT_OF_ESSAY = `(SELECT jsonb_build_object('prompt', a.prompt, 'escalate', a.escalate, 'passMark', a.pass_mark::float8,
               'expectedLength', CASE WHEN a.expected_length_min IS NULL THEN NULL
                                      ELSE jsonb_build_object('min', a.expected_length_min, 'max', a.expected_length_max) END)
          FROM assignments a WHERE a.tenant_id = e.tenant_id AND a.id = e.assignment_id) AS task`;

export interface NewEssay {
  id: string;
  text: string;
  language: Language;
  tier: 'standard' | 'deep';
  title: string | null;
  studentRef: string | null;
}

/** What a finished grading stores on the essay. */
export interface GradeOutcome {
  status: 'graded' | 'needs_review';
  grade: StoredGrade;
  flags: string[];
  costNanos: bigint;
  cache: string;
  similar: { essayId: string; similarity: number } | null;
}

/**
 * The essays aggregate (essays and their grade overrides): the only code that writes them. Every
 * status change goes through `move`, which allows only the moves of essay-lifecycle.ts. Methods
 * that take `tx` run inside the caller's transaction (with the job that ends or starts with them).
 */
@Injectable()
export class EssaysRepository {
  constructor(private readonly ds: DataSource) {}

  /**
   * Moves an essay to `to` (with the fields given), only from a status that may reach it. False when
   * the essay is not in such a status (or is not this tenant's): nothing was written.
   */
  private async move(tx: EntityManager, tenantId: string, essayId: string, to: EssayStatus, set: string, params: unknown[]): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `UPDATE essays SET status = $3, updated_at = now()${set ? `, ${set}` : ''}
        WHERE tenant_id = $1 AND id = $2 AND status = ANY($4::text[]) AND erased_at IS NULL RETURNING id`,
      [essayId, to, movableFrom(to), ...params],
    );
    return rows.length === 1;
  }

  /** The statement that stores essays as queued; the caller runs it with their jobs' (runAtomically). */
  insertQueuedStatement(tenantId: string, target: { assignmentId: string | null; rubricKey: string; rubricVersion: number; submittedBy: string }, essays: NewEssay[]): TenantStatement {
    return tenantStatement(
      tenantId,
      `INSERT INTO essays (tenant_id, id, assignment_id, rubric_key, rubric_version, language, tier, title, student_ref, text, status, submitted_by)
       SELECT $1, t.id, $2, $3, $4, t.language, t.tier, t.title, t.student_ref, t.text, 'queued', $5
         FROM unnest($6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) AS t(id, text, language, tier, title, student_ref)`,
      [
        target.assignmentId,
        target.rubricKey,
        target.rubricVersion,
        target.submittedBy,
        essays.map((e) => e.id),
        essays.map((e) => e.text),
        essays.map((e) => e.language),
        essays.map((e) => e.tier),
        essays.map((e) => e.title),
        essays.map((e) => e.studentRef),
      ],
    );
  }

  /** Takes the essay for grading (→ grading) and reads it, in one statement; null when it is not to be graded. */
  async startGrading(tx: EntityManager, tenantId: string, essayId: string): Promise<EssayRow | null> {
    const [row] = await tenantQuery<EssayRow>(
      tx,
      tenantId,
      `UPDATE essays e SET status = 'grading', updated_at = now()
        WHERE tenant_id = $1 AND id = $2 AND status = ANY($3::text[]) AND erased_at IS NULL
        RETURNING e.id, e.tenant_id, e.assignment_id, e.rubric_key, e.rubric_version, e.language, e.tier, e.title, e.student_ref,
                  e.text, e.status, e.flags, e.submitted_by,
                  ${ASSIGNMENT_OF_ESSAY}`,
      [essayId, movableFrom('grading')],
    );
    return row ?? null;
  }

  /** The essay a deep-review order is for, with the order's status and the standard grade it builds on. */
  async forOrder(tenantId: string, orderId: string): Promise<(EssayRow & { order_status: string; model_grade: StoredGrade | null }) | null> {
    const [row] = await tenantQuery<EssayRow & { order_status: string; model_grade: StoredGrade | null }>(
      this.ds.manager,
      tenantId,
      `SELECT o.status AS order_status, e.model_grade, e.id, e.tenant_id, e.assignment_id, e.rubric_key, e.rubric_version, e.language, e.tier, e.title,
              e.student_ref, e.text, e.status, e.flags, e.submitted_by, ${ASSIGNMENT_OF_ESSAY}
         FROM orders o JOIN essays e ON e.tenant_id = o.tenant_id AND e.id = o.essay_id
        WHERE o.tenant_id = $1 AND o.id = $2 AND e.erased_at IS NULL`,
      [orderId],
    );
    return row ?? null;
  }

  /** An essay as it is, with the grade it has (a shadow grading reads it; so does scheduling, before a grading starts). */
  async read(tenantId: string, essayId: string): Promise<(EssayRow & { model_grade: StoredGrade | null }) | null> {
    const [row] = await tenantQuery<EssayRow & { model_grade: StoredGrade | null }>(
      this.ds.manager,
      tenantId,
      `SELECT e.model_grade, e.id, e.tenant_id, e.assignment_id, e.rubric_key, e.rubric_version, e.language, e.tier, e.title,
              e.student_ref, e.text, e.status, e.flags, e.submitted_by, ${ASSIGNMENT_OF_ESSAY}
         FROM essays e WHERE e.tenant_id = $1 AND e.id = $2 AND e.erased_at IS NULL`,
      [essayId],
    );
    return row ?? null;
  }

  /** The essay's status alone (null: no such essay, or erased): what a live stream polls between events. */
  async statusOf(tenantId: string, essayId: string): Promise<string | null> {
    const [row] = await tenantQuery<{ status: string }>(this.ds.manager, tenantId, `SELECT status FROM essays WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL`, [essayId]);
    return row?.status ?? null;
  }

  /** The deep tier's shadow grade, kept beside the essay: compared with its grade, never shown as it. */
  async storeShadowGrade(tx: EntityManager, tenantId: string, essayId: string, grade: StoredGrade): Promise<void> {
    const rows = await tenantQuery(tx, tenantId, `UPDATE essays SET shadow_grade = $3 WHERE tenant_id = $1 AND id = $2 AND shadow_grade IS NULL AND erased_at IS NULL RETURNING model_grade`, [
      essayId,
      JSON.stringify(grade),
    ]);
    const [row] = rows as Array<{ model_grade: StoredGrade | null }>;
    if (row?.model_grade) await this.countAgreement(tx, tenantId, essayId, 'shadow', [{ grader: row.model_grade, other: grade, n: 1 }]);
  }

  /** Back to the queue: the grading will be tried again (a retry, or a stopping worker). */
  requeue(tx: EntityManager, tenantId: string, essayId: string): Promise<boolean> {
    return this.move(tx, tenantId, essayId, 'queued', '', []);
  }

  /** The grading's result: graded, or needing a teacher's review. */
  storeGrade(tx: EntityManager, tenantId: string, essayId: string, g: GradeOutcome): Promise<boolean> {
    return this.move(
      tx,
      tenantId,
      essayId,
      g.status,
      `grade = $5, model_grade = $5, flags = $6, cost_nanos = cost_nanos + $7, cache_status = $8,
       similar_essay_id = $9, similarity = $10, failure_code = NULL, failure_reason = NULL, graded_at = now()`,
      [JSON.stringify(g.grade), g.flags, g.costNanos.toString(), g.cache, g.similar?.essayId ?? null, g.similar?.similarity ?? null],
    );
  }

  /** The essay failed, and says why. */
  fail(tx: EntityManager, tenantId: string, essayId: string, code: string, reason: string, flags?: string[]): Promise<boolean> {
    return this.move(tx, tenantId, essayId, 'failed', `failure_code = $5, failure_reason = $6, flags = coalesce($7, flags)`, [code, reason.slice(0, 500), flags ?? null]);
  }

  /** Essays whose jobs' workers stopped on their last attempt fail (the queue's recovery). */
  async failInterrupted(tx: EntityManager, jobs: InterruptedJob[]): Promise<void> {
    for (const j of jobs.filter((x) => x.kind === 'grade')) {
      await this.fail(tx, j.tenantId, j.essayId, 'GRADING_FAILED', 'grading was interrupted too many times');
    }
  }

  /**
   * A regrade's grade for an essay no teacher overrode, with the flags and status it leaves the essay
   * in (needs_review while it carries a flag that holds it for a teacher): the grade and the
   * grader's original both become it (the raw scores stay inside, see calibration-model.ts). False
   * when the essay is not graded, a teacher overrode it meanwhile, or both are this grade already
   * (nothing written: a regrade counts the grades it changed).
   */
  async replaceGrade(tenantId: string, essayId: string, grade: StoredGrade, inForce?: { assignmentId: string; version: number | null }): Promise<'written' | 'unchanged' | 'calibration_changed'> {
    return this.ds.transaction(async (tx) => {
      if (inForce) {
        // The calibration the grade was made with must still be the one in force (a teacher may turn
        // it off, or fit another, while a regrade runs): read under a share lock, so that a change
        // waits for this write and the regrade's next write sees it.
        const [active] = await tenantQuery<{ version: number }>(
          tx,
          tenantId,
          `SELECT version FROM calibrations WHERE tenant_id = $1 AND assignment_id = $2 AND active FOR SHARE`,
          [inForce.assignmentId],
        );
        if ((active?.version ?? null) !== inForce.version) return 'calibration_changed';
      }
      const [old] = await tenantQuery<{ model_grade: StoredGrade | null; shadow_grade: StoredGrade | null; same: boolean }>(
        tx,
        tenantId,
        `SELECT model_grade, shadow_grade, (grade = $3::jsonb AND model_grade IS NOT DISTINCT FROM $3::jsonb) AS same FROM essays
          WHERE tenant_id = $1 AND id = $2 AND status IN ('graded', 'needs_review') AND grade->>'source' <> 'teacher' AND erased_at IS NULL FOR UPDATE`,
        [essayId, JSON.stringify(grade)],
      );
      if (!old || old.same) return 'unchanged';
      // The essay's flags and status are the grade's: a grade moved onto (or off) the pass mark is
      // held for (or no longer held for) a teacher's review, as a grading that gave it would be.
      const status = gradedStatus(new Set(grade.flags));
      await tenantQuery(
        tx,
        tenantId,
        `UPDATE essays SET grade = $3, model_grade = $3, flags = $4, status = $5, updated_at = now() WHERE tenant_id = $1 AND id = $2 AND status = ANY($6::text[])`,
        [essayId, JSON.stringify(grade), grade.flags, status, movableFrom(status)],
      );
      // A shadow pair compares the grader's grade: it moves with it.
      if (old.shadow_grade && old.model_grade) {
        await this.countAgreement(tx, tenantId, essayId, 'shadow', [
          { grader: old.model_grade, other: old.shadow_grade, n: -1 },
          { grader: grade, other: old.shadow_grade, n: 1 },
        ]);
      }
      return 'written';
    });
  }

  /** A paid deep review, kept beside the standard grade (the status does not change). */
  async storeDeepGrade(tx: EntityManager, tenantId: string, essayId: string, grade: StoredGrade, costNanos: bigint): Promise<void> {
    await tenantQuery(tx, tenantId, `UPDATE essays SET deep_grade = $3, cost_nanos = cost_nanos + $4, updated_at = now() WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL`, [
      essayId,
      JSON.stringify(grade),
      costNanos.toString(),
    ]);
  }

  /**
   * Essays past their tenant's retention (tenants.essay_retention_days), at most `limit`, leaving
   * out `skip` (those the sweep could not erase): the tenants in turn — each one's oldest, then each
   * one's second oldest, … — so that a tenant with a large backlog (a retention shortened on years of
   * essays) does not keep every other tenant's expired essays stored until it is through (oldest
   * first across tenants, it took every sweep). Across tenants by design: the retention sweep's read
   * (EssayRetention); each essay is then erased in its tenant's scope.
   */
  async pastRetention(limit: number, skip: string[] = []): Promise<Array<{ tenantId: string; id: string }>> {
    const rows: Array<{ tenant_id: string; id: string }> = await this.ds.query(
      `SELECT e.tenant_id, e.id
         FROM tenants t
        CROSS JOIN LATERAL (SELECT e.tenant_id, e.id, e.created_at, row_number() OVER (ORDER BY e.created_at, e.id) AS turn FROM essays e
                             WHERE e.tenant_id = t.id AND e.erased_at IS NULL AND e.id <> ALL($2::uuid[])
                               AND e.created_at < now() - make_interval(days => t.essay_retention_days)
                             ORDER BY e.created_at, e.id LIMIT $1) e
        WHERE t.essay_retention_days IS NOT NULL
        ORDER BY e.turn, e.created_at, e.id LIMIT $1`,
      [limit, skip],
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, id: r.id }));
  }

  /** Ids of the student's essays not erased yet, oldest first, at most `limit`. */
  async unerasedOfStudent(tenantId: string, studentRef: string, limit: number): Promise<string[]> {
    const rows = await tenantQuery<{ id: string }>(
      this.ds.manager,
      tenantId,
      `SELECT id FROM essays WHERE tenant_id = $1 AND student_ref = $2 AND erased_at IS NULL ORDER BY created_at, id LIMIT $3`,
      [studentRef, limit],
    );
    return rows.map((r) => r.id);
  }

  /** The essay, locked until the transaction ends (erasure); null when the tenant has no such essay. */
  /**
   * Whether the essay is there and not erased, its row then held against an erasure (which locks it
   * for update) until the caller's transaction ends.
   */
  async holdUnerased(tx: EntityManager, tenantId: string, essayId: string): Promise<boolean> {
    const rows = await tenantQuery(tx, tenantId, `SELECT 1 FROM essays WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL FOR KEY SHARE`, [essayId]);
    return rows.length > 0;
  }

  async lockForErasure(tx: EntityManager, tenantId: string, essayId: string): Promise<{ status: string; erased_at: Date | null } | null> {
    const [row] = await tenantQuery<{ status: string; erased_at: Date | null }>(
      tx,
      tenantId,
      `SELECT status, erased_at FROM essays WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
      [essayId],
    );
    return row ?? null;
  }

  /**
   * Erases the essay's personal data and keeps its tombstone: the text, title, student reference,
   * grades and failure reason are cleared and the teachers' overrides deleted (their comments are
   * about the student); what it cost, its flags and times stay, because the books and reports count
   * them. An essay erased before it was graded (queued, or left grading by a worker whose job went
   * back to the queue) is failed with ERASED. Returns when it was erased.
   */
  async erase(tx: EntityManager, tenantId: string, essayId: string, keyId: string | null): Promise<Date> {
    const [row] = await tenantQuery<{ erased_at: Date }>(
      tx,
      tenantId,
      `UPDATE essays SET text = '', title = NULL, student_ref = NULL, grade = NULL, model_grade = NULL, deep_grade = NULL, shadow_grade = NULL,
              failure_reason = CASE WHEN status IN ('queued', 'grading') THEN 'the essay was erased before it was graded' END,
              failure_code = CASE WHEN status IN ('queued', 'grading') THEN 'ERASED' ELSE failure_code END,
              status = CASE WHEN status IN ('queued', 'grading') THEN 'failed' ELSE status END,
              erased_at = now(), erased_by = $3, updated_at = now()
        WHERE tenant_id = $1 AND id = $2 RETURNING erased_at`,
      [essayId, keyId],
    );
    await tenantQuery(tx, tenantId, `DELETE FROM grade_overrides WHERE tenant_id = $1 AND essay_id = $2`, [essayId]);
    return row.erased_at;
  }

  /** The essay's status and current grade, locked until the transaction ends (an override reads, then writes). */
  async lockForOverride(
    tx: EntityManager,
    tenantId: string,
    essayId: string,
  ): Promise<{ status: string; grade: StoredGrade | null; model_grade: StoredGrade | null; erased_at: Date | null } | null> {
    const [row] = await tenantQuery<{ status: string; grade: StoredGrade | null; model_grade: StoredGrade | null; erased_at: Date | null }>(
      tx,
      tenantId,
      `SELECT status, grade, model_grade, erased_at FROM essays WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
      [essayId],
    );
    return row ?? null;
  }

  /**
   * A teacher's override: the new grade (the model's stays in model_grade), who changed what, and
   * the label it makes (agreement_cells: this grade against the grader's, replacing the label of an
   * earlier override of the essay).
   */
  async override(
    tx: EntityManager,
    tenantId: string,
    essayId: string,
    byKey: string,
    changes: unknown,
    grades: { before: StoredGrade; after: StoredGrade; grader: StoredGrade | null },
  ): Promise<boolean> {
    const { before, after, grader } = grades;
    const moved = await this.move(tx, tenantId, essayId, 'graded', 'grade = $5', [JSON.stringify(after)]);
    if (!moved) return false;
    await tenantQuery(
      tx,
      tenantId,
      `INSERT INTO grade_overrides (tenant_id, id, essay_id, api_key_id, changes, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [randomUUID(), essayId, byKey, JSON.stringify(changes), JSON.stringify(before), JSON.stringify(after)],
    );
    if (grader) {
      await this.countAgreement(tx, tenantId, essayId, 'teacher', [
        { grader, other: after, n: 1 },
        ...(before.source === 'teacher' ? [{ grader, other: before, n: -1 as const }] : []),
      ]);
    }
    return true;
  }

  /**
   * Counts pairs into the essay's agreement cells (a grader's grade against a teacher's, or
   * against the deep tier's shadow grade), for the total and each dimension, each with +1 or −1
   * (an override replaces an earlier one; a regrade moves the grader's side of a shadow pair).
   * A teacher's pair counts only the dimensions the teacher scored. The cells are keyed by the
   * essay's submission day in the tenant's time zone, its assignment, rubric, and the grader's
   * tier, model and source (read from the essay as it now is).
   */
  private async countAgreement(
    tx: EntityManager,
    tenantId: string,
    essayId: string,
    against: 'teacher' | 'shadow',
    changes: Array<{ grader: StoredGrade; other: StoredGrade; n: 1 | -1 }>,
  ): Promise<void> {
    const deltas = new Map<string, { dimension: string; a: number; b: number; n: number }>();
    const add = (dimension: string, a: number, b: number, n: number) => {
      const k = `${dimension}|${a}|${b}`;
      const cell = deltas.get(k) ?? { dimension, a, b, n: 0 };
      cell.n += n;
      deltas.set(k, cell);
    };
    for (const { grader, other, n } of changes) {
      // The grader's own scores (SPEC: the model's original grade): a calibrated grade's raw ones.
      const raw = grader.calibration;
      // The total is a pair only when the teacher set it: a comment alone, or one dimension of
      // several, leaves the model's total standing, which is no teacher's agreement with it.
      if (against !== 'teacher' || other.labelledTotal !== false) add('', raw ? raw.rawScore : grader.score, other.score, n);
      const labelled = against === 'teacher' ? new Set(other.labelledDimensions ?? []) : null;
      for (const d of grader.dimensions) {
        const o = other.dimensions.find((x) => x.key === d.key);
        const score = raw?.rawDimensions.find((x) => x.key === d.key)?.score ?? d.score;
        if (o && (!labelled || labelled.has(d.key))) add(d.key, score, o.score, n);
      }
    }
    const cells = [...deltas.values()].filter((c) => c.n !== 0);
    if (!cells.length) return;
    await tenantQuery(
      tx,
      tenantId,
      `INSERT INTO agreement_cells (tenant_id, against, day, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a, b, n)
       SELECT $1, $3, (e.created_at AT TIME ZONE t.timezone)::date, coalesce(e.assignment_id, '00000000-0000-0000-0000-000000000000'), e.rubric_key, e.rubric_version,
              coalesce(e.model_grade->>'tier', e.tier), coalesce(nullif(concat_ws(':', e.model_grade->>'provider', e.model_grade->>'model'), ''), 'offline'),
              coalesce(e.model_grade->>'source', 'model'), c.dimension, c.a, c.b, c.n
         FROM essays e JOIN tenants t ON t.id = e.tenant_id, unnest($4::text[], $5::numeric[], $6::numeric[], $7::int[]) AS c(dimension, a, b, n)
        WHERE e.tenant_id = $1 AND e.id = $2
       ON CONFLICT (tenant_id, against, day, assignment_id, rubric_key, rubric_version, tier, model, source, dimension, a, b)
       DO UPDATE SET n = agreement_cells.n + EXCLUDED.n`,
      [essayId, against, cells.map((c) => c.dimension), cells.map((c) => c.a), cells.map((c) => c.b), cells.map((c) => c.n)],
    );
  }

}
