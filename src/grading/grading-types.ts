import type { Nanos } from '../common/money';
import type { Job } from '../jobs/job-queue';
import type { Tier } from '../llm/catalog';
import type { GradingSettingsRow } from '../tenancy/tenants.repository';
import type { GradeBody } from './grade-validation';

/** Grading's types: the stored grade, a grading's outcome, and the errors a worker handles. */

/** What a grade carries once calibrated: the version and the grader's own total and dimensions. */
export interface GradeCalibration {
  version: number;
  rawScore: number;
  rawDimensions: Array<{ key: string; score: number }>;
}

/** A grade as stored and shown: the body, where it came from, and what it cost. */
export interface StoredGrade extends GradeBody {
  model: string | null;
  provider: string | null;
  tier: Tier;
  cache: 'hit' | 'miss';
  cost: string;
  flags: string[];
  source: 'model' | 'offline' | 'reused' | 'teacher';
  promptVersion: string | null;
  rubric: { key: string; version: number };
  gradedAt: string;
  /** set when the assignment's calibration moved the grade: its version and the grader's own scores */
  calibration?: GradeCalibration;
  /** the model's first answer was invalid; this grade came from its repair */
  repaired?: boolean;
  /** a teacher's grade: the dimensions a teacher scored (the others are the grader's, carried over) */
  labelledDimensions?: string[];
  /**
   * a teacher's grade: whether its total is the teacher's — set by a teacher, or the sum of
   * dimensions a teacher scored every one of (in this override or earlier ones). A comment alone,
   * or a dimension or two, leaves the grader's total (a calibrated one, perhaps): not a label a
   * calibration learns from, or it would learn its own output.
   */
  labelledTotal?: boolean;
  /** work with a deadline: how it ran and what that saved against real time when it was submitted */
  schedule?: GradeSchedule;
}

/**
 * How scheduled work ran (off-peak scheduling): its deadline, the plan (now, batch, off_peak) and
 * what its provider calls cost less than the same usage at the real-time price of the moment it
 * was submitted (CNY, decimal string; "0.00" for a cache hit or an offline grade).
 */
export interface GradeSchedule {
  dueBy: string;
  mode: 'now' | 'batch' | 'off_peak';
  saved: string;
}

/** The schedule a job's provider calls run on: through the Batch API or not, compared with real time then. */
export interface CallSchedule {
  dueBy: Date;
  mode: GradeSchedule['mode'];
  batch: boolean;
  priceAsOf: Date;
  /** the model the plan was priced on: the call goes to it first */
  model: string;
}

export type GradingOutcome = { kind: 'done'; status: string } | { kind: 'failed'; code: string; reason: string };

/** A tenant's near-duplicate policy (GET/PUT /v1/grading/settings). */
export type GradingSettings = GradingSettingsRow;

/** Raised for a failure worth retrying later (every provider down for a deep review, say). */
export class RetryableGradingError extends Error {
  constructor(
    message: string,
    /** wait at least this long before the retry */
    readonly retryAfterMs = 0,
    /** the same paid call is still at a provider (a retry after a crash): the job must wait for it, not give up on it */
    readonly callInFlight = false,
    /** nothing was tried (what it read changed under it): the retry spends no attempt */
    readonly noAttempt = false,
  ) {
    super(message);
  }
}

/** One grading of an essay by a model, for the job that runs it. */
export interface GradingTask {
  /** its provider calls are paid once, and only while this job's lease is held */
  job: Job;
  signal?: AbortSignal;
  tier?: Tier;
  /** For a deep review: the standard grade it builds on (the premium model writes only the deep part). */
  base?: StoredGrade;
  /** a paid deep review, which can wait for the provider's Batch API */
  ordered?: boolean;
  /** the ledger purpose: a paid deep review, a re-grading on escalation, a shadow grading; absent, a grading (on either tier) */
  purpose?: 'deep_review' | 'escalation' | 'shadow';
  /** work with a deadline: the plan its calls run on (see GradingService.scheduleOf) */
  schedule?: CallSchedule;
}

export type ModelGrading = { kind: 'ok'; grade: StoredGrade; costNanos: Nanos } | { kind: 'failed'; code: string; reason: string };

/** This worker no longer holds the job (its lease ran out while it was starved): it must stop. */
export class LeaseLostError extends Error {}

/** The service is stopping and the job's paid call waits in a provider batch named on its guard: the job goes back to the queue for its retry to take the call over. */
export class HandedOverError extends Error {}

/**
 * The standard grade a paid deep review writes its commentary on, or undefined: one a model made
 * (or one reused from an earlier essay, which a model made). An offline estimate is no base — its
 * scores, kept under the premium model's name, were sold as the deep review's — so the review is a
 * full deep grade, as for an essay not yet graded.
 */
export function reviewBase(grade: StoredGrade | null | undefined): StoredGrade | undefined {
  return grade && grade.model !== null && (grade.source === 'model' || grade.source === 'reused') ? grade : undefined;
}
