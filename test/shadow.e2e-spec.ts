import { randomUUID } from 'node:crypto';
import { formatCny, parseCny } from '../src/common/money';
import { GradingService } from '../src/grading/grading.service';
import { builtinRubric } from '../src/grading/rubric';
import { EssaysRepository } from '../src/grading/essays.repository';
import { inShadowSample } from '../src/grading/grading.service';
import { ShadowAlerts } from '../src/quality/shadow-alerts';
import { appWithFakeForSuite } from './support/app-with-fake';
import { generateEssay } from './support/essays';
import { bearer, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';
import { waitFor } from './support/wait';

/**
 * Shadow evaluation (SPEC §9) through the HTTP API with the fake provider: a fixed share of the
 * standard model gradings is graded again on the deep tier in the background, paid under the
 * ledger purpose `shadow`, compared in /v1/quality and never shown as the grade; an agreement
 * under the admin's threshold fires one alert per rubric and month.
 */
describe('shadow evaluation (fake provider, real PostgreSQL)', () => {
  const app = appWithFakeForSuite({ WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '50', ALLOW_PRIVATE_WEBHOOKS: 'true' });
  let tenant: TestTenant;
  let teacher: string;
  beforeEach(async () => {
    ({ tenant, teacher } = await app.tenantWithTeacher());
  });

  it('grades the sampled share on the deep tier in the background, under its own purpose, without touching the grade', async () => {
    await app.t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowRate: 0.2 }).expect(200);
    // Submit until the sample holds two essays and two are outside it (the sample is fixed by the essays' ids).
    const ids: string[] = [];
    for (let i = 0; i < 80 && (ids.filter((id) => inShadowSample(id, 0.2)).length < 2 || ids.filter((id) => !inShadowSample(id, 0.2)).length < 2); i++) {
      ids.push((await app.t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(500 + i, 'zh').text }).expect(202)).body.id);
    }
    const sampled = ids.filter((id) => inShadowSample(id, 0.2));
    expect(sampled.length).toBeGreaterThanOrEqual(2);
    const views = await waitForEssays(app.t.app, teacher, ids);
    for (const v of views) {
      expect(v.status).toBe('graded');
      expect(v.grade.tier).toBe('standard');
      expect(v).not.toHaveProperty('shadowGrade');
    }
    await waitFor(async () => {
      const [{ n }] = await app.t.dataSource.query(`SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND kind = 'shadow' AND status = 'done'`, [tenant.tenantId]);
      return n === sampled.length;
    }, 20_000);
    const shadowed = await app.t.dataSource.query(`SELECT id FROM essays WHERE tenant_id = $1 AND shadow_grade IS NOT NULL ORDER BY id`, [tenant.tenantId]);
    expect(shadowed.map((r: { id: string }) => r.id)).toEqual([...sampled].sort());
    const calls = await app.t.dataSource.query(`SELECT essay_id, purpose, tier, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    const shadowCalls = calls.filter((c: { purpose: string }) => c.purpose === 'shadow');
    expect(shadowCalls.map((c: { essay_id: string }) => c.essay_id).sort()).toEqual([...sampled].sort());
    for (const c of shadowCalls) expect(c.tier).toBe('deep');
    // The grades shown did not change; everything paid is in the budget.
    for (const v of await waitForEssays(app.t.app, teacher, ids)) expect(v.grade).toEqual(views.find((w) => w.id === v.id).grade);
    const budget = (await app.t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(parseCny(budget.spent)).toBe(calls.reduce((s: bigint, c: { cost_nanos: string }) => s + BigInt(c.cost_nanos), 0n));
    // Usage by teacher: every call of these gradings (shadow ones too) is the submitting key's, and
    // the cost per grading counts the shadow cost over the standard gradings.
    const [{ submitted_by: teacherKeyId }] = await app.t.dataSource.query(`SELECT DISTINCT submitted_by FROM essays WHERE tenant_id = $1`, [tenant.tenantId]);
    const byTeacher = (await app.t.http.get('/v1/usage?groupBy=teacher').set(bearer(tenant.adminKey)).expect(200)).body.data;
    const total = calls.reduce((s: bigint, c: { cost_nanos: string }) => s + BigInt(c.cost_nanos), 0n);
    expect(byTeacher).toEqual([
      expect.objectContaining({ key: teacherKeyId, calls: calls.length, gradings: ids.length, cost: formatCny(total), costPerGrading: formatCny(total / BigInt(ids.length)) }),
    ]);
    // /v1/quality compares the standard grades with the deep ones.
    const q = (await app.t.http.get('/v1/quality').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(q.groups).toEqual([]);
    expect(q.shadow).toHaveLength(1);
    expect(q.shadow[0]).toMatchObject({ group: 'zh-gaokao-60', n: sampled.length });
  });

  it('shadows nothing at rate 0 (the default)', async () => {
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await app.t.http.post('/v1/essays').set(bearer(teacher)).send({ text: generateEssay(600 + i, 'zh').text }).expect(202)).body.id);
    await waitForEssays(app.t.app, teacher, ids);
    const [{ n }] = await app.t.dataSource.query(`SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND kind = 'shadow'`, [tenant.tenantId]);
    expect(n).toBe(0);
  });

  /** Shadow gradings that disagree: the deep tier gives the opposite of the standard grade. */
  const seed = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const std = 20 + (i % 10) * 4;
      const grade = (score: number) => ({
        score,
        source: 'model',
        tier: 'standard',
        dimensions: [
          { key: 'content', score: Math.floor(score / 3) + (score % 3), max: 20 },
          { key: 'expression', score: Math.floor(score / 3), max: 20 },
          { key: 'development', score: Math.floor(score / 3), max: 20 },
        ],
      });
      const id = randomUUID();
      await app.t.dataSource.query(
        `INSERT INTO essays (tenant_id, id, rubric_key, rubric_version, language, tier, text, status, grade, model_grade)
         VALUES ($1, $2, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded', $3, $3)`,
        [tenant.tenantId, id, JSON.stringify(grade(std))],
      );
      // Stored as a shadow job stores it (the agreement cells counted with it).
      await app.t.app.get(EssaysRepository).storeShadowGrade(app.t.dataSource.manager, tenant.tenantId, id, grade(80 - std) as never);
    }
  };

  it('fires one alert per rubric and month when the agreement falls under the threshold, with at least 20 shadow gradings', async () => {
    const received: string[] = [];
    await app.t.http
      .put('/v1/budget')
      .set(bearer(tenant.adminKey))
      .send({ monthlyCap: '100.00', alertWebhookUrl: 'http://127.0.0.1:9/alerts', alertWebhookSecret: 'alert-secret-0123456789' })
      .expect(200);
    await app.t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowAlertQwk: 0.5 }).expect(200);
    const alerts = app.t.app.get(ShadowAlerts);
    await seed(19);
    expect(await alerts.check(tenant.tenantId)).toEqual([]); // 19: too few to judge
    await seed(1);
    expect(await alerts.check(tenant.tenantId)).toEqual(['zh-gaokao-60@1']);
    // Once per rubric and month: checking again (as another instance would) fires nothing.
    expect(await alerts.check(tenant.tenantId)).toEqual([]);
    const [{ n: recorded }] = await app.t.dataSource.query(`SELECT count(*)::int AS n FROM quality_alerts WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(recorded).toBe(1);
    const queued = await app.t.dataSource.query(`SELECT body FROM outbound_webhooks WHERE tenant_id = $1`, [tenant.tenantId]);
    received.push(...queued.map((r: { body: string }) => r.body));
    expect(received).toHaveLength(1);
    const event = JSON.parse(received[0]);
    expect(event.type).toBe('quality.shadow_agreement_low');
    expect(event.data).toMatchObject({ rubric: 'zh-gaokao-60@1', n: 20, threshold: 0.5 });
    expect(event.data.qwk).toBeLessThan(0);
    // No threshold, no alert.
    await app.t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowAlertQwk: null }).expect(200);
    expect(await alerts.check(tenant.tenantId)).toEqual([]);
  });

  it("files the alert under the school's month, not UTC's: raised early on the 1st in Shanghai, it is that month's one alert", async () => {
    await app.t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowAlertQwk: 0.5 }).expect(200);
    await seed(20);
    const alerts = app.t.app.get(ShadowAlerts);
    const local = (at: Date) => new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit' }).format(at).slice(0, 7);
    // 00:30 on the 1st of this month in Shanghai (the month before by UTC), then a few days later:
    // both within 30 days of the gradings just seeded.
    const [year, month] = local(new Date()).split('-').map(Number);
    const first = new Date(Date.UTC(year, month - 1, 1) - 8 * 3_600_000 + 30 * 60_000);
    expect(first.toISOString().slice(0, 7)).not.toBe(local(first));
    expect(await alerts.check(tenant.tenantId, first)).toEqual(['zh-gaokao-60@1']);
    expect(await alerts.check(tenant.tenantId, new Date(first.getTime() + 3 * 86_400_000))).toEqual([]);
    const periods = await app.t.dataSource.query(`SELECT period FROM quality_alerts WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(periods).toEqual([{ period: local(first) }]);
  });

  it('moves a shadow pair with the grader\'s grade when a regrade changes it (the cells stay what the essays say)', async () => {
    const repo = app.t.app.get(EssaysRepository);
    const g = (score: number) =>
      ({ score, source: 'model', tier: 'standard', dimensions: [{ key: 'content', score: 10, max: 20 }], flags: [] }) as never;
    const id = randomUUID();
    await app.t.dataSource.query(
      `INSERT INTO essays (tenant_id, id, rubric_key, rubric_version, language, tier, text, status, grade, model_grade)
       VALUES ($1, $2, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'graded', $3, $3)`,
      [tenant.tenantId, id, JSON.stringify(g(40))],
    );
    await repo.storeShadowGrade(app.t.dataSource.manager, tenant.tenantId, id, g(35));
    expect(await repo.replaceGrade(tenant.tenantId, id, g(36))).toBe('written');
    const cells = await app.t.dataSource.query(
      `SELECT a::text, b::text, n FROM agreement_cells WHERE tenant_id = $1 AND against = 'shadow' AND dimension = '' AND n <> 0`,
      [tenant.tenantId],
    );
    expect(cells).toEqual([{ a: '36.00', b: '35.00', n: 1 }]);
  });

  it('skips a shadow grading the budget cannot pay for: nothing stored, the grade and the books untouched', async () => {
    await app.t.http.put('/v1/grading/settings').set(bearer(tenant.adminKey)).send({ shadowRate: 0.2 }).expect(200);
    // Before each essay the cap is set to what is spent plus twice a standard grading's worst case:
    // every standard grading fits, the premium model's worst case never does.
    const rubric = builtinRubric('zh-gaokao-60')!;
    const quote = (text: string, tier: 'standard' | 'deep') => app.t.app.get(GradingService).quote(text, 'zh', rubric, tier)!;
    const ids: string[] = [];
    for (let i = 0; i < 60 && !ids.some((id) => inShadowSample(id, 0.2)); i++) {
      const text = generateEssay(800 + i, 'zh').text;
      expect(quote(text, 'deep')).toBeGreaterThan(3n * quote(text, 'standard'));
      const spent = parseCny((await app.t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.spent);
      await app.t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: formatCny(spent + 2n * quote(text, 'standard')) }).expect(200);
      const id = (await app.t.http.post('/v1/essays').set(bearer(teacher)).send({ text }).expect(202)).body.id;
      await waitForEssays(app.t.app, teacher, [id]);
      ids.push(id);
    }
    const sampled = ids.filter((id) => inShadowSample(id, 0.2));
    expect(sampled).toHaveLength(1);
    const views = await waitForEssays(app.t.app, teacher, ids);
    for (const v of views) expect(v.status).toBe('graded');
    await waitFor(async () => {
      const [{ n }] = await app.t.dataSource.query(`SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND kind = 'shadow' AND status = 'done'`, [tenant.tenantId]);
      return n === 1;
    }, 20_000);
    const [row] = await app.t.dataSource.query(`SELECT shadow_grade, grade FROM essays WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, sampled[0]]);
    expect(row.shadow_grade).toBeNull();
    expect(row.grade).toEqual(views.find((v) => v.id === sampled[0]).grade);
    const calls = await app.t.dataSource.query(`SELECT purpose, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(calls.filter((c: { purpose: string; outcome: string }) => c.purpose === 'shadow' && c.outcome === 'ok')).toEqual([]);
    const budget = (await app.t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(parseCny(budget.spent)).toBe(calls.reduce((s: bigint, c: { cost_nanos: string }) => s + BigInt(c.cost_nanos), 0n));
    expect(parseCny(budget.reserved)).toBe(0n);
  });
});
