import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { tenantQuery } from '../db/tenant-scope';
import { bandBuckets, jaccard, minhash, shingles } from './near-duplicate';

export interface NearDuplicate {
  essayId: string;
  similarity: number;
  studentRef: string | null;
  status: string;
  grade: unknown;
}

/**
 * The MinHash LSH index in PostgreSQL: one row per essay per band. Candidates are the tenant's
 * essays sharing a band bucket; each is then compared exactly (Jaccard of 5-gram shingles).
 */
@Injectable()
export class NearDuplicateIndex {
  constructor(private readonly ds: DataSource) {}

  /** Indexes the essay and returns the most similar earlier essay of the tenant, if any. */
  async indexAndFind(tenantId: string, essayId: string, text: string): Promise<NearDuplicate | null> {
    const mine = shingles(text);
    const buckets = bandBuckets(minhash(mine));
    const bands = buckets.map((_, i) => i);
    // One statement: index this essay's bands, and read the earlier essays sharing any of them.
    const candidates = await tenantQuery<{ id: string; text: string; student_ref: string | null; status: string; grade: unknown }>(
      this.ds.manager,
      tenantId,
      `WITH bands AS (SELECT * FROM unnest($3::smallint[], $4::bigint[]) AS t(b, k)),
       indexed AS (
         INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id) SELECT $1, b, k, $2 FROM bands ON CONFLICT DO NOTHING)
       SELECT e.id, e.text, e.student_ref, e.status, e.grade FROM essays e
        WHERE e.tenant_id = $1 AND e.id <> $2
          AND e.created_at <= (SELECT created_at FROM essays WHERE tenant_id = $1 AND id = $2)
          AND e.id IN (SELECT l.essay_id FROM essay_lsh l JOIN bands ON l.band = bands.b AND l.bucket = bands.k
                        WHERE l.tenant_id = $1 AND l.essay_id <> $2 LIMIT 200)`,
      [essayId, bands, buckets.map(String)],
    );
    let best: NearDuplicate | null = null;
    for (const c of candidates) {
      const similarity = jaccard(mine, shingles(c.text));
      if (!best || similarity > best.similarity) {
        best = { essayId: c.id, similarity, studentRef: c.student_ref, status: c.status, grade: c.grade };
      }
    }
    return best;
  }
}
