import { AlertsService } from '../src/billing/alerts.service';
import { BudgetService } from '../src/billing/budget.service';
import { ClusterBus } from '../src/db/cluster-bus';
import { MetricsService } from '../src/metrics/metrics.service';
import { Factory } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { bearer } from './support/factories';
import { OPERATOR_TOKEN } from './support/test-app';
import { appWithFakeForSuite } from './support/app-with-fake';

/**
 * Prometheus series labelled by tenant are bounded (METRICS_TENANT_SERIES): a scrape renders every
 * series on the event loop, and 10,000 tenants' took 106–231 ms. Past the bound, tenants share one
 * series (tenant="_other") and lose no spend.
 */
describe('metrics: series labelled by tenant', () => {
  const s = appWithFakeForSuite({ METRICS_TENANT_SERIES: '2' });

  /** The value of each series of a metric, by its tenant label. */
  function series(text: string, name: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const m of text.matchAll(new RegExp(`^${name}\\{tenant="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[2]));
    return out;
  }

  it('gives the first tenants their own series and counts the others together, losing no spend', async () => {
    const tenants = [];
    for (let i = 0; i < 4; i++) tenants.push(await s.tenantWithTeacher());
    // The first tenant's first call: a blank answer the provider billed (a failed attempt, charged), then the next model's.
    s.fake.enqueue('deepseek', { kind: 'blank-json' });
    for (const [i, { teacher }] of tenants.entries()) {
      await s.t.http.post('/v1/chat/completions').set(bearer(teacher)).send({ model: 'inkstone-standard', messages: [{ role: 'user', content: `请用一句话介绍第${i}座山。` }] }).expect(200);
    }
    const [failed] = await s.t.dataSource.query(`SELECT cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 AND error_reason = 'blank_output'`, [tenants[0].tenant.tenantId]);
    expect(BigInt(failed.cost)).toBeGreaterThan(0n);
    const text = (await s.t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200)).text;
    const spend = series(text, 'inkstone_llm_spend_nanoyuan_total');
    const ids = tenants.map((x) => x.tenant.tenantId);
    // Two tenants with series of their own, the other two under _other.
    expect([...spend.keys()].sort()).toEqual([...ids.slice(0, 2), '_other'].sort());
    // Every yuan is in some series: the series add up to the ledger's spend.
    const [ledger] = await s.t.dataSource.query(`SELECT sum(cost_nanos)::text AS n FROM llm_calls WHERE tenant_id = ANY($1::uuid[])`, [ids]);
    expect(BigInt([...spend.values()].reduce((a, b) => a + b, 0))).toBe(BigInt(ledger.n));
    expect(spend.get('_other')).toBeGreaterThan(0);
    // Tokens by kind (each model's label sets are made once and reused): the series add up to the ledger's.
    const tokens = new Map<string, number>();
    for (const m of text.matchAll(/^inkstone_llm_tokens_total\{provider="([^"]+)",model="([^"]+)",kind="([^"]+)"\} (\S+)$/gm)) tokens.set(`${m[1]}/${m[2]}/${m[3]}`, Number(m[4]));
    const byKind = await s.t.dataSource.query(
      `SELECT provider || '/' || model AS m, sum(input_tokens - cached_input_tokens)::int AS input, sum(cached_input_tokens)::int AS cached, sum(output_tokens)::int AS output
         FROM llm_calls WHERE tenant_id = ANY($1::uuid[]) GROUP BY 1`,
      [ids],
    );
    expect(byKind.length).toBeGreaterThan(0);
    for (const row of byKind) {
      expect(tokens.get(`${row.m}/input`)).toBe(row.input);
      expect(tokens.get(`${row.m}/cached_input`)).toBe(row.cached);
      expect(tokens.get(`${row.m}/output`)).toBe(row.output);
    }
    expect(byKind[0].output).toBeGreaterThan(0);
    // The budget gauge: one ratio a tenant, none for the tenants past the bound.
    expect([...series(text, 'inkstone_budget_utilization_ratio').keys()].sort()).toEqual(ids.slice(0, 2).sort());
    // It shows the latest period: last month's call settled after the turn does not put last month's ratio back.
    const alerts = s.t.app.get(AlertsService);
    const gauge = async () => series((await s.t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200)).text, 'inkstone_budget_utilization_ratio').get(ids[0]);
    await alerts.onSpend(ids[0], '2999-01', 25n, 100n, []);
    expect(await gauge()).toBe(0.25);
    await alerts.onSpend(ids[0], '2998-12', 90n, 100n, []);
    expect(await gauge()).toBe(0.25);
    await alerts.onSpend(ids[0], '2999-01', 50n, 100n, []);
    expect(await gauge()).toBe(0.5);
  });
});

describe('metrics: the budget gauge shows the current period under the current cap', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
  });
  afterAll(() => t.close());

  const gaugeIn = async (render: () => Promise<string>, tenantId: string) => {
    const m = new RegExp(`^inkstone_budget_utilization_ratio\\{tenant="${tenantId}"\\} (\\S+)$`, 'm').exec(await render());
    return m ? Number(m[1]) : null;
  };

  it("drops a school's ratio once its period has ended, and on every instance once its cap changes, until a settlement sets it again", async () => {
    const school = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
    const scrape = async () => (await t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200)).text;
    const alerts = t.app.get(AlertsService);
    // Last month's settlement (the school used it all), read after the month turned in Shanghai: no ratio of this month yet.
    await alerts.onSpend(school.tenantId, '2026-01', 100n, 100n, [], 'Asia/Shanghai');
    // Before: 1 — exhausted, though nothing of this month is spent.
    expect(await gaugeIn(scrape, school.tenantId)).toBeNull();
    // This month's: shown.
    const period = await t.app.get(BudgetService).currentPeriod(school.tenantId);
    await alerts.onSpend(school.tenantId, period, 50n, 100n, [], 'Asia/Shanghai');
    expect(await gaugeIn(scrape, school.tenantId)).toBe(0.5);
    // Another instance shows the same ratio; the cap is doubled through the first.
    const b = await t.another();
    const onB = () => b.get(MetricsService).render().then((r) => r.body);
    await b.get(AlertsService).onSpend(school.tenantId, period, 50n, 100n, [], 'Asia/Shanghai');
    expect(await gaugeIn(onB, school.tenantId)).toBe(0.5);
    // Other settings changed under the same cap: the ratio stays (the change is still heard there).
    let heard = 0;
    b.get(ClusterBus).on<{ tenantId: string }>('budget', ({ tenantId }) => void (tenantId === school.tenantId && heard++));
    await t.http.put('/v1/budget').set(bearer(school.adminKey)).send({ monthlyCap: '100.00', alertThresholds: [0.5, 0.9] }).expect(200);
    await waitFor(async () => heard === 1, 5_000, 'the change heard on the other instance');
    // Before: null — dropped as if the cap had changed.
    expect(await gaugeIn(onB, school.tenantId)).toBe(0.5);
    await t.http.put('/v1/budget').set(bearer(school.adminKey)).send({ monthlyCap: '200.00' }).expect(200);
    // Before: 0.5 on the other instance, the ratio under the old cap.
    await waitFor(async () => (await gaugeIn(onB, school.tenantId)) === null, 5_000, 'the old ratio dropped on the other instance');
  });
});

