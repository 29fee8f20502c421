import { generateEssay, nearCopy } from '../../test/support/essays';
import { bandBuckets, estimatedSimilarity, jaccard, minhash, shingles } from './near-duplicate';

describe('near-duplicate detection', () => {
  it('scores a copy with a few words changed near 0.85 or above, and unrelated essays on one topic below 0.1', () => {
    const a = generateEssay(7, 'zh').text;
    expect(jaccard(shingles(a), shingles(nearCopy(a, 1, 3)))).toBeGreaterThan(0.85);
    const unrelated = Array.from({ length: 20 }, (_, i) => shingles(generateEssay(100 + i, 'zh').text));
    for (let i = 1; i < unrelated.length; i++) expect(jaccard(unrelated[0], unrelated[i])).toBeLessThan(0.1);
  });

  it('ignores spacing and case', () => {
    expect(jaccard(shingles('Hello World, hello friends'), shingles('hello   world,HELLO friends'))).toBe(1);
  });

  it('estimates Jaccard with MinHash, and puts near copies in a shared LSH band', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const a = generateEssay(seed, seed % 2 ? 'zh' : 'en').text;
      const b = nearCopy(a, seed, 4);
      const sa = minhash(shingles(a));
      const sb = minhash(shingles(b));
      expect(Math.abs(estimatedSimilarity(sa, sb) - jaccard(shingles(a), shingles(b)))).toBeLessThan(0.15);
      const shared = bandBuckets(sa).filter((x, i) => x === bandBuckets(sb)[i]).length;
      expect(shared).toBeGreaterThan(0);
    }
  });

  it('rarely puts unrelated essays in a shared band', () => {
    const sigs = Array.from({ length: 40 }, (_, i) => bandBuckets(minhash(shingles(generateEssay(500 + i, 'zh').text))));
    let collisions = 0;
    for (let i = 0; i < sigs.length; i++) for (let j = i + 1; j < sigs.length; j++) if (sigs[i].some((x, k) => x === sigs[j][k])) collisions++;
    expect(collisions).toBeLessThan(5);
  });
});
