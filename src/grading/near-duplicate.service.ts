import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { rowsOf, tenantQuery } from '../db/tenant-scope';
import { bandBuckets, decodeSignature, encodeSignature, Fingerprint, fingerprint, signatureSimilarity } from './near-duplicate';

export interface NearDuplicate {
  /**
   * The most similar earlier essay of another student (or either essay names no student): what a
   * possible copy is measured against. A student's own earlier version is no copy (a resubmission,
   * a revised draft): it is `earlierOwn`. Null when every candidate is the student's own.
   */
  nearest: { essayId: string; similarity: number; studentRef: string | null; status: string } | null;
  /**
   * The same student's earlier essay at REUSE_SIMILARITY or more, graded, the nearest of those
   * (it may be the nearest essay itself): what a resubmission may take its grade from. A student's
   * copy of a model essay many have handed in has its nearest twin in another student's hands;
   * the student's own earlier version is found all the same.
   */
  earlierOwn: { essayId: string; similarity: number; grade: unknown } | null;
}

/** A resubmission whose text is at least this similar to the same student's graded essay may take its grade. */
export const REUSE_SIMILARITY = 0.95;
/**
 * And at least this share of the other's length, in characters, either way: shingle sets do not see
 * repetition (an essay pasted twice holds the same shingles as once, and took its grade).
 */
export const REUSE_LENGTH_RATIO = 0.9;

/** An earlier essay sharing at least one LSH band with the one being indexed. */
export interface Candidate extends Fingerprint {
  essayId: string;
  /** how many of the 32 bands the two share: the nearer, the more */
  bands: number;
}

/** At most this many candidates are compared per essay, those sharing the most bands first. */
export const MAX_CANDIDATES = 50;
/**
 * At most this many essays are read from one band's bucket. A bucket holds every essay that agrees
 * on that band's four signature rows: with thousands of identical essays, thousands. Reading a
 * bounded sample of each of the 32 buckets bounds the database's work per essay (≤ 32 × 64 index
 * entries and essay lookups) as MAX_CANDIDATES bounds the comparisons; an essay sharing many
 * bands is in many samples, and a bucket only overflows with essays that agree on that band
 * anyway. The price: an essay indexed after 64 others identical in a band may not see, in that
 * band, an older twin (it shares the other bands with it).
 */
export const CANDIDATES_PER_BAND = 64;
/** A named student's newest essays compared with each of theirs, besides the LSH candidates (NearDuplicateIndex.ownRecent). */
export const OWN_RECENT = 16;
/** …the first OWN_RECENT indexed among the student's this many newest (those still queued are not indexed yet): a bounded read. */
const OWN_RECENT_READ = 64;
/** Essays indexed before signatures were stored have theirs computed from the text this many at a time. */
const BACKFILL_CHUNK = 10;
/** Taken in the transaction that indexes an essay ($1 the tenant): that tenant's essays are indexed one at a time. */
export const INDEX_LOCK_SQL = `SELECT pg_advisory_xact_lock(hashtextextended('essay_lsh:' || $1, 0))`;

/**
 * The MinHash LSH index in PostgreSQL: one row per essay per band (essay_lsh), and each essay's
 * signature (essay_signatures). Candidates are the tenant's essays already indexed that share a
 * band bucket; at most MAX_CANDIDATES of them, the nearest first, are compared with this essay by
 * signature.
 *
 * Essays are indexed when they are graded, and a class set's essays are graded side by side. So
 * that two near copies are found whatever order they are graded in, and even when their workers
 * index them in the same millisecond, a tenant's essays are indexed one at a time (a transaction
 * advisory lock per tenant, held for the one statement that indexes and looks up): whichever of
 * two is indexed second sees the first, earlier or later submitted. Other tenants never wait.
 *
 * Why signatures and not exact Jaccard of stored shingle sets: a signature is 512 bytes whatever
 * the essay's length, where a shingle set grows with it (up to ~1 MB for a 256 KiB essay), so
 * comparing stays 50 × 128 integer comparisons and one small read. The estimate's standard error
 * is ≤ 0.044 (≈ 0.02 near the 0.95 resubmission line, 0.011 RMS on the near copies of the test
 * corpus); a flag at 0.5 is a hint for the teacher, and a grade reused at 0.95 is only for the same
 * student's resubmission of an essay already graded, which the teacher can override. That error
 * is not worth storing (and reading) each essay's whole shingle set.
 */
@Injectable()
export class NearDuplicateIndex {
  /**
   * Each tenant's last indexing in this instance: the next one starts after it, so that one
   * tenant's class set never holds more than one pooled connection waiting on its lock.
   */
  private readonly turns = new Map<string, Promise<void>>();

  constructor(private readonly ds: DataSource) {}

  /**
   * Indexes the essay and returns the most similar earlier essay of another student, if any, with
   * the student's own nearest graded one when it is at REUSE_SIMILARITY or more (see NearDuplicate).
   */
  async indexAndFind(tenantId: string, essayId: string, text: string, studentRef: string | null = null): Promise<NearDuplicate | null> {
    const mine = fingerprint(text);
    const candidates: Array<Fingerprint & { essayId: string }> = await this.index(tenantId, essayId, mine);
    // The student's own newest essays are compared too, whether or not the buckets' samples hold them.
    if (studentRef) {
      const seen = new Set(candidates.map((c) => c.essayId));
      candidates.push(...(await this.ownRecent(tenantId, essayId, studentRef)).filter((c) => !seen.has(c.essayId)));
    }
    const compared = candidates.map((c) => ({ essayId: c.essayId, similarity: signatureSimilarity(mine, c) })).sort((a, b) => b.similarity - a.similarity);
    if (compared.length === 0) return null;
    const best = compared[0];
    // Without a student: the nearest essay. For a named student, every candidate's student (at most
    // MAX_CANDIDATES, one read by key): the nearest of another student, and the grades of the
    // student's own graded ones near enough to be a resubmission — written for the same work: the
    // same assignment (or none) on the same rubric version. (A grade of another rubric was reused
    // as it was: another scale and dimensions the teacher could not override, and the agreement
    // figures compared a 7 out of 9 with the teacher's 70 out of 100. A grade of another tier too:
    // a deep essay took a standard grade, the premium review asked for never made.)
    const ids = studentRef ? compared.map((c) => c.essayId) : [best.essayId];
    const rows = await tenantQuery<{ id: string; student_ref: string | null; status: string; grade: unknown }>(
      this.ds.manager,
      tenantId,
      `SELECT e.id, e.student_ref, e.status,
              CASE WHEN e.student_ref = $3 AND e.status IN ('graded', 'needs_review') AND e.rubric_key = me.rubric_key
                        AND e.rubric_version = me.rubric_version AND e.assignment_id IS NOT DISTINCT FROM me.assignment_id
                        AND e.tier = me.tier
                        AND least(char_length(e.text), char_length(me.text)) >= $5::float8 * greatest(char_length(e.text), char_length(me.text))
                   THEN e.grade END AS grade
         FROM essays e
         LEFT JOIN essays me ON me.tenant_id = $1 AND me.id = $4
        WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[]) AND e.erased_at IS NULL`,
      [ids, studentRef, essayId, REUSE_LENGTH_RATIO],
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const isOwn = (r: { student_ref: string | null }) => studentRef !== null && r.student_ref === studentRef;
    const other = compared.find((c) => byId.has(c.essayId) && !isOwn(byId.get(c.essayId)!));
    const own = compared.find((c) => {
      const r = byId.get(c.essayId);
      return c.similarity >= REUSE_SIMILARITY && r && isOwn(r) && r.grade;
    });
    if (!other && !own) return null;
    const o = other ? byId.get(other.essayId)! : null;
    return {
      nearest: other && o ? { ...other, studentRef: o.student_ref, status: o.status } : null,
      earlierOwn: own ? { ...own, grade: byId.get(own.essayId)!.grade } : null,
    };
  }

  /**
   * The student's OWN_RECENT newest other essays that are indexed, with their signatures (one read
   * along the student's index). A model essay handed in by hundreds fills every band's sample of
   * CANDIDATES_PER_BAND with other students' copies (the lowest ids), and the student's own earlier
   * version — what a resubmission may take its grade from — was then not among the candidates.
   */
  private async ownRecent(tenantId: string, essayId: string, studentRef: string): Promise<Array<Fingerprint & { essayId: string }>> {
    const rows = await tenantQuery<{ essay_id: string; minhash: Buffer; shingles: number }>(
      this.ds.manager,
      tenantId,
      `SELECT e.id AS essay_id, s.minhash, s.shingles
         FROM (SELECT id, created_at FROM essays WHERE tenant_id = $1 AND student_ref = $2 AND id <> $3 AND erased_at IS NULL ORDER BY created_at DESC LIMIT $5) e
         JOIN essay_signatures s ON s.tenant_id = $1 AND s.essay_id = e.id
        ORDER BY e.created_at DESC LIMIT $4`,
      [studentRef, essayId, OWN_RECENT, OWN_RECENT_READ],
    );
    const out: Array<Fingerprint & { essayId: string }> = [];
    for (const r of rows) {
      const minhash = decodeSignature(r.minhash);
      if (minhash) out.push({ essayId: r.essay_id, minhash, shingles: r.shingles });
    }
    return out;
  }

  /** Takes the tenant's index lock in `tx` until it ends (after any indexing of the tenant under way has committed). */
  async holdIndex(tx: EntityManager, tenantId: string): Promise<void> {
    await tx.query(INDEX_LOCK_SQL, [tenantId]);
  }

  /**
   * The essay was erased: its bands and signature go, in the erasure's transaction, after any
   * indexing of the tenant under way has committed (the index's lock), so that no later essay is
   * compared with it.
   */
  async forget(tx: EntityManager, tenantId: string, essayId: string): Promise<void> {
    await this.holdIndex(tx, tenantId);
    await tenantQuery(tx, tenantId, `DELETE FROM essay_lsh WHERE tenant_id = $1 AND essay_id = $2`, [essayId]);
    await tenantQuery(tx, tenantId, `DELETE FROM essay_signatures WHERE tenant_id = $1 AND essay_id = $2`, [essayId]);
  }

  /** Bands and signatures of essays erased in the last `hours` (indexed by a grading that outlived its lease); across tenants by design (EssayRetention's cleanup). */
  async forgetErased(tx: EntityManager, hours: number): Promise<number> {
    const lsh: unknown = await tx.query(
      `DELETE FROM essay_lsh l USING essays e WHERE e.erased_at > now() - make_interval(hours => $1) AND l.tenant_id = e.tenant_id AND l.essay_id = e.id RETURNING 1`,
      [hours],
    );
    const signatures: unknown = await tx.query(
      `DELETE FROM essay_signatures s USING essays e WHERE e.erased_at > now() - make_interval(hours => $1) AND s.tenant_id = e.tenant_id AND s.essay_id = e.id RETURNING 1`,
      [hours],
    );
    return rowsOf(lsh).length + rowsOf(signatures).length;
  }

  /**
   * Indexes the essay (its bands and its signature) and returns the candidates it is compared
   * with: the tenant's other indexed essays sharing a band, at most MAX_CANDIDATES, most shared
   * bands first, each with its stored signature. Indexing again (a retried job) adds nothing.
   */
  async index(tenantId: string, essayId: string, mine: Fingerprint): Promise<Candidate[]> {
    const rows = await this.inTurn(tenantId, () =>
      this.ds.transaction(async (m) => {
        // One essay of this tenant at a time: the statement below starts after the last one committed.
        await m.query(INDEX_LOCK_SQL, [tenantId]);
        return this.indexAndLookUp(m, tenantId, essayId, mine);
      }),
    );
    const out: Candidate[] = [];
    const unsigned: Array<{ essayId: string; bands: number }> = [];
    for (const r of rows) {
      const minhash = decodeSignature(r.minhash);
      if (minhash && r.shingles !== null) out.push({ essayId: r.essay_id, bands: r.bands, minhash, shingles: r.shingles });
      else unsigned.push({ essayId: r.essay_id, bands: r.bands });
    }
    if (unsigned.length) out.push(...(await this.backfill(tenantId, unsigned)));
    return out.sort((a, b) => b.bands - a.bands || (a.essayId < b.essayId ? -1 : 1));
  }

  /** The one statement: stores the essay's bands and signature, and reads the candidates sharing its bands. */
  private indexAndLookUp(m: EntityManager, tenantId: string, essayId: string, mine: Fingerprint) {
    const buckets = bandBuckets(mine.minhash);
    return tenantQuery<{ essay_id: string; bands: number; minhash: Buffer | null; shingles: number | null }>(
      m,
      tenantId,
      `WITH bands AS (SELECT * FROM unnest($3::smallint[], $4::bigint[]) AS t(b, k)),
       indexed AS (
         INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id) SELECT $1, b, k, $2 FROM bands ON CONFLICT DO NOTHING),
       signed AS (
         INSERT INTO essay_signatures (tenant_id, essay_id, minhash, shingles) VALUES ($1, $2, $5, $6) ON CONFLICT DO NOTHING),
       hits AS (
         SELECT x.essay_id FROM bands CROSS JOIN LATERAL (
           SELECT l.essay_id FROM essay_lsh l
            WHERE l.tenant_id = $1 AND l.band = bands.b AND l.bucket = bands.k AND l.essay_id <> $2 LIMIT $7) x),
       nearest AS (
         SELECT h.essay_id, count(*)::int AS bands FROM hits h JOIN essays e ON e.tenant_id = $1 AND e.id = h.essay_id
          GROUP BY h.essay_id ORDER BY bands DESC, h.essay_id LIMIT $8)
       SELECT n.essay_id, n.bands, s.minhash, s.shingles
         FROM nearest n LEFT JOIN essay_signatures s ON s.tenant_id = $1 AND s.essay_id = n.essay_id
        ORDER BY n.bands DESC, n.essay_id`,
      [essayId, buckets.map((_, i) => i), buckets.map(String), encodeSignature(mine.minhash), mine.shingles, CANDIDATES_PER_BAND, MAX_CANDIDATES],
    );
  }

  /** Runs `fn` after this tenant's indexing before it in this instance, whether that succeeded or not. */
  private inTurn<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.turns.get(tenantId) ?? Promise.resolve()).then(fn);
    // What the next one waits for: settles when this one does, and never rejects.
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(tenantId, settled);
    void settled.then(() => {
      if (this.turns.get(tenantId) === settled) this.turns.delete(tenantId);
    });
    return run;
  }

  /**
   * Candidates indexed before signatures were stored: their signatures are computed from their
   * texts, a few at a time, and stored, so each essay's text is read for this once.
   */
  private async backfill(tenantId: string, missing: Array<{ essayId: string; bands: number }>): Promise<Candidate[]> {
    const out: Candidate[] = [];
    for (let i = 0; i < missing.length; i += BACKFILL_CHUNK) {
      const chunk = missing.slice(i, i + BACKFILL_CHUNK);
      const texts = await tenantQuery<{ id: string; text: string }>(
        this.ds.manager,
        tenantId,
        `SELECT id, text FROM essays WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND erased_at IS NULL`,
        [chunk.map((c) => c.essayId)],
      );
      const bands = new Map(chunk.map((c) => [c.essayId, c.bands]));
      const computed = texts.map((t) => ({ essayId: t.id, bands: bands.get(t.id)!, ...fingerprint(t.text) }));
      if (!computed.length) continue;
      await tenantQuery(
        this.ds.manager,
        tenantId,
        `INSERT INTO essay_signatures (tenant_id, essay_id, minhash, shingles)
         SELECT $1, s.essay_id, s.minhash, s.shingles FROM unnest($2::uuid[], $3::bytea[], $4::int[]) AS s(essay_id, minhash, shingles)
         ON CONFLICT DO NOTHING`,
        [computed.map((c) => c.essayId), computed.map((c) => encodeSignature(c.minhash)), computed.map((c) => c.shingles)],
      );
      out.push(...computed);
    }
    return out;
  }
}
