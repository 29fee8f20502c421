import type { StoredGrade } from './grading-types';
import { Rubric, totalStep } from './rubric';

/** Flags that make a grade low-confidence: the grader may have been steered, or graded a copy. */
const DOUBTFUL_FLAGS = ['prompt_injection_suspected', 'possible_copy'] as const;

/**
 * Why a standard grade is low-confidence (SPEC §9), or nothing: its answer needed a repair, its
 * total is within one step of the pass mark the teacher set, or it carries a doubtful flag.
 */
export function lowConfidence(grade: Pick<StoredGrade, 'score' | 'repaired'>, rubric: Rubric, flags: ReadonlySet<string>, passMark: number | null): string[] {
  const why: string[] = [];
  if (grade.repaired) why.push('repaired');
  if (passMark !== null && Math.abs(grade.score - passMark) <= totalStep(rubric) + 1e-9) why.push('near_pass_mark');
  for (const f of DOUBTFUL_FLAGS) if (flags.has(f)) why.push(f);
  return why;
}

/** Flags that hold a grade for a teacher's review: the essay is `needs_review` while it carries one. */
const REVIEW_FLAGS = ['prompt_injection_suspected', 'content_rejected', 'low_confidence'] as const;

/** The status a grade with these flags leaves its essay in. */
export function gradedStatus(flags: ReadonlySet<string>): 'graded' | 'needs_review' {
  return REVIEW_FLAGS.some((f) => flags.has(f)) ? 'needs_review' : 'graded';
}
