import { adjacentTolerance, agreement, quadraticWeightedKappa, tabulate } from './agreement';

/** Examples worked by hand (the arithmetic is in the comments), not by the code under test. */
describe('quadratic weighted kappa', () => {
  const scale = { step: 1, max: 4 };

  it('is 1 for perfect agreement', () => {
    expect(quadraticWeightedKappa(tabulate([[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]), scale)).toBeCloseTo(1, 12);
  });

  it('is −1 for agreement exactly inverted on a symmetric scale', () => {
    // a = 0..4, b = 4..0: O = Σ(a−b)² = 16+4+0+4+16 = 40; Σa=Σb=10, Σa²=Σb²=30
    // E = 30 + 30 − 2·10·10/5 = 20; κ = 1 − 40/20 = −1
    expect(quadraticWeightedKappa(tabulate([[0, 4], [1, 3], [2, 2], [3, 1], [4, 0]]), scale)).toBeCloseTo(-1, 12);
  });

  it('is 0 for agreement at chance (independent raters, every combination once)', () => {
    const pairs: Array<[number, number]> = [];
    for (const a of [0, 1, 2]) for (const b of [0, 1, 2]) pairs.push([a, b]);
    // O = Σ(a−b)² = 3·(0) + 4·1 + 2·4 = 12; Σa = Σb = 9, Σa² = Σb² = 15, n = 9
    // E = 15 + 15 − 2·81/9 = 12; κ = 1 − 12/12 = 0
    expect(quadraticWeightedKappa(tabulate(pairs), scale)).toBeCloseTo(0, 12);
  });

  it('matches a worked textbook-style example with partial agreement', () => {
    // pairs (a, b): (1,1) (2,2) (3,2) (4,3) (2,3) — step indices are the scores.
    // O = 0+0+1+1+1 = 3; Σa = 12, Σb = 11, Σa² = 34, Σb² = 27, n = 5
    // E = 34 + 27 − 2·12·11/5 = 61 − 52.8 = 8.2; κ = 1 − 3/8.2 = 0.634146…
    expect(quadraticWeightedKappa(tabulate([[1, 1], [2, 2], [3, 2], [4, 3], [2, 3]]), scale)).toBeCloseTo(1 - 3 / 8.2, 12);
  });

  it('counts on the scale\'s steps: half points are steps of their own', () => {
    // Same as the example above, in half points on a 0–2 scale: the kappa does not change.
    const halves = tabulate([[0.5, 0.5], [1, 1], [1.5, 1], [2, 1.5], [1, 1.5]]);
    expect(quadraticWeightedKappa(halves, { step: 0.5, max: 2 })).toBeCloseTo(1 - 3 / 8.2, 12);
  });

  it('is undefined when both raters give everyone the same score', () => {
    expect(quadraticWeightedKappa(tabulate([[3, 3], [3, 3]]), scale)).toBeNull();
    expect(quadraticWeightedKappa([], scale)).toBeNull();
  });
});

describe('agreement', () => {
  it('reports exact and adjacent agreement and the bias in points', () => {
    // 60-point scale, step 1: adjacent = within max(1, 6) = 6 points.
    const a = agreement(tabulate([[40, 40], [45, 40], [47, 40], [30, 36], [50, 60]]), { step: 1, max: 60 });
    expect(a.n).toBe(5);
    expect(a.exact).toBe(0.2); // only 40/40
    expect(a.adjacent).toBe(0.6); // 0, 5 and 6 apart; 7 and 10 are not
    expect(a.bias).toBe((0 + 5 + 7 - 6 - 10) / 5);
  });

  it('uses one step as the tolerance when 10% of the maximum is smaller', () => {
    expect(adjacentTolerance({ step: 1, max: 9 })).toBe(1);
    expect(adjacentTolerance({ step: 0.5, max: 9 })).toBe(0.9);
    const bands = agreement(tabulate([[6, 7], [6, 6.5], [7, 5.5]]), { step: 0.5, max: 9 });
    expect(bands.adjacent).toBeCloseTo(1 / 3, 4); // only the half band apart is adjacent
  });

  it('has no figures without labels', () => {
    expect(agreement([], { step: 1, max: 60 })).toEqual({ n: 0, qwk: null, exact: null, adjacent: null, bias: null });
  });

  it('gives no kappa for one essay (it would read 0, "no agreement", for a single disagreement), but its other figures', () => {
    expect(agreement(tabulate([[18, 21]]), { step: 1, max: 60 })).toEqual({ n: 1, qwk: null, exact: 0, adjacent: 1, bias: -3 });
    expect(agreement(tabulate([[18, 21], [30, 30]]), { step: 1, max: 60 }).qwk).not.toBeNull();
  });
});
