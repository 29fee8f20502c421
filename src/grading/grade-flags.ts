/**
 * Every flag a grading can set on an essay, and what it means. The console has a message for each
 * (console/src/i18n.spec.ts checks it). No imports: the console's type check reads this file too.
 */
export const GRADE_FLAGS = {
  possible_copy: 'very similar to another essay of the tenant (near-duplicate index)',
  reused_grade: "a resubmission with trivial edits took the same student's earlier grade, at no cost",
  prompt_injection_suspected: 'the essay holds instructions aimed at the grader; they were ignored (needs_review)',
  content_rejected: "the provider refused the essay's content (needs_review)",
  offline_estimate: 'graded by the offline grader, at no cost',
  too_short: 'under a tenth of the expected length: estimated offline rather than by a model',
  other_language: "written in another language than it is graded in (its assignment's or rubric's): a teacher should look at it",
  budget_exhausted: 'the budget was used up (with offline_estimate)',
  providers_unavailable: 'every provider failed (with offline_estimate)',
  truncated: 'longer than the model reads: its middle was cut, head and tail graded',
  low_confidence: 'near the pass mark, repaired, or flagged: a teacher should check it (needs_review)',
  escalated: 'graded again on the deep tier because the standard grade was uncertain',
} as const;

/** A flag's name. */
export type GradeFlag = keyof typeof GRADE_FLAGS;

/**
 * The flags that tell how a grade was made (not what the text is): a grade reused for a
 * resubmission carries them, with the review it asks for (an offline estimate of content a
 * provider refused stays one), unless a teacher's override made the grade theirs.
 */
export const HOW_GRADED_FLAGS: readonly GradeFlag[] = ['content_rejected', 'offline_estimate', 'too_short', 'budget_exhausted', 'providers_unavailable', 'truncated', 'low_confidence', 'escalated'];
