import { createHash } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { timeSlicer } from '../common/time-slice';
import { AssignmentsService } from '../grading/assignments.service';
import { calibrateGrade, CalibrationModel } from '../grading/calibration-model';
import { CalibrationRecord, CalibrationsRepository } from '../grading/calibrations.repository';
import { EssaysRepository } from '../grading/essays.repository';
import type { Escalation } from '../grading/dto/assignment.dto';
import { lowConfidence } from '../grading/escalation';
import type { StoredGrade } from '../grading/grading-types';
import { essayFeatures, featureVector } from '../grading/offline-features';
import { offlineGrade } from '../grading/offline-grader';
import { Language, maxScore, Rubric, totalStep, withExpectedLength } from '../grading/rubric';
import { RubricsService } from '../grading/rubrics.service';
import { agreement, Agreement, tabulate } from './agreement';
import { CalibrationLabel, fitCalibration } from './calibration';
import { QualityError } from './quality-errors';
import { LabelCursor, QualityRepository } from './quality.repository';
import { totalScale } from './quality.service';

/** A calibration is fitted from at least this many overridden essays of its source. */
export const MIN_LABELS = 20;
/** …and from at most this many (the newest): a fit reads their text for the offline features. */
const MAX_LABELS = 2_000;
/** Labels read from the database at a time (their texts, for offline grades, are dropped once their features are taken). */
export const LABELS_PAGE = 100;
const FOLDS = 5;
/** Essays a regrade reads and writes at a time. */
const CHUNK = 50;


export interface CalibrationView {
  assignmentId: string;
  version: number;
  essays: number;
  method: string;
  active: boolean;
  /** why it was not switched on (it did no better than no calibration) */
  reason?: string;
  before: Pick<Agreement, 'qwk' | 'exact' | 'adjacent'>;
  after: Pick<Agreement, 'qwk' | 'exact' | 'adjacent'>;
  createdAt: string;
}

/** Times a regrade starts again because the calibration in force changed under it, before it gives up (409). */
const MAX_REGRADE_RESTARTS = 3;

/** What POST /v1/assignments/:id/regrade answers: essays whose grade changed, and the calibration applied (null: none). */
export interface RegradeResult {
  essays: number;
  calibration: number | null;
}

const view = (c: CalibrationRecord, reason?: string): CalibrationView => ({
  assignmentId: c.assignmentId,
  version: c.version,
  essays: c.essays,
  method: c.method,
  active: c.active,
  ...(reason ? { reason } : {}),
  before: c.before as CalibrationView['before'],
  after: c.after as CalibrationView['after'],
  createdAt: c.createdAt,
});

const figures = (a: Agreement) => ({ qwk: a.qwk, exact: a.exact, adjacent: a.adjacent });

/**
 * Calibration from teachers (SPEC §9): fits, from an assignment's overridden essays, an isotonic
 * map for model grades and, for offline grades, a shift or a line from the offline grader's total
 * or (from 60 labels) a ridge regression over its features, whichever cross-validates best;
 * measures the result by 5-fold cross-validation against no calibration; switches it on only when
 * it agrees with the teachers better; and regrades the assignment with it.
 */
@Injectable()
export class CalibrationService {
  constructor(
    private readonly labelsRepo: QualityRepository,
    private readonly calibrations: CalibrationsRepository,
    private readonly essays: EssaysRepository,
    private readonly assignments: AssignmentsService,
    private readonly rubrics: RubricsService,
  ) {}

  private async target(tenantId: string, assignmentId: string): Promise<{ id: string; rubric: Rubric; checks: GradeChecks }> {
    const a = await this.assignments.get(tenantId, assignmentId);
    return {
      id: a.id,
      rubric: withExpectedLength(await this.rubrics.resolve(tenantId, a.rubric.key, a.rubric.version), a.expectedLength),
      checks: { escalate: a.escalate, passMark: a.passMark },
    };
  }

  async current(tenantId: string, assignmentId: string): Promise<CalibrationView> {
    await this.assignments.get(tenantId, assignmentId);
    const c = await this.calibrations.current(tenantId, assignmentId);
    if (!c) throw ApiError.notFound('Calibration');
    return view(c);
  }

  async remove(tenantId: string, assignmentId: string): Promise<void> {
    await this.assignments.get(tenantId, assignmentId);
    if (!(await this.calibrations.deactivate(tenantId, assignmentId))) throw ApiError.notFound('Calibration');
  }

  /**
   * Fits a calibration (see the class). It stops when `signal` aborts (its client left: the offline
   * labels' features are seconds of CPU for a large class, not spent for no one); nothing is saved.
   */
  async fit(auth: TenantAuth, assignmentId: string, signal?: AbortSignal): Promise<CalibrationView> {
    const { id, rubric } = await this.target(auth.tenantId, assignmentId);
    // The labels of standard grades made by a model or offline: what a calibration is applied to
    // (not deep-tier grades — escalated or direct — nor grades reused from an earlier essay).
    const labels = await this.labels(auth.tenantId, id, rubric, signal);
    const model = labels.filter((l) => l.source === 'model');
    const offline = labels.filter((l) => l.source === 'offline');
    if (model.length < MIN_LABELS && offline.length < MIN_LABELS) {
      throw new QualityError(
        'NOT_ENOUGH_LABELS',
        `A calibration needs at least ${MIN_LABELS} essays of the assignment that a teacher overrode, graded by a model or all offline; this one has ${model.length} graded by a model and ${offline.length} offline`,
        { needed: MIN_LABELS, model: model.length, offline: offline.length },
      );
    }
    const step = totalStep(rubric);
    const top = maxScore(rubric);
    const fit = fitCalibration(labels, {
      minLabels: MIN_LABELS,
      folds: FOLDS,
      // on the rubric's total steps and scale, as a grade would carry it
      agreement: (predicted, teacher) => agreement(tabulate(predicted.map((p, i) => [Math.max(0, Math.min(top, Math.round(p / step) * step)), teacher[i]])), totalScale(rubric)),
    });
    const { before, after, active: better } = fit;
    signal?.throwIfAborted();
    const saved = await this.calibrations.add(
      auth.tenantId,
      id,
      { method: fit.method, model: fit.model, essays: fit.essays, before: figures(before), after: figures(after), active: better },
      auth.keyId,
    );
    return view(
      saved,
      better ? undefined : `Not switched on: cross-validated, it agrees with the teachers no better (QWK ${after.qwk ?? 'undefined'}) than no calibration (QWK ${before.qwk ?? 'undefined'})`,
    );
  }

  /**
   * Applies the active calibration (none: the grader's own scores) to every graded essay of the
   * assignment that no teacher overrode, of the standard tier, graded by a model or offline:
   * offline grades are re-scored by today's offline grader, model grades re-mapped from their
   * stored raw scores. No model call, no cost. It stops when `signal` aborts (its client left:
   * re-scoring a large class's offline grades is seconds of CPU, not done for no one; what it wrote
   * stays, and a regrade again finishes the rest).
   */
  async regrade(auth: TenantAuth, assignmentId: string, signal?: AbortSignal): Promise<RegradeResult> {
    const { id, rubric, checks } = await this.target(auth.tenantId, assignmentId);
    let model = (await this.calibrations.current(auth.tenantId, id))?.model ?? null;
    // Each essay written: its grade before the regrade, and the one it leaves (digests): a grade a
    // first pass changed and a second put back (the calibration turned off between) is no change.
    const before = new Map<string, string>();
    const left = new Map<string, string>();
    // The calibration may be turned off or fitted again while the regrade runs: each write checks
    // that the one it applies is still in force, and when it is not, the regrade starts again from
    // the first essay with the one that is (what it wrote before is then put right too).
    for (let restarts = 0; ; restarts++) {
      if (restarts > MAX_REGRADE_RESTARTS) {
        throw new ApiError('CONFLICT', "The assignment's calibration kept changing while it was regraded: regrade again once it is settled", { assignmentId: id });
      }
      let after: { at: string; id: string } | null = null;
      let stale = false;
      for (;;) {
        signal?.throwIfAborted();
        const page = await this.labelsRepo.regradable(auth.tenantId, id, after, CHUNK);
        for (const e of page.rows) {
          signal?.throwIfAborted();
          const regraded = checked(this.regraded(e.grade, rubric, model, e), rubric, e.flags, checks);
          // (each write lets other requests in)
          const written = await this.essays.replaceGrade(auth.tenantId, e.id, regraded, { assignmentId: id, version: model?.version ?? null });
          if (written === 'calibration_changed') {
            stale = true;
            break;
          }
          if (written === 'written' && !before.has(e.id)) before.set(e.id, gradeDigest(e.grade));
          if (before.has(e.id)) left.set(e.id, gradeDigest(regraded));
        }
        if (stale || !page.next) break;
        after = page.next;
      }
      if (!stale) break;
      model = (await this.calibrations.current(auth.tenantId, id))?.model ?? null;
    }
    let changed = 0;
    for (const [essayId, was] of before) if (left.get(essayId) !== was) changed++;
    return { essays: changed, calibration: model?.version ?? null };
  }

  private regraded(grade: StoredGrade, rubric: Rubric, model: CalibrationModel | null, essay: { text: string; language: Language }): StoredGrade {
    const { calibration, ...uncalibrated } = grade;
    let raw: StoredGrade = uncalibrated;
    // (an essay of an `any` rubric is measured in its own language, as it was graded)
    const own = withExpectedLength(rubric, null, essay.language);
    if (grade.source === 'offline') raw = { ...uncalibrated, ...offlineGrade(essay.text, own, essay.language) };
    else if (calibration) {
      const scores = new Map(calibration.rawDimensions.map((d) => [d.key, d.score]));
      raw = { ...uncalibrated, score: calibration.rawScore, dimensions: grade.dimensions.map((d) => ({ ...d, score: scores.get(d.key) ?? d.score })) };
    }
    return model ? calibrateGrade(raw, own, model, essay) : raw;
  }

  /**
   * The assignment's newest labels, at most MAX_LABELS, read a page at a time: an offline label
   * keeps its feature vector, never its text, so a fit holds at most one page of texts (a tenant's
   * 2,000 essays of 20,000 characters each are 80 MB of text at once otherwise).
   */
  private async labels(tenantId: string, assignmentId: string, rubric: Rubric, signal?: AbortSignal): Promise<CalibrationLabel[]> {
    const out: CalibrationLabel[] = [];
    const slice = timeSlicer();
    let after: LabelCursor | null = null;
    do {
      signal?.throwIfAborted();
      const page = await this.labelsRepo.labelsPage(tenantId, assignmentId, after, Math.min(LABELS_PAGE, MAX_LABELS - out.length));
      for (const r of page.rows) {
        out.push({
          raw: r.raw,
          teacher: r.teacherScore,
          source: r.source,
          features: r.source === 'offline' ? featureVector(essayFeatures(r.text ?? '', r.language), withExpectedLength(rubric, null, r.language)) : null,
        });
        await slice(); // an essay's features take up to 25 ms: other requests are served between
        signal?.throwIfAborted();
      }
      after = page.next;
    } while (after && out.length < MAX_LABELS);
    return out;
  }
}

/** What the assignment says about checking its grades (SPEC §9, escalation). */
interface GradeChecks {
  escalate: Escalation;
  passMark: number | null;
}

/**
 * A regraded grade with the assignment's check made again, as its grading makes it: a grade the
 * regrade moved onto the pass mark is low-confidence (flag `low_confidence`, so its essay is
 * `needs_review`), one moved off it no longer is (the essay is `graded` unless another flag holds
 * it). With `escalate: deep` it is flagged too: a regrade makes no model call.
 */
function checked(grade: StoredGrade, rubric: Rubric, flags: string[], checks: GradeChecks): StoredGrade {
  const now = new Set(flags);
  const doubt = checks.escalate === 'off' ? [] : lowConfidence(grade, rubric, now, checks.passMark);
  if (doubt.length) now.add('low_confidence');
  else now.delete('low_confidence');
  return { ...grade, flags: [...now] };
}

/** A grade's digest, the same for the same grade whatever the order of its keys (as jsonb gives them back). */
function gradeDigest(grade: StoredGrade): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(grade))).digest('base64');
}
