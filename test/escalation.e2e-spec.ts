import { parseCny } from '../src/common/money';
import { GatewayService } from '../src/llm/gateway.service';
import { gradingAnswer, malformedGrade } from './fake-provider/grading-responder';
import { appWithFakeForSuite } from './support/app-with-fake';
import { generateEssay } from './support/essays';
import { bearer, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';

/**
 * Escalation (SPEC §9) through the HTTP API with the fake provider: a low-confidence standard grade
 * (near the pass mark, repaired, flagged) is flagged for review or graded again on the deep tier,
 * paid from the budget under its own ledger purpose; when the deep tier cannot, it is flagged.
 */
describe('escalation of low-confidence grades (fake provider, real PostgreSQL)', () => {
  const app = appWithFakeForSuite({ WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '50' });
  let tenant: TestTenant;
  let teacher: string;
  const asNewTenant = async () => {
    ({ tenant, teacher } = await app.tenantWithTeacher());
  };
  beforeEach(async () => {
    app.fake.setResponder(null);
    await asNewTenant();
  });

  // escalate "deep" spends the budget on the premium tier: the tenant admin sets it
  const assignment = async (body: Record<string, unknown>) =>
    (await app.t.http.post('/v1/assignments').set(bearer(body.escalate === 'deep' ? tenant.adminKey : teacher)).send({ title: 'T', prompt: '以“成长”为题', rubric: 'zh-gaokao-60', ...body }).expect(201)).body;
  const grade = async (assignmentId: string, text: string) =>
    (await waitForEssays(app.t.app, teacher, [(await app.t.http.post('/v1/essays').set(bearer(teacher)).send({ assignmentId, text }).expect(202)).body.id]))[0];
  const ledger = async () =>
    (await app.t.dataSource.query(`SELECT purpose, tier, outcome, cost_nanos FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId])) as Array<{
      purpose: string;
      tier: string;
      outcome: string;
      cost_nanos: string;
    }>;

  it('leaves a grade near the pass mark alone when escalation is off, and flags it for review under flag', async () => {
    // The fake provider scores an essay by its text: the same essay gets the same score in any tenant
    // (each in a tenant of its own, so that no copy of it is flagged possible_copy).
    const text = generateEssay(31, 'zh').text;
    const plain = await grade((await assignment({ passMark: 30 })).id, text);
    expect(plain.status).toBe('graded');
    const score = plain.grade.score;
    await asNewTenant();
    const flagged = await grade((await assignment({ escalate: 'flag', passMark: score + 1 })).id, text);
    expect(flagged.status).toBe('needs_review');
    expect(flagged.flags).toContain('low_confidence');
    expect(flagged.flags).not.toContain('possible_copy');
    expect(flagged.grade.score).toBe(score);
    await asNewTenant();
    const far = await grade((await assignment({ escalate: 'flag', passMark: Math.max(0, score - 10) })).id, text);
    expect(far.status).toBe('graded');
    expect(far.flags).not.toContain('low_confidence');
    // A possible copy is low-confidence too.
    const copy = await grade((await assignment({ escalate: 'flag' })).id, text);
    expect(copy.flags).toEqual(expect.arrayContaining(['possible_copy', 'low_confidence']));
    expect(copy.status).toBe('needs_review');
  });

  it('takes escalate "deep" from an admin key only: a teacher gets 403 making or changing an assignment, nothing made or changed', async () => {
    const before = Number((await app.t.dataSource.query(`SELECT count(*) AS n FROM assignments WHERE tenant_id = $1`, [tenant.tenantId]))[0].n);
    const refused = await app.t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'T', prompt: '以“成长”为题', rubric: 'zh-gaokao-60', escalate: 'deep' }).expect(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');
    expect(refused.body.error.message).toContain('admin key');
    expect(Number((await app.t.dataSource.query(`SELECT count(*) AS n FROM assignments WHERE tenant_id = $1`, [tenant.tenantId]))[0].n)).toBe(before);
    const mine = await assignment({ escalate: 'flag' });
    await app.t.http.patch(`/v1/assignments/${mine.id}`).set(bearer(teacher)).send({ escalate: 'deep' }).expect(403);
    expect((await app.t.http.get(`/v1/assignments/${mine.id}`).set(bearer(teacher)).expect(200)).body.escalate).toBe('flag');
    // the admin may; a teacher may then turn it down, not up
    expect((await app.t.http.patch(`/v1/assignments/${mine.id}`).set(bearer(tenant.adminKey)).send({ escalate: 'deep' }).expect(200)).body.escalate).toBe('deep');
    expect((await app.t.http.patch(`/v1/assignments/${mine.id}`).set(bearer(teacher)).send({ escalate: 'off' }).expect(200)).body.escalate).toBe('off');
  });

  it('grades a repaired answer again on the deep tier under deep, paid as an escalation', async () => {
    let calls = 0;
    app.fake.setResponder(({ messages }) => (++calls === 1 ? malformedGrade(messages, 'out_of_range') : gradingAnswer(messages)!));
    const a = await assignment({ escalate: 'deep' });
    const view = await grade(a.id, generateEssay(32, 'zh').text);
    expect(view.status).toBe('graded');
    expect(view.flags).toEqual(expect.arrayContaining(['escalated']));
    expect(view.flags).not.toContain('low_confidence');
    expect(view.grade.tier).toBe('deep');
    const rows = await ledger();
    expect(rows.map((r) => `${r.purpose}:${r.tier}:${r.outcome}`)).toEqual(['grading:standard:invalid_output', 'grading:standard:ok', 'escalation:deep:ok']);
    const total = rows.reduce((s, r) => s + BigInt(r.cost_nanos), 0n);
    expect(total).toBeGreaterThan(0n);
    // Everything paid is in the budget's spend; nothing is reserved once the essay is graded.
    const budget = (await app.t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(parseCny(budget.spent)).toBe(total);
    expect(parseCny(budget.reserved)).toBe(0n);
  });

  it('flags instead when the deep tier cannot take it (the budget cannot pay for it)', async () => {
    const text = generateEssay(33, 'zh').text;
    const score = (await grade((await assignment({})).id, text)).grade.score;
    await asNewTenant();
    // Enough for the standard grading, far too little for the premium model's worst case.
    await app.t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '0.01' }).expect(200);
    const view = await grade((await assignment({ escalate: 'deep', passMark: score })).id, text);
    expect(view.status).toBe('needs_review');
    expect(view.flags).toContain('low_confidence');
    expect(view.grade.tier).toBe('standard');
    const rows = await ledger();
    expect(rows.filter((r) => r.purpose === 'grading' && r.outcome === 'ok')).toHaveLength(1);
    expect(rows.filter((r) => r.purpose === 'escalation' && r.outcome === 'ok')).toEqual([]);
  });

  it('sets and clears escalate, passMark and expectedLength, within the rubric', async () => {
    const a = await assignment({ escalate: 'flag', passMark: 36, expectedLength: { min: 600, max: 900 } });
    expect(a).toMatchObject({ escalate: 'flag', passMark: 36, expectedLength: { min: 600, max: 900 } });
    const cleared = (await app.t.http.patch(`/v1/assignments/${a.id}`).set(bearer(teacher)).send({ passMark: null, expectedLength: null }).expect(200)).body;
    expect(cleared).toMatchObject({ escalate: 'flag', passMark: null, expectedLength: null });
    const bad = await app.t.http.patch(`/v1/assignments/${a.id}`).set(bearer(teacher)).send({ passMark: 61 }).expect(400);
    expect(bad.body.error.details[0].field).toBe('passMark');
    await app.t.http.patch(`/v1/assignments/${a.id}`).set(bearer(teacher)).send({ escalate: 'sometimes' }).expect(400);
    await app.t.http.post('/v1/assignments').set(bearer(teacher)).send({ title: 'T', prompt: 'P', rubric: 'zh-gaokao-60', expectedLength: { min: 900, max: 600 } }).expect(400);
  });

  it('flags instead when every deep provider fails, and keeps the standard grade and the books whole', async () => {
    const text = generateEssay(34, 'zh').text;
    const score = (await grade((await assignment({})).id, text)).grade.score;
    await asNewTenant();
    // The deep tier (DashScope qwen3-max, then Zhipu glm-5.3) answers 500 to every try.
    app.fake.enqueue('dashscope', Array(12).fill({ kind: 'preset', name: 'server_error' }));
    app.fake.enqueue('zhipu', Array(12).fill({ kind: 'preset', name: 'server_error' }));
    try {
      const view = await grade((await assignment({ escalate: 'deep', passMark: score })).id, text);
      expect(view.status).toBe('needs_review');
      expect(view.flags).toContain('low_confidence');
      expect(view.flags).not.toContain('escalated');
      expect(view.grade).toMatchObject({ tier: 'standard', score });
      const rows = await ledger();
      expect(rows.filter((r) => r.purpose === 'grading' && r.outcome === 'ok')).toHaveLength(1);
      expect(rows.filter((r) => r.purpose === 'escalation' && r.outcome === 'ok')).toEqual([]);
      expect(rows.filter((r) => r.purpose === 'escalation').every((r) => BigInt(r.cost_nanos) === 0n)).toBe(true);
      const budget = (await app.t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
      expect(parseCny(budget.spent)).toBe(rows.reduce((s, r) => s + BigInt(r.cost_nanos), 0n));
      expect(parseCny(budget.reserved)).toBe(0n);
    } finally {
      app.fake.reset();
      app.t.app.get(GatewayService).resetHealth();
    }
  });
});
