import { EssaysRepository } from '../src/grading/essays.repository';
import { builtinRubric, totalScore, totalStep } from '../src/grading/rubric';
import { LabelCursor, QualityRepository } from '../src/quality/quality.repository';
import { CalibrationService } from '../src/quality/calibration.service';
import { CalibrationsRepository } from '../src/grading/calibrations.repository';
import { GradingService } from '../src/grading/grading.service';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { keptAndBackfilled } from './support/agreement-cells';
import { waitForEssays } from './support/grading';
import { createTestApp, TestApp } from './support/test-app';
import { serverUrl } from './support/test-database';

/**
 * Calibration from teachers (SPEC §9) through the HTTP API on a real database, with the offline
 * grader (no provider configured): fit from overrides, cross-validated before/after, refused when
 * it would do worse, applied to new gradings and by a regrade, turned off.
 */
describe('quality: calibration from teachers (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;
  const rubric = builtinRubric('zh-gaokao-60')!;

  beforeAll(async () => {
    t = await createTestApp({ WORKER_POLL_MS: '50', WORKER_CONCURRENCY: '8' });
    f = new Factory(t.app);
    tenant = await f.newTenant({ monthlyBudget: '10.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });
  afterAll(async () => {
    await t.close();
  });

  async function assignmentWith(n: number, seed: number): Promise<{ id: string; views: any[] }> {
    const id = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: `A${seed}`, prompt: '以“成长”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const text = generateEssay(seed + i, 'zh', { targetChars: 300 + ((i * 137) % 1100) }).text;
      ids.push((await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: id, essays: [{ text }] }).expect(202)).body.ids[0]);
    }
    const views = await waitForEssays(t.app, teacher, ids);
    expect(views.every((v) => v.status === 'graded' && v.grade.source === 'offline')).toBe(true);
    // the assignment list counts its essays by status
    const listed = (await t.http.get('/v1/assignments').set(bearer(teacher)).expect(200)).body.data.find((a: { id: string }) => a.id === id);
    expect(listed.counts).toEqual({ total: n, queued: 0, grading: 0, graded: n, failed: 0, needs_review: 0 });
    return { id, views };
  }
  const override = (id: string, score: number) => t.http.patch(`/v1/essays/${id}/grade`).set(bearer(teacher)).send({ score }).expect(200);
  /** A strict teacher whose score follows the essay's length, on a scale the grader does not use. */
  const strict = (text: string) => Math.max(0, Math.min(60, Math.round(10 + text.length / 60)));
  const expectConsistent = (g: any) => {
    expect(g.score).toBe(totalScore(rubric, Object.fromEntries(g.dimensions.map((d: any) => [d.key, d.score]))));
    for (const d of g.dimensions) expect(d.score).toBeGreaterThanOrEqual(0);
    for (const d of g.dimensions) expect(d.score).toBeLessThanOrEqual(d.max);
  };

  it('refuses with 422 NOT_ENOUGH_LABELS under 20 overridden essays, and 404 for another tenant', async () => {
    const { id, views } = await assignmentWith(6, 100);
    for (const v of views.slice(0, 5)) await override(v.id, strict(v.text));
    const res = await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(422);
    expect(res.body.error.code).toBe('NOT_ENOUGH_LABELS');
    expect(res.body.error.message).toMatch(/at least 20/);
    await t.http.get(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(404);
    const other = await f.newTenant();
    await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(other.adminKey)).expect(404);
    await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(other.adminKey)).expect(404);
  });

  it('fits from the overrides, switches on when it agrees better, grades new essays with it, regrades the rest, and turns off', async () => {
    const { id, views } = await assignmentWith(66, 200);
    const labelled = views.slice(0, 60);
    for (const v of labelled) await override(v.id, strict(v.text));
    const fit = await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201);
    expect(fit.body).toMatchObject({ assignmentId: id, version: 1, essays: 60, method: 'ridge', active: true });
    expect(fit.body.after.qwk).toBeGreaterThan(fit.body.before.qwk);
    expect((await t.http.get(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(200)).body.version).toBe(1);

    // A new essay of the assignment is graded with it; the grader's own total is kept.
    const text = generateEssay(999, 'zh', { targetChars: 1200 }).text;
    const [fresh] = await waitForEssays(t.app, teacher, [(await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId: id, text }).expect(202)).body.id]);
    expect(fresh.grade.calibration).toMatchObject({ version: 1 });
    expect(typeof fresh.grade.calibration.rawScore).toBe('number');
    expectConsistent(fresh.grade);

    // A regrade whose client has left stops where it is (here before its first essay: nothing written).
    const gone = new AbortController();
    gone.abort(new Error('the client left'));
    // …and so does a fit: nothing saved, the calibration in force still the first.
    await expect(t.app.get(CalibrationService).fit(tenant.admin, id, gone.signal)).rejects.toThrow('the client left');
    expect((await t.http.get(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(200)).body.version).toBe(1);
    await expect(t.app.get(CalibrationService).regrade(tenant.admin, id, gone.signal)).rejects.toThrow('the client left');
    expect((await t.http.get(`/v1/essays/${views[61].id}`).set(bearer(teacher)).expect(200)).body.grade.calibration).toBeUndefined();

    // Regrade: the six graded essays no teacher overrode change (the new one was graded with this
    // calibration already: unchanged, not counted); overridden ones stay the teacher's.
    const regrade = await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202);
    expect(regrade.body).toEqual({ essays: 6, calibration: 1 });
    for (const v of views.slice(60)) {
      const after = (await t.http.get(`/v1/essays/${v.id}`).set(bearer(teacher)).expect(200)).body;
      expect(after.grade.calibration.version).toBe(1);
      expect(after.grade.calibration.rawScore).toBe(v.grade.score);
      expectConsistent(after.grade);
      expect(after.cost).toBe(v.cost);
    }
    const kept = (await t.http.get(`/v1/essays/${labelled[0].id}`).set(bearer(teacher)).expect(200)).body;
    expect(kept.grade.source).toBe('teacher');
    expect(kept.grade.score).toBe(strict(labelled[0].text));

    // Off: nothing in force; a regrade puts back the grader's own scores.
    await t.http.delete(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(204);
    await t.http.get(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(404);
    expect((await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body).toEqual({ essays: 7, calibration: null });
    // Again, with nothing new: no grade changes, and the answer says so (it counts grades changed, not rows read).
    expect((await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body).toEqual({ essays: 0, calibration: null });
    const back = (await t.http.get(`/v1/essays/${views[61].id}`).set(bearer(teacher)).expect(200)).body;
    expect(back.grade.calibration).toBeUndefined();
    expect(back.grade.score).toBe(views[61].grade.score);

    // Turned off while a regrade applies it (here after its third write): the regrade starts again
    // with what is in force then, nothing, so no grade is left with the calibration turned off; the
    // three it had changed and put back are no change.
    expect((await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201)).body).toMatchObject({ version: 2, active: true });
    const essays = t.app.get(EssaysRepository);
    const write = essays.replaceGrade.bind(essays);
    let writes = 0;
    let turnedOff = false;
    const spy = jest.spyOn(essays, 'replaceGrade').mockImplementation(async (...args: Parameters<typeof write>) => {
      if (++writes === 4) {
        turnedOff = true;
        await t.http.delete(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(204);
      }
      return write(...args);
    });
    try {
      expect((await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body).toEqual({ essays: 0, calibration: null });
    } finally {
      spy.mockRestore();
    }
    expect(turnedOff).toBe(true);
    for (const v of views.slice(60)) {
      const now = (await t.http.get(`/v1/essays/${v.id}`).set(bearer(teacher)).expect(200)).body;
      expect(now.grade.calibration).toBeUndefined();
      expect(now.grade.score).toBe(v.grade.score);
    }
  });

  it('stops a regrade with 409 when the calibration keeps changing under it (three restarts), writing nothing more', async () => {
    const { id } = await assignmentWith(3, 470);
    const essays = t.app.get(EssaysRepository);
    const spy = jest.spyOn(essays, 'replaceGrade').mockResolvedValue('calibration_changed');
    try {
      const res = await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(409);
      expect(res.body.error).toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('kept changing'), details: { assignmentId: id } });
      expect(spy).toHaveBeenCalledTimes(4); // the first pass and three restarts, each stopped at its first write
    } finally {
      spy.mockRestore();
    }
  });

  it("reads a regrade's essays a page at a time along the assignment's index: each once, those of one class set (one submission time) too", async () => {
    const id = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'pages', prompt: '以“成长”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const texts = Array.from({ length: 5 }, (_, i) => ({ text: generateEssay(450 + i, 'zh').text }));
    const ids: string[] = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: id, essays: texts }).expect(202)).body.ids;
    ids.push((await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId: id, text: generateEssay(455, 'zh').text }).expect(202)).body.id);
    await waitForEssays(t.app, teacher, ids);
    const repo = t.app.get(QualityRepository);
    const seen: string[] = [];
    let after: { at: string; id: string } | null = null;
    for (let pages = 0; pages < 10; pages++) {
      const page = await repo.regradable(tenant.tenantId, id, after, 2);
      seen.push(...page.rows.map((r) => r.id));
      if (!page.next) break;
      after = page.next;
    }
    expect(seen).toHaveLength(6);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(seen[0]).toBe(ids[5]); // the newest first
  });

  it('shifts the offline grader\'s totals when the teacher only grades higher, and new essays get the shift', async () => {
    const { id, views } = await assignmentWith(22, 600);
    // A lenient teacher: the grader's order, eight points higher (within the rubric).
    const lenient = (score: number) => Math.min(60, score + 8);
    for (const v of views) await override(v.id, lenient(v.grade.score));
    const fit = await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201);
    expect(fit.body).toMatchObject({ essays: 22, method: 'shift', active: true });
    expect(fit.body.after.qwk).toBeGreaterThan(fit.body.before.qwk);
    const text = generateEssay(777, 'zh', { targetChars: 700 }).text;
    const [fresh] = await waitForEssays(t.app, teacher, [(await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId: id, text }).expect(202)).body.id]);
    expect(fresh.grade.calibration.version).toBe(fit.body.version);
    // The shift is the teachers' mean over the grader's, near 8 (less where the top capped it).
    const moved = fresh.grade.score - fresh.grade.calibration.rawScore;
    expect(moved).toBeGreaterThanOrEqual(6);
    expect(moved).toBeLessThanOrEqual(8);
    expectConsistent(fresh.grade);
  });

  it("makes the assignment's check again when it regrades: a grade on the pass mark is held for review (needs_review), one no longer checked is graded", async () => {
    const { id, views } = await assignmentWith(24, 900);
    const overridden = views.slice(0, 20);
    for (const v of overridden) await override(v.id, Math.min(60, v.grade.score + 8));
    expect((await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201)).body).toMatchObject({ method: 'shift', active: true });
    await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202);
    const essay = async (essayId: string) => (await t.http.get(`/v1/essays/${essayId}`).set(bearer(teacher)).expect(200)).body;
    const rest = await Promise.all(views.slice(20).map((v) => essay(v.id)));
    expect(rest.every((e) => e.status === 'graded' && e.grade.calibration)).toBe(true);
    // The teacher now checks the assignment's grades against a pass mark: one of the regraded essays is on it.
    const onMark = rest[0];
    const passMark = onMark.grade.score;
    await t.http.patch(`/v1/assignments/${id}`).set(bearer(teacher)).send({ escalate: 'flag', passMark }).expect(200);
    const regraded = (await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body;
    const near = rest.filter((e) => Math.abs(e.grade.score - passMark) <= totalStep(rubric));
    expect(regraded.essays).toBe(near.length);
    for (const e of rest) {
      const now = await essay(e.id);
      const held = near.includes(e);
      expect([e.id, now.status, now.flags.includes('low_confidence'), now.grade.flags.includes('low_confidence')]).toEqual([e.id, held ? 'needs_review' : 'graded', held, held]);
      expect(now.grade.score).toBe(e.grade.score);
    }
    const counts = async () => (await t.http.get(`/v1/assignments/${id}`).set(bearer(teacher)).expect(200)).body.counts;
    expect((await counts()).needs_review).toBe(near.length);
    // The teachers' own grades are left as they gave them.
    for (const v of overridden.slice(0, 3)) expect((await essay(v.id)).status).toBe('graded');
    // Checked no more, the essays it held are graded again.
    await t.http.patch(`/v1/assignments/${id}`).set(bearer(teacher)).send({ escalate: 'off' }).expect(200);
    expect((await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body.essays).toBe(near.length);
    const after = await essay(onMark.id);
    expect([after.status, after.flags]).toEqual(['graded', onMark.flags]);
    expect((await counts()).needs_review).toBe(0);
  });

  it("measures the grader's own scores against the teachers', and learns only from totals a teacher gave: not its own output kept under a comment", async () => {
    const { id, views } = await assignmentWith(25, 650);
    const lenient = (score: number) => Math.min(60, score + 8);
    for (const v of views.slice(0, 20)) await override(v.id, lenient(v.grade.score));
    expect((await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201)).body).toMatchObject({ essays: 20, active: true });
    await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202);
    const calibrated = await Promise.all(views.slice(20, 22).map(async (v) => (await t.http.get(`/v1/essays/${v.id}`).set(bearer(teacher)).expect(200)).body));
    for (const c of calibrated) expect(c.grade.score).not.toBe(c.grade.calibration.rawScore);
    const agreement = async () => (await t.http.get(`/v1/assignments/${id}/agreement`).set(bearer(teacher)).expect(200)).body as { n: number; exact: number };
    const before = await agreement();
    // The teacher agrees with the grader's own total: an exact pair (not the calibrated total against it).
    await override(calibrated[0].id, calibrated[0].grade.calibration.rawScore);
    const after = await agreement();
    expect(after.n).toBe(before.n + 1);
    expect(Math.round(after.exact * after.n)).toBe(Math.round(before.exact * before.n) + 1);
    // A comment alone on a calibrated grade leaves the calibration's total: no label for the next fit.
    await t.http.patch(`/v1/essays/${calibrated[1].id}/grade`).set(bearer(teacher)).send({ comment: '写得不错' }).expect(200);
    expect((await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201)).body.essays).toBe(21);
    // The cells rebuilt from the essays (the migration that moved them to these rules) are the ones kept.
    const { kept, backfilled } = await keptAndBackfilled(t.dataSource, tenant.tenantId);
    expect(backfilled).toEqual(kept);
  });

  it('fits the same calibration from the same labels, whatever ids the essays of one batch drew', async () => {
    // One batch: its essays share their submission time, and their ids are random. The folds of the
    // cross-validation are dealt in an order of the texts, so two assignments of the same essays and
    // the same teacher's scores measure the same calibration (before, the ids dealt the folds).
    const texts = Array.from({ length: 30 }, (_, i) => generateEssay(800 + i, 'zh', { targetChars: 300 + ((i * 211) % 1200) }).text);
    const fits = [];
    const assignments: string[] = [];
    for (const title of ['B1', 'B2']) {
      const id = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title, prompt: '以“成长”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
      const ids: string[] = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: id, essays: texts.map((text) => ({ text })) }).expect(202)).body.ids;
      const views = await waitForEssays(t.app, teacher, ids);
      // the strict teacher, with some noise that the text decides, so that the folds matter
      for (const v of views) await override(v.id, Math.max(0, Math.min(60, strict(v.text) + (v.text.length % 13) - 6)));
      const fit = (await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201)).body;
      assignments.push(id);
      fits.push({ method: fit.method, active: fit.active, essays: fit.essays, before: fit.before, after: fit.after });
    }
    expect(fits[0].essays).toBe(30);
    expect(fits[1]).toEqual(fits[0]);

    // A fit reads its labels a page at a time (texts are dropped once their features are taken):
    // pages of 7 through essays that share their time give the same labels, in the same order, as one read.
    const repo = t.app.get(QualityRepository);
    const whole = await repo.labelsPage(tenant.tenantId, assignments[0], null, 1_000);
    expect(whole.rows).toHaveLength(30);
    expect(whole.next).toBeNull();
    const paged = [];
    let after: LabelCursor | null = null;
    let pages = 0;
    do {
      const page: Awaited<ReturnType<QualityRepository['labelsPage']>> = await repo.labelsPage(tenant.tenantId, assignments[0], after, 7);
      expect(page.rows.length).toBeLessThanOrEqual(7);
      paged.push(...page.rows);
      after = page.next;
      pages++;
    } while (after);
    expect(pages).toBe(5);
    expect(paged.map((r) => r.id)).toEqual(whole.rows.map((r) => r.id));
    expect(new Set(paged.map((r) => r.id)).size).toBe(30);
    expect(paged.every((r) => r.source === 'offline' && typeof r.text === 'string' && typeof r.raw === 'number')).toBe(true);
    // another tenant reads none of them
    const other = await f.newTenant();
    expect((await repo.labelsPage(other.tenantId, assignments[0], null, 1_000)).rows).toEqual([]);
  });

  it('grades an essay on the calibration in force when it is stored: one fitted while the essay was being graded is the one it ends on', async () => {
    const id = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'A-race', prompt: '以“成长”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id as string;
    const calibrations = t.app.get(CalibrationsRepository);
    const shift = (by: number) => ({ method: 'linear', model: { version: 0, isotonic: null, ridge: null, linear: { intercept: by, slope: 1 } }, essays: 20, before: {}, after: {}, active: true });
    const v1 = await calibrations.add(tenant.tenantId, id, shift(2), tenant.adminKeyId);
    const grading = t.app.get(GradingService) as unknown as { escalate: (...a: unknown[]) => Promise<unknown> };
    const real = grading.escalate.bind(grading);
    let v2: number | undefined;
    // While the essay's grade (calibrated with v1) is checked for escalation, a teacher fits v2.
    const spy = jest.spyOn(grading, 'escalate').mockImplementation(async (...args: unknown[]) => {
      if (v2 === undefined) v2 = (await calibrations.add(tenant.tenantId, id, shift(4), tenant.adminKeyId)).version;
      return real(...args);
    });
    try {
      const ids = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: id, essays: [{ text: generateEssay(901, 'zh').text }] }).expect(202)).body.ids as string[];
      const [view] = await waitForEssays(t.app, teacher, ids);
      expect(v2).toBe(v1.version + 1);
      // Before: stored with v1, which a regrade run meanwhile had passed by (the essay was grading).
      expect(view.grade.calibration.version).toBe(v2);
    } finally {
      spy.mockRestore();
    }
  });

  // (Two sessions at once: on a PostgreSQL server only.)
  (serverUrl() ? it : it.skip)("makes a teacher's switch of the calibration wait for a grade being stored on the one in force: a regrade after it finds the essay graded", async () => {
    const id = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'A-lock', prompt: '以“成长”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id as string;
    const calibrations = t.app.get(CalibrationsRepository);
    await calibrations.add(tenant.tenantId, id, { method: 'linear', model: { version: 0, isotonic: null, ridge: null, linear: { intercept: 2, slope: 1 } }, essays: 20, before: {}, after: {}, active: true }, tenant.adminKeyId);
    const essays = t.app.get(EssaysRepository);
    const real = essays.storeGrade.bind(essays);
    let switched: Promise<boolean> | undefined;
    let doneBeforeCommit: boolean | undefined;
    // While the grade is being stored (its transaction open, the calibration checked), the teacher turns it off.
    const spy = jest.spyOn(essays, 'storeGrade').mockImplementation(async (...args: Parameters<EssaysRepository['storeGrade']>) => {
      if (!switched) {
        let done = false;
        switched = calibrations.deactivate(tenant.tenantId, id).then((r) => ((done = true), r));
        await new Promise((r) => setTimeout(r, 300));
        doneBeforeCommit = done;
      }
      return real(...args);
    });
    try {
      const ids = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: id, essays: [{ text: generateEssay(902, 'zh').text }] }).expect(202)).body.ids as string[];
      await waitForEssays(t.app, teacher, ids);
      expect(await switched).toBe(true);
      // Before: the switch committed at once, and a regrade then passed the essay by (still grading).
      expect(doneBeforeCommit).toBe(false);
      const regrade = (await t.http.post(`/v1/assignments/${id}/regrade`).set(bearer(teacher)).expect(202)).body;
      expect(regrade.essays).toBe(1);
      const [view] = await waitForEssays(t.app, teacher, ids);
      expect(view.grade.calibration ?? null).toBeNull();
    } finally {
      spy.mockRestore();
    }
  });

  it('keeps a calibration that would do no better than none switched off, and says why', async () => {
    const { id, views } = await assignmentWith(20, 400);
    // A teacher who agrees with every grade exactly: no calibration can do better.
    for (const v of views) await override(v.id, v.grade.score);
    const fit = await t.http.post(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(201);
    expect(fit.body.before.qwk).toBe(1);
    expect(fit.body.active).toBe(false);
    expect(fit.body.method).toBe('shift'); // what was fitted (a shift of 0), not in force
    expect(fit.body.reason).toMatch(/Not switched on/);
    await t.http.get(`/v1/assignments/${id}/calibration`).set(bearer(teacher)).expect(404);
  });
});
