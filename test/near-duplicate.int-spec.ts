import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { bandBuckets, encodeSignature, fingerprint, signatureSimilarity } from '../src/grading/near-duplicate';
import { INDEX_LOCK_SQL, MAX_CANDIDATES, NearDuplicateIndex, REUSE_SIMILARITY } from '../src/grading/near-duplicate.service';
import { generateEssay, nearCopy } from './support/essays';
import { Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';
import { sessionsWaitingForLocks, withHeldTransactions } from './support/held-transactions';
import { waitFor } from './support/wait';
import { EssayErasure } from '../src/grading/essay-erasure.service';
import { serverUrl } from './support/test-database';

/**
 * The near-duplicate index on a real PostgreSQL: candidates come from the LSH bands, are compared
 * by the signatures stored when they were indexed (their texts are not read again), and at most
 * MAX_CANDIDATES of them, the nearest first, however many essays a tenant has.
 */
describe('near-duplicate index: stored signatures, bounded candidates (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let ds: DataSource;
  let index: NearDuplicateIndex;
  let tenant: TestTenant;

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    f = new Factory(t.app);
    ds = t.dataSource;
    index = t.app.get(NearDuplicateIndex);
  });
  afterAll(() => t.close());
  beforeEach(async () => {
    tenant = await f.newTenant();
  });

  /** Essays as submitted (queued), created `secondsAgo` before now; returns their ids in order. */
  async function addEssays(tenantId: string, texts: string[], secondsAgo = 60, ids = texts.map(() => randomUUID())): Promise<string[]> {
    await ds.query(
      `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status, created_at)
       SELECT id, $1, 'zh-gaokao-60', 1, 'zh', 'standard', text, 'queued', now() - make_interval(secs => $4)
         FROM unnest($2::uuid[], $3::text[]) AS e(id, text)`,
      [tenantId, ids, texts, secondsAgo],
    );
    return ids;
  }
  const addEssay = async (tenantId: string, text: string, secondsAgo = 60) => (await addEssays(tenantId, [text], secondsAgo))[0];
  const signatureRows = (essayId: string) => ds.query(`SELECT tenant_id, shingles FROM essay_signatures WHERE essay_id = $1`, [essayId]);

  it('compares candidates by the signatures stored when they were indexed, not by reading their texts again', async () => {
    const original = generateEssay(11, 'zh').text;
    const a = await addEssay(tenant.tenantId, original, 120);
    expect(await index.indexAndFind(tenant.tenantId, a, original)).toBeNull();
    // The stored text changes after indexing: the comparison does not see it.
    await ds.query(`UPDATE essays SET text = $2 WHERE id = $1`, [a, generateEssay(12, 'zh').text]);
    const copy = nearCopy(original, 2, 3);
    const b = await addEssay(tenant.tenantId, copy);
    const found = await index.indexAndFind(tenant.tenantId, b, copy);
    expect(found!.nearest).toMatchObject({ essayId: a, studentRef: null, status: 'queued' });
    expect(found!.nearest!.similarity).toBeGreaterThan(0.85);
    expect(await signatureRows(a)).toEqual([{ tenant_id: tenant.tenantId, shingles: fingerprint(original).shingles }]);
  });

  it('finds the nearest essay among thousands sharing one band with it, comparing at most MAX_CANDIDATES', async () => {
    const target = generateEssay(21, 'zh').text;
    const mine = fingerprint(target);
    const near = nearCopy(target, 5, 2);
    // The near copy's id sorts after every other, so a scan in index order meets it last.
    const nearId = await addEssays(tenant.tenantId, [near], 120, ['ffffffff-ffff-4fff-bfff-ffffffffffff']).then(([id]) => id);
    await index.indexAndFind(tenant.tenantId, nearId, near);
    // 1,500 copies of an unrelated essay that an LSH collision put in the target's bucket of band 0.
    const unrelated = generateEssay(22, 'zh').text;
    const ids = await addEssays(tenant.tenantId, Array(1_500).fill(unrelated), 120);
    const decoy = fingerprint(unrelated);
    await ds.query(`INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id) SELECT $1, 0, $2, unnest($3::uuid[])`, [
      tenant.tenantId,
      String(bandBuckets(mine.minhash)[0]),
      ids,
    ]);
    await ds.query(
      `INSERT INTO essay_signatures (tenant_id, essay_id, minhash, shingles) SELECT $1, * FROM unnest($2::uuid[], $3::bytea[], $4::int[])`,
      [tenant.tenantId, ids, ids.map(() => encodeSignature(decoy.minhash)), ids.map(() => decoy.shingles)],
    );

    const me = await addEssay(tenant.tenantId, target);
    const found = await index.indexAndFind(tenant.tenantId, me, target);
    expect(found!.nearest).toMatchObject({ essayId: nearId });
    expect(found!.nearest!.similarity).toBeGreaterThan(0.85);
    const candidates = await index.index(tenant.tenantId, me, mine); // indexed already: nothing changes
    expect(candidates.length).toBe(MAX_CANDIDATES);
    expect(candidates[0]).toMatchObject({ essayId: nearId });
    expect(candidates[0].bands).toBeGreaterThan(1);
    for (const c of candidates.slice(1)) expect(c.bands).toBe(1);
  });

  /** `n` copies of `text` in the tenant, indexed as indexing would have (written in three statements, not n indexings). */
  async function indexedCopies(text: string, n: number, secondsAgo: number): Promise<string[]> {
    const p = fingerprint(text);
    const buckets = bandBuckets(p.minhash);
    const ids = await addEssays(tenant.tenantId, Array(n).fill(text), secondsAgo);
    await ds.query(
      `INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id)
       SELECT $1, b.band, b.bucket, e.id FROM unnest($2::smallint[], $3::bigint[]) AS b(band, bucket) CROSS JOIN unnest($4::uuid[]) AS e(id)`,
      [tenant.tenantId, buckets.map((_, i) => i), buckets.map(String), ids],
    );
    await ds.query(`INSERT INTO essay_signatures (tenant_id, essay_id, minhash, shingles) SELECT $1, unnest($2::uuid[]), $3, $4`, [tenant.tenantId, ids, encodeSignature(p.minhash), p.shingles]);
    return ids;
  }

  it('a tenant with 3,000 identical essays: one more is compared with 50 of them, in bounded time', async () => {
    const text = generateEssay(31, 'en').text;
    const p = fingerprint(text);
    await indexedCopies(text, 3_000, 120);

    const me = await addEssay(tenant.tenantId, text);
    const started = performance.now();
    const candidates = await index.index(tenant.tenantId, me, p);
    const ms = performance.now() - started;
    expect(candidates).toHaveLength(MAX_CANDIDATES);
    expect(new Set(candidates.map((c) => c.essayId)).size).toBe(MAX_CANDIDATES);
    for (const c of candidates) expect(c.bands).toBe(32);
    // Generous: a bounded read (≤ 32 × CANDIDATES_PER_BAND index entries, not 32 × 3,000) takes milliseconds.
    expect(ms).toBeLessThan(2_000);
    const found = await index.indexAndFind(tenant.tenantId, me, text);
    expect(found?.nearest?.similarity).toBe(1);
  });

  it('computes the signature of an essay indexed before signatures were stored, once, from its text', async () => {
    const original = generateEssay(41, 'zh').text;
    const a = await addEssay(tenant.tenantId, original, 120);
    await index.indexAndFind(tenant.tenantId, a, original);
    await ds.query(`DELETE FROM essay_signatures WHERE essay_id = $1`, [a]); // as before the migration
    const b = await addEssay(tenant.tenantId, nearCopy(original, 1, 2), 90);
    const first = await index.indexAndFind(tenant.tenantId, b, nearCopy(original, 1, 2));
    expect(first!.nearest).toMatchObject({ essayId: a });
    expect(first!.nearest!.similarity).toBeGreaterThan(0.85);
    expect(await signatureRows(a)).toEqual([{ tenant_id: tenant.tenantId, shingles: fingerprint(original).shingles }]);
    // Stored now: the text is not read for it again.
    await ds.query(`UPDATE essays SET text = 'x' WHERE id = $1`, [a]);
    const c = await addEssay(tenant.tenantId, original);
    const second = await index.indexAndFind(tenant.tenantId, c, original);
    expect(second!.nearest!.similarity).toBeGreaterThan(0.85);
  });

  it("finds a student's own earlier version when another student's copy is nearer, and only a graded one of the same student", async () => {
    // A model essay everyone copies: student A handed in a copy with a word changed; B the essay as is.
    const model = generateEssay(61, 'zh').text;
    const mineBefore = nearCopy(model, 3, 1);
    expect(signatureSimilarity(fingerprint(model), fingerprint(mineBefore))).toBeGreaterThanOrEqual(REUSE_SIMILARITY);
    const insert = async (text: string, studentRef: string, status: string, secondsAgo: number) => {
      const [{ id }] = await ds.query(
        `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status, student_ref, grade, created_at)
         VALUES ($7, $1, 'zh-gaokao-60', 1, 'zh', 'standard', $2, $3, $4, $5, now() - make_interval(secs => $6)) RETURNING id`,
        [tenant.tenantId, text, status, studentRef, status === 'graded' ? { score: 40, by: studentRef } : null, secondsAgo, randomUUID()],
      );
      await index.indexAndFind(tenant.tenantId, id, text);
      return id as string;
    };
    const ownEarlier = await insert(mineBefore, 'student-a', 'graded', 300);
    const theirs = await insert(model, 'student-b', 'graded', 200);
    // A hands in the model essay itself now: B's copy is the nearest (identical), A's own is found too.
    const resubmission = await insert(model, 'student-a', 'queued', 0);
    await ds.query(`DELETE FROM essay_lsh WHERE essay_id = $1`, [resubmission]); // indexed again below
    const found = await index.indexAndFind(tenant.tenantId, resubmission, model, 'student-a');
    expect(found!.nearest).toMatchObject({ essayId: theirs, similarity: 1, studentRef: 'student-b' });
    expect(found!.earlierOwn).toMatchObject({ essayId: ownEarlier, grade: { score: 40, by: 'student-a' } });
    // Another student, or no student named: nothing of A's is offered.
    expect((await index.indexAndFind(tenant.tenantId, resubmission, model, 'student-c'))!.earlierOwn).toBeNull();
    expect((await index.indexAndFind(tenant.tenantId, resubmission, model))!.earlierOwn).toBeNull();
    // A's earlier version not graded (still queued, or failed): not offered either.
    await ds.query(`UPDATE essays SET status = 'failed' WHERE id = $1`, [ownEarlier]);
    expect((await index.indexAndFind(tenant.tenantId, resubmission, model, 'student-a'))!.earlierOwn).toBeNull();
  });

  it("finds a student's own earlier version among 3,000 other students' identical copies, though every band's sample holds only theirs", async () => {
    const text = generateEssay(63, 'zh').text;
    const copies = await indexedCopies(text, 3_000, 600);
    // The student's own graded copy, its id after every other (each bucket is sampled in id order).
    const own = 'ffffffff-ffff-4fff-bfff-ffffffffffff';
    await ds.query(
      `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status, student_ref, grade, created_at)
       VALUES ($1, $2, 'zh-gaokao-60', 1, 'zh', 'standard', $3, 'graded', 'student-own', $4, now() - interval '5 minutes')`,
      [own, tenant.tenantId, text, { score: 44 }],
    );
    await index.indexAndFind(tenant.tenantId, own, text, 'student-own');
    // Twenty essays of the student's since, still queued (not indexed): the earlier version is found all the same.
    const queued = await addEssays(tenant.tenantId, Array.from({ length: 20 }, (_, i) => generateEssay(700 + i, 'zh').text), 60);
    await ds.query(`UPDATE essays SET student_ref = 'student-own' WHERE id = ANY($1::uuid[])`, [queued]);
    // Handed in again with a full stop added.
    const again = text + '。';
    const [resubmission] = await addEssays(tenant.tenantId, [again], 0);
    await ds.query(`UPDATE essays SET student_ref = 'student-own' WHERE id = $1`, [resubmission]);
    const found = await index.indexAndFind(tenant.tenantId, resubmission, again, 'student-own');
    expect(found!.earlierOwn).toMatchObject({ essayId: own, grade: { score: 44 } });
    expect(found!.nearest!.essayId).not.toBe(own);
    expect(copies).toContain(found!.nearest!.essayId);
  });

  // (Two transactions at once: on a PostgreSQL server; the embedded one runs one at a time.)
  (serverUrl() ? it : it.skip)("erases an essay while an indexing of the tenant writes its bands: each waits for the other in turn, never in a circle", async () => {
    const text = generateEssay(64, 'zh').text;
    const essay = await addEssay(tenant.tenantId, text);
    await ds.query(`UPDATE essays SET status = 'graded', grade = '{"score": 30}' WHERE id = $1`, [essay]);
    await withHeldTransactions(ds, 1, async ([indexing]) => {
      // A worker whose lease ran out indexes the essay: it holds the tenant's index lock…
      await indexing.query(INDEX_LOCK_SQL, [tenant.tenantId]);
      const erasing = t.app.get(EssayErasure).eraseFor(tenant.tenantId, essay, null, 'request');
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) === 1, 10_000, 'the erasure waiting');
      // …and writes the essay's bands, which need the essay's row.
      await indexing.query(`INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id) VALUES ($1, 0, 1, $2)`, [tenant.tenantId, essay]);
      await indexing.commitTransaction();
      expect((await erasing).again).toBe(false);
    });
    // The erasure came after the indexing: the bands it wrote are gone with the essay.
    expect(await ds.query(`SELECT 1 FROM essay_lsh WHERE essay_id = $1`, [essay])).toEqual([]);
    expect((await ds.query(`SELECT text, erased_at IS NOT NULL AS erased FROM essays WHERE id = $1`, [essay]))[0]).toEqual({ text: '', erased: true });
  });

  it("does not take a student's own earlier version for a copy: the nearest is another student's, or none", async () => {
    const text = generateEssay(62, 'zh').text;
    const insert = async (body: string, studentRef: string | null, status: string) => {
      const [{ id }] = await ds.query(
        `INSERT INTO essays (id, tenant_id, rubric_key, rubric_version, language, tier, text, status, student_ref, grade)
         VALUES ($6, $1, 'zh-gaokao-60', 1, 'zh', 'standard', $2, $3, $4, $5) RETURNING id`,
        [tenant.tenantId, body, status, studentRef, status === 'graded' ? { score: 30 } : null, randomUUID()],
      );
      return id as string;
    };
    const draft = await insert(text, 'student-d', 'graded');
    await index.indexAndFind(tenant.tenantId, draft, text, 'student-d');
    // D hands in a revised draft: no copy, but the earlier grade is there to reuse.
    const revised = nearCopy(text, 2, 1);
    const second = await insert(revised, 'student-d', 'queued');
    const mine = await index.indexAndFind(tenant.tenantId, second, revised, 'student-d');
    expect(mine!.nearest).toBeNull();
    expect(mine!.earlierOwn).toMatchObject({ essayId: draft, grade: { score: 30 } });
    // E hands in a near copy of D's: D's essays are E's nearest.
    const copy = nearCopy(text, 3, 1);
    const e = await insert(copy, 'student-e', 'queued');
    const theirs = await index.indexAndFind(tenant.tenantId, e, copy, 'student-e');
    expect([draft, second]).toContain(theirs!.nearest!.essayId);
    expect(theirs!.nearest!.studentRef).toBe('student-d');
    expect(theirs!.earlierOwn).toBeNull();
  });

  it("never compares another tenant's essays", async () => {
    const text = generateEssay(51, 'zh').text;
    const other = await f.newTenant();
    const theirs = await addEssay(other.tenantId, text, 120);
    await index.indexAndFind(other.tenantId, theirs, text);
    const mine = await addEssay(tenant.tenantId, text, 60);
    expect(await index.indexAndFind(tenant.tenantId, mine, text)).toBeNull();
    expect((await signatureRows(mine))[0].tenant_id).toBe(tenant.tenantId);
  });

  it('finds two near copies whichever of them is graded first: the later-submitted one graded first is found by the earlier one', async () => {
    const text = generateEssay(52, 'zh').text;
    const [earlier, later] = await addEssays(tenant.tenantId, [text, nearCopy(text, 3, 1)], 60);
    await ds.query(`UPDATE essays SET created_at = created_at + interval '1 second' WHERE id = $1`, [later]);
    expect(await index.indexAndFind(tenant.tenantId, later, nearCopy(text, 3, 1))).toBeNull();
    expect(await index.indexAndFind(tenant.tenantId, earlier, text)).toMatchObject({ nearest: { essayId: later } });
  });

  it('a class set of near copies indexed all at once by workers of two instances: every one but the first indexed finds another', async () => {
    const text = generateEssay(53, 'zh').text;
    const copies = Array.from({ length: 8 }, (_, i) => nearCopy(text, 2, i + 1));
    const ids = await addEssays(tenant.tenantId, copies, 60);
    // Two instances on one database: only the database's lock keeps them apart.
    const instances = [index, new NearDuplicateIndex(ds)];
    const found = await Promise.all(ids.map((id, i) => instances[i % 2].indexAndFind(tenant.tenantId, id, copies[i])));
    expect(found.filter((x) => x === null)).toHaveLength(1);
    for (const [i, x] of found.entries()) if (x) expect(ids.filter((id) => id !== ids[i])).toContain(x.nearest!.essayId);
  });

  it("an indexing that fails (its essay gone) writes nothing, and the tenant's next indexing still takes its turn", async () => {
    const text = generateEssay(55, 'zh').text;
    const gone = randomUUID(); // deleted between its job's claim and its indexing
    const [mine] = await addEssays(tenant.tenantId, [nearCopy(text, 5, 1)], 60);
    const [failed, next] = await Promise.allSettled([index.indexAndFind(tenant.tenantId, gone, text), index.indexAndFind(tenant.tenantId, mine, nearCopy(text, 5, 1))]);
    expect(failed.status).toBe('rejected');
    expect(String((failed as PromiseRejectedResult).reason)).toMatch(/foreign key/);
    expect(next).toEqual({ status: 'fulfilled', value: null });
    expect(await ds.query(`SELECT 1 FROM essay_lsh WHERE essay_id = $1 UNION ALL SELECT 1 FROM essay_signatures WHERE essay_id = $1`, [gone])).toEqual([]);
    expect(await signatureRows(mine)).toHaveLength(1);
  });

  (serverUrl() ? it : it.skip)("one instance's workers indexing a tenant's class set hold one pooled connection waiting on the tenant's lock, not one each", async () => {
    const text = generateEssay(54, 'zh').text;
    const ids = await addEssays(tenant.tenantId, [0, 1, 2, 3, 4].map((i) => nearCopy(text, 4, i + 1)), 60);
    const waiting = async () =>
      Number(
        (await ds.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()`))[0].n,
      );
    // Another instance holds the tenant's lock.
    const holder = ds.createQueryRunner();
    await holder.startTransaction();
    try {
      await holder.query(INDEX_LOCK_SQL, [tenant.tenantId]);
      const all = Promise.all(ids.map((id, i) => index.indexAndFind(tenant.tenantId, id, nearCopy(text, 4, i + 1))));
      const until = Date.now() + 10_000;
      while ((await waiting()) < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 300));
      expect(await waiting()).toBe(1);
      await holder.commitTransaction();
      expect((await all).filter((x) => x === null)).toHaveLength(1);
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
  });
});
