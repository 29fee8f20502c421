import { generateEssay, nearCopy } from '../../test/support/essays';
import {
  bandBuckets,
  decodeSignature,
  encodeSignature,
  estimatedSimilarity,
  fingerprint,
  jaccard,
  minhash,
  PERMUTATIONS,
  shingles,
  SIGNATURE_BYTES,
  signatureSimilarity,
} from './near-duplicate';

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

  describe('stored signatures', () => {
    it('round-trip through 512 bytes; anything else is not a signature', () => {
      const sig = minhash(shingles(generateEssay(3, 'en').text));
      const bytes = encodeSignature(sig);
      expect(bytes).toHaveLength(SIGNATURE_BYTES);
      expect(SIGNATURE_BYTES).toBe(PERMUTATIONS * 4);
      expect(decodeSignature(bytes)).toEqual(sig);
      expect(bytes.readUInt32BE(4)).toBe(sig[1]); // big-endian, the same on every machine
      for (const bad of [null, undefined, Buffer.alloc(0), bytes.subarray(0, 508), Buffer.concat([bytes, Buffer.alloc(4)])]) {
        expect(decodeSignature(bad)).toBeNull();
      }
    });

    it('estimate Jaccard within 0.05 of the exact value on near copies, and put the e2e cases on the right side of 0.95', () => {
      let worst = 0;
      for (let seed = 1; seed <= 16; seed++) {
        const a = generateEssay(seed, seed % 2 ? 'zh' : 'en').text;
        for (const edits of [1, 3, 6]) {
          const b = nearCopy(a, seed + edits, edits);
          worst = Math.max(worst, Math.abs(signatureSimilarity(fingerprint(a), fingerprint(b)) - jaccard(shingles(a), shingles(b))));
        }
        // Unrelated essays on one topic (the English generator's share ~0.2 of their 5-grams).
        const other = generateEssay(seed + 700, seed % 2 ? 'zh' : 'en').text;
        const unrelated = signatureSimilarity(fingerprint(a), fingerprint(other));
        expect(unrelated).toBeLessThan(0.35);
        expect(Math.abs(unrelated - jaccard(shingles(a), shingles(other)))).toBeLessThan(0.1); // < 3 standard errors at J = 0.2
      }
      expect(worst).toBeLessThan(0.05);
      // test/grading.e2e-spec.ts: a near copy is flagged (≥ 0.5) and a trivial resubmission reused (≥ 0.95).
      for (const [seed, copySeed, edits] of [
        [6, 2, 3],
        [8, 3, 1],
        [8, 5, 1],
        [7, 3, 1],
      ]) {
        const a = generateEssay(seed, 'zh').text;
        expect(signatureSimilarity(fingerprint(a), fingerprint(nearCopy(a, copySeed, edits)))).toBeGreaterThanOrEqual(0.95);
      }
    });

    it('never exceed what the set sizes allow, and treat empty texts as alike only to each other', () => {
      const a = generateEssay(9, 'zh').text;
      const twice = `${a}${generateEssay(10, 'zh').text}`;
      const fa = fingerprint(a);
      const fb = fingerprint(twice);
      const bound = Math.min(fa.shingles, fb.shingles) / Math.max(fa.shingles, fb.shingles);
      expect(signatureSimilarity(fa, fb)).toBeLessThanOrEqual(bound);
      expect(signatureSimilarity(fa, fa)).toBe(1);
      // Slots that happen to agree more than the sizes allow are clipped to the bound.
      expect(signatureSimilarity({ minhash: fa.minhash, shingles: 100 }, { minhash: fa.minhash, shingles: 400 })).toBe(0.25);
      const empty = fingerprint('   ');
      expect(empty.shingles).toBe(0);
      expect(signatureSimilarity(empty, fingerprint(''))).toBe(1);
      expect(signatureSimilarity(empty, fa)).toBe(0);
    });
  });
});
