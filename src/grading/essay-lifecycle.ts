/**
 * The life of an essay: its statuses, which are final, and which moves are allowed. Every change of
 * an essay's status goes through EssaysRepository.move, which refuses any other.
 *
 *   queued ──► grading ──► graded ◄──┐ (a teacher's override; a regrade, both ways)
 *     ▲  │        │  └───► needs_review
 *     │  │        └──────► failed
 *     │  └──────────────► failed       (a dead worker's last attempt)
 *     └──── grading                     (a retry, or a shutdown that returns the job)
 */
export const ESSAY_STATUSES = ['queued', 'grading', 'graded', 'failed', 'needs_review'] as const;
export type EssayStatus = (typeof ESSAY_STATUSES)[number];

/** Statuses an essay does not leave by itself (a teacher's override still may). */
export const TERMINAL: ReadonlySet<EssayStatus> = new Set(['graded', 'failed', 'needs_review']);

/** Where an essay may go from each status. */
export const TRANSITIONS: Readonly<Record<EssayStatus, readonly EssayStatus[]>> = {
  queued: ['grading', 'failed'],
  // A worker that takes a job again after a crash finds the essay still grading.
  grading: ['grading', 'queued', 'graded', 'needs_review', 'failed'],
  // A regrade (a calibration, a pass mark changed) moves a grade onto or off the pass mark.
  graded: ['graded', 'needs_review'],
  needs_review: ['graded', 'needs_review'],
  failed: [],
};

/** The statuses from which an essay may reach `to`. */
export function movableFrom(to: EssayStatus): EssayStatus[] {
  return ESSAY_STATUSES.filter((from) => TRANSITIONS[from].includes(to));
}

export function isEssayStatus(s: unknown): s is EssayStatus {
  return (ESSAY_STATUSES as readonly unknown[]).includes(s);
}
