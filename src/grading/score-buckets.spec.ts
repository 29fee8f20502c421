import { scoreBuckets } from './assignments.service';

describe('the score distribution of an assignment', () => {
  const edges = (b: Array<{ from: number; to: number }>) => b.map((x) => `${x.from}-${x.to}`);

  it('cuts 高考 60 into ten buckets of 6 points and IELTS into whole bands, never between two marks the rubric can give', () => {
    expect(edges(scoreBuckets(60, 1, []))).toEqual(['0-6', '6-12', '12-18', '18-24', '24-30', '30-36', '36-42', '42-48', '48-54', '54-60']);
    expect(edges(scoreBuckets(9, 0.5, []))).toEqual(['0-1', '1-2', '2-3', '3-4', '4-5', '5-6', '6-7', '7-8', '8-9']);
    // A small custom rubric: one bucket per mark; a maximum that is not a multiple of the width ends short.
    expect(edges(scoreBuckets(5, 1, []))).toEqual(['0-1', '1-2', '2-3', '3-4', '4-5']);
    expect(edges(scoreBuckets(25, 1, []))).toEqual(['0-3', '3-6', '6-9', '9-12', '12-15', '15-18', '18-21', '21-24', '24-25']);
  });

  it('counts each score once: the lower edge in, the upper out, the maximum in the last bucket', () => {
    const b = scoreBuckets(9, 0.5, [0, 5.5, 6, 6.5, 9, 8.5]);
    expect(b.map((x) => x.count)).toEqual([1, 0, 0, 0, 0, 1, 2, 0, 2]);
    expect(b.reduce((n, x) => n + x.count, 0)).toBe(6);
  });
});
