import { keptAndBackfilled } from './support/agreement-cells';
import { quadraticWeightedKappa, tabulate } from '../src/quality/agreement';
import { AssignmentsService } from '../src/grading/assignments.service';
import { RubricsService } from '../src/grading/rubrics.service';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';
import { createTestApp, TestApp } from './support/test-app';

/**
 * Agreement with the teachers (SPEC §9) through the HTTP API, on a real database: essays graded by
 * the offline grader (no provider configured), some overridden by a teacher; only those count.
 */
describe('quality: agreement from overrides (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;
  let assignmentId: string;
  let views: any[];
  /** [grader's original total, teacher's total] of each overridden essay */
  const pairs: Array<[number, number]> = [];

  beforeAll(async () => {
    t = await createTestApp({ WORKER_POLL_MS: '50' });
    f = new Factory(t.app);
    tenant = await f.newTenant({ monthlyBudget: '10.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
    assignmentId = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '记一次', prompt: '以“那一刻”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId, text: generateEssay(300 + i, 'zh').text }).expect(202);
      ids.push(res.body.id);
    }
    views = await waitForEssays(t.app, teacher, ids);
    expect(views.map((v) => v.status)).toEqual(Array(7).fill('graded'));
    // The teacher overrides five of the seven: totals, and one by a dimension only.
    const teacherTotals = [30, 41, 52, 38];
    for (let i = 0; i < 4; i++) {
      await t.http.patch(`/v1/essays/${views[i].id}/grade`).set(bearer(teacher)).send({ score: teacherTotals[i] }).expect(200);
      pairs.push([views[i].grade.score, teacherTotals[i]]);
    }
    const dims = views[4].grade.dimensions;
    const changed = dims[0].score === 20 ? 19 : dims[0].score + 1;
    // (one dimension of three: a label of that dimension, not of the total, which stays mostly the grader's)
    await t.http.patch(`/v1/essays/${views[4].id}/grade`).set(bearer(teacher)).send({ dimensions: [{ key: dims[0].key, score: changed }] }).expect(200);
    // A comment alone labels nothing.
    await t.http.patch(`/v1/essays/${views[5].id}/grade`).set(bearer(teacher)).send({ comment: '写得不错，注意错别字。' }).expect(200);
    // Overridden twice: the label is the teacher's last grade against the grader's original.
    await t.http.patch(`/v1/essays/${views[0].id}/grade`).set(bearer(teacher)).send({ score: 33 }).expect(200);
    pairs[0] = [views[0].grade.score, 33];
  });
  afterAll(async () => {
    await t.close();
  });

  it('reports n, QWK, exact and adjacent agreement and bias over the totals teachers set only', async () => {
    const res = await t.http.get(`/v1/assignments/${assignmentId}/agreement`).set(bearer(teacher)).expect(200);
    const a = res.body;
    expect(a.assignmentId).toBe(assignmentId);
    expect(a.rubric).toEqual({ key: 'zh-gaokao-60', version: 1, maxScore: 60 });
    expect(a.n).toBe(4);
    const diffs = pairs.map(([m, tt]) => m - tt);
    expect(a.exact).toBeCloseTo(diffs.filter((d) => d === 0).length / 4, 4);
    expect(a.adjacent).toBeCloseTo(diffs.filter((d) => Math.abs(d) <= 6).length / 4, 4);
    expect(a.bias).toBeCloseTo(diffs.reduce((s, d) => s + d, 0) / 4, 4);
    const qwk = quadraticWeightedKappa(tabulate(pairs), { step: 1, max: 60 });
    if (qwk === null) expect(a.qwk).toBeNull();
    else expect(a.qwk).toBeCloseTo(qwk, 4);
  });

  it('reports every dimension of the rubric, counting only the dimensions a teacher scored', async () => {
    const a = (await t.http.get(`/v1/assignments/${assignmentId}/agreement`).set(bearer(teacher)).expect(200)).body;
    expect(a.byDimension.map((d: { key: string }) => d.key)).toEqual(['content', 'expression', 'development']);
    // Four overrides set only the total: they say nothing of the dimensions. One set the first
    // dimension, one point away from the grader's.
    expect(a.byDimension[0]).toMatchObject({ key: 'content', n: 1, exact: 0 });
    expect(a.byDimension[1]).toMatchObject({ key: 'expression', n: 0, qwk: null });
    expect(a.byDimension[2]).toMatchObject({ key: 'development', n: 0, qwk: null });
  });

  it('groups the tenant\'s labels by source, tier, model and rubric, and filters by date', async () => {
    const bySource = (await t.http.get('/v1/quality?groupBy=source').set(bearer(teacher)).expect(200)).body;
    expect(bySource.groups).toHaveLength(1);
    expect(bySource.groups[0]).toMatchObject({ group: 'offline', n: 4, rubric: { key: 'zh-gaokao-60', version: 1 } });
    const byModel = (await t.http.get('/v1/quality?groupBy=model').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(byModel.groups[0]).toMatchObject({ group: 'offline', n: 4 });
    const byTier = (await t.http.get('/v1/quality?groupBy=tier').set(bearer(teacher)).expect(200)).body;
    expect(byTier.groups[0]).toMatchObject({ group: 'standard', n: 4 });
    const byRubric = (await t.http.get('/v1/quality').set(bearer(teacher)).expect(200)).body;
    expect(byRubric).toMatchObject({ groupBy: 'rubric', groups: [{ group: 'zh-gaokao-60', n: 4 }] });
    // SPEC §2's figures at the top: on one rubric, every label pooled, as the assignment's own.
    const assignment = (await t.http.get(`/v1/assignments/${assignmentId}/agreement`).set(bearer(teacher)).expect(200)).body;
    for (const view of [byRubric, byTier, bySource]) {
      expect(view).toMatchObject({ n: 4, qwk: assignment.qwk, exact: assignment.exact, adjacent: assignment.adjacent, bias: assignment.bias, rubric: assignment.rubric });
      expect(view.byDimension).toEqual(assignment.byDimension);
    }
    const future = (await t.http.get('/v1/quality?from=2999-01-01').set(bearer(teacher)).expect(200)).body;
    expect(future).toMatchObject({ n: 0, qwk: null, exact: null, adjacent: null, bias: null, rubric: null, byDimension: [], groups: [] });
  });

  it("fails the request when a group's rubric cannot be read (the database away), rather than answer without that group", async () => {
    const rubrics = t.app.get(RubricsService);
    const spy = jest.spyOn(rubrics, 'resolve').mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    try {
      const res = await t.http.get('/v1/quality').set(bearer(teacher)).expect(500);
      expect(res.body.error.code).toBe('INTERNAL');
    } finally {
      spy.mockRestore();
    }
    expect((await t.http.get('/v1/quality').set(bearer(teacher)).expect(200)).body).toMatchObject({ n: 4, groups: [{ group: 'zh-gaokao-60', n: 4 }] });
  });

  it('refuses a bad groupBy or date with 400, and another tenant sees neither the assignment nor the labels', async () => {
    const bad = await t.http.get('/v1/quality?groupBy=student').set(bearer(teacher)).expect(400);
    expect(bad.body.error.code).toBe('VALIDATION_FAILED');
    await t.http.get('/v1/quality?from=yesterday').set(bearer(teacher)).expect(400);
    // Agreement is kept by day: a time of day would be cut silently, so it is refused.
    const timed = await t.http.get('/v1/quality?from=2026-03-01T08:00:00%2B08:00').set(bearer(teacher)).expect(400);
    expect(timed.body.error.details[0]).toMatchObject({ field: 'from' });
    await t.http.get('/v1/quality?to=2026-02-30').set(bearer(teacher)).expect(400);
    // There is no year 0 (PostgreSQL's dates start at the year 1): a 400, not the query's 500.
    for (const range of ['from=0000-01-01&to=0000-01-02', 'from=0000-02-29']) {
      expect((await t.http.get(`/v1/quality?${range}`).set(bearer(teacher)).expect(400)).body.error.details[0]).toMatchObject({ field: 'from' });
    }
    await t.http.get('/v1/quality?from=0001-01-01&to=0001-01-02').set(bearer(teacher)).expect(200);
    // An end before the start is refused, as the ledger's reports refuse it; so is an end on the
    // start (`to` is the first day left out: from = to is empty, not one day); one day is from D to D + 1.
    for (const range of ['from=2026-12-05&to=2026-12-01', 'from=2026-12-01&to=2026-12-01']) {
      expect((await t.http.get(`/v1/quality?${range}`).set(bearer(teacher)).expect(400)).body.error.details).toEqual([{ field: 'to', message: 'to must be after from (to is the first day left out)' }]);
    }
    await t.http.get('/v1/quality?from=2026-12-01&to=2026-12-02').set(bearer(teacher)).expect(200);
    const other = await f.newTenant();
    const otherTeacher = (await f.newKey(other, 'teacher')).key;
    const nf = await t.http.get(`/v1/assignments/${assignmentId}/agreement`).set(bearer(otherTeacher)).expect(404);
    expect(nf.body.error.code).toBe('NOT_FOUND');
    expect((await t.http.get('/v1/quality').set(bearer(otherTeacher)).expect(200)).body.groups).toEqual([]);
  });

  it('has no figures for an assignment without overrides', async () => {
    const empty = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'B', prompt: 'P', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const a = (await t.http.get(`/v1/assignments/${empty}/agreement`).set(bearer(teacher)).expect(200)).body;
    expect(a).toMatchObject({ n: 0, qwk: null, exact: null, adjacent: null, bias: null });
  });

  it('keeps the same cells as the migration counts from the essays (an override replaced by another counted once)', async () => {
    const { kept, backfilled } = await keptAndBackfilled(t.dataSource, tenant.tenantId);
    expect(kept.length).toBeGreaterThan(0);
    expect(backfilled).toEqual(kept);
  });

  it('never pools figures across rubrics at the top: with labels on two rubrics it counts them and leaves the figures to the groups', async () => {
    const ielts = (await t.http.post('/v1/essays').set(bearer(teacher)).send({ rubric: 'en-ielts-task2', text: generateEssay(391, 'en').text }).expect(202)).body.id;
    await waitForEssays(t.app, teacher, [ielts]);
    await t.http.patch(`/v1/essays/${ielts}/grade`).set(bearer(teacher)).send({ score: 6.5 }).expect(200);
    const view = (await t.http.get('/v1/quality').set(bearer(teacher)).expect(200)).body;
    expect(view.groups.map((g: { group: string; n: number }) => [g.group, g.n])).toEqual([
      ['en-ielts-task2', 1],
      ['zh-gaokao-60', 4],
    ]);
    expect(view).toMatchObject({ n: 5, qwk: null, exact: null, adjacent: null, bias: null, rubric: null, byDimension: [] });
  });

  it('exports an assignment\'s grades as CSV that Excel reads: BOM, Chinese headers, formulas kept as text, another tenant refused', async () => {
    const a = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '导出', prompt: 'P', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    const id = (await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId: a, studentRef: '-4-2', title: '=1+1,2', text: generateEssay(390, 'zh').text }).expect(202)).body.id;
    const [graded] = await waitForEssays(t.app, teacher, [id]);
    const res = await t.http.get(`/v1/assignments/${a}/grades.csv`).set(bearer(teacher)).buffer(true).parse((r, done) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv; charset=utf-8/);
    const bytes = res.body as Buffer;
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]); // the UTF-8 BOM
    const lines = bytes.toString('utf8').slice(1).split('\r\n');
    expect(lines[0]).toBe('studentRef,title,status,score,maxScore,内容,表达,发展,comment,gradedBy,calibration,flags,gradedAt (Asia/Shanghai)');
    // A student id and a title that look like formulas stay text; the comma in the title is quoted.
    expect(lines[1].startsWith(`'-4-2,"'=1+1,2",graded,${graded.grade.score},60,`)).toBe(true);
    // The grade's comment (the teacher's when overridden), then who graded it.
    expect(lines[1]).toContain(`,${graded.grade.summary},offline,`);
    // Named after the assignment, in UTF-8 for browsers, with an ASCII fallback.
    expect(res.headers['content-disposition']).toBe(`attachment; filename="grades.csv"; filename*=UTF-8''${encodeURIComponent('导出 grades.csv')}`);
    expect(lines[2]).toBe('');
    const other = await f.newTenant();
    await t.http.get(`/v1/assignments/${a}/grades.csv`).set(bearer(other.adminKey)).expect(404);
  });

  it('exports a class read a page at a time: every essay once, oldest first, the same sheet as one read', async () => {
    const a = (await t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: '分页', prompt: 'P', rubric: 'zh-gaokao-60' }).expect(201)).body.id;
    // One batch (its essays share their time) and two more essays after it.
    const ids: string[] = (await t.http.post('/v1/essays/batch').set(bearer(teacher)).send({ assignmentId: a, essays: Array.from({ length: 13 }, (_, i) => ({ studentRef: `b${i}`, text: generateEssay(4700 + i, 'zh').text })) }).expect(202)).body.ids;
    for (const i of [13, 14]) ids.push((await t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId: a, studentRef: `b${i}`, text: generateEssay(4700 + i, 'zh').text }).expect(202)).body.id);
    const views = await waitForEssays(t.app, teacher, ids);
    const sheet = async () => (await t.http.get(`/v1/assignments/${a}/grades.csv`).set(bearer(teacher)).expect(200)).text;
    const whole = await sheet();
    // The same sheet read 4 essays at a time, and 15 (one page that is full, then an empty one).
    const inPages = async (pageSize: number) => {
      let text = '';
      for await (const chunk of (await t.app.get(AssignmentsService).gradesCsv(tenant.tenantId, a, pageSize)).chunks) text += chunk;
      return text;
    };
    for (const pageSize of [4, 15]) expect(await inPages(pageSize)).toBe(whole);
    const rows = whole.replace(/^\ufeff/, '').split('\r\n').slice(1, -1);
    expect(rows).toHaveLength(15);
    expect(new Set(rows.map((r) => r.split(',')[0])).size).toBe(15);
    expect(rows.slice(13).map((r) => r.split(',')[0])).toEqual(['b13', 'b14']);
    // Each row carries its grade's total and dimension scores.
    for (const v of views) {
      const row = rows.find((r) => r.startsWith(`${v.studentRef},`))!.split(',');
      expect(Number(row[3])).toBe(v.grade.score);
      expect(row.slice(5, 8).map(Number)).toEqual(v.grade.dimensions.map((d: { score: number }) => d.score));
    }
  });
});
