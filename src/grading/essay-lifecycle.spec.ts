import { ESSAY_STATUSES, isEssayStatus, movableFrom, TERMINAL, TRANSITIONS } from './essay-lifecycle';

describe('the essay lifecycle', () => {
  it('names every status once, with moves only between known statuses', () => {
    expect(new Set(ESSAY_STATUSES).size).toBe(ESSAY_STATUSES.length);
    for (const from of ESSAY_STATUSES) for (const to of TRANSITIONS[from]) expect(isEssayStatus(to)).toBe(true);
    expect(isEssayStatus('deleted')).toBe(false);
  });

  it('lets a final status be left only for another grade: a teacher override (to graded), a regrade (graded or needs_review)', () => {
    for (const s of TERMINAL) expect(TRANSITIONS[s].every((to) => to === 'graded' || to === 'needs_review')).toBe(true);
    expect(TRANSITIONS.failed).toEqual([]);
  });

  it('answers where each status can be reached from', () => {
    expect(movableFrom('grading').sort()).toEqual(['grading', 'queued']);
    expect(movableFrom('graded').sort()).toEqual(['graded', 'grading', 'needs_review']);
    expect(movableFrom('needs_review').sort()).toEqual(['graded', 'grading', 'needs_review']);
    expect(movableFrom('queued')).toEqual(['grading']);
    expect(movableFrom('failed').sort()).toEqual(['grading', 'queued']);
  });
});
