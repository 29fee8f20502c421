import { api, ok, type Schemas } from '../api/client';
import { useApp } from '../app-context';
import { ChartView } from '../chart';
import { isUsedUpAmount } from '../explain';
import { cnyExact, cnySmall, dateIn, dateTime, day, percent } from '../format';
import { href } from '../router';
import { Loading, Outcome, Section, useAction, useLoad } from '../ui';

/** Drawing only: a decimal string as a number of yuan for a chart's geometry (labels use the string). */
const draw = (amount: string | null | undefined) => (amount ? Number(amount) : 0);

function daysOf(period: string): string[] {
  const [y, m] = period.split('-').map(Number);
  const n = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Array.from({ length: n }, (_, i) => `${period}-${String(i + 1).padStart(2, '0')}`);
}

/** A tenant admin's month: the budget gauge, spend per day with the forecast, cost per grading and cache hits, usage by model and teacher. */
export function DashboardPage() {
  const { t, intl, session } = useApp();
  const budget = useLoad(() => ok(api.GET('/v1/budget')), []);
  const byDay = useLoad(() => ok(api.GET('/v1/usage', { params: { query: { groupBy: 'day' } } })), []);
  // From midnight 30 days ago (a date alone is the tenant's midnight): whole days, the first one too,
  // counted in the school's calendar (a browser in another zone sent a day too early or too late).
  const last30 = useLoad(() => ok(api.GET('/v1/usage', { params: { query: { groupBy: 'day', from: dateIn(new Date(Date.now() - 30 * 86_400_000), session.timezone) } } })), []);
  const byModel = useLoad(() => ok(api.GET('/v1/usage', { params: { query: { groupBy: 'model' } } })), []);
  const byTeacher = useLoad(() => ok(api.GET('/v1/usage', { params: { query: { groupBy: 'teacher' } } })), []);
  const keys = useLoad(() => ok(api.GET('/v1/api-keys')), []);
  const limits = useLoad(() => ok(api.GET('/v1/limits')), []);

  if (!budget.data) return <Loading error={budget.error} />;
  const b = budget.data;
  const days = daysOf(b.period);
  const spentByDay = new Map((byDay.data?.data ?? []).map((r) => [r.key, r.cost]));
  let running = 0;
  const cumulative = days.map((d) => (d <= (byDay.data?.data.at(-1)?.key ?? '') ? (running += draw(spentByDay.get(d))) : null));
  const lastIndex = cumulative.reduce<number>((at, v, i) => (v !== null ? i : at), -1);
  const forecastLine = days.map((_, i) => {
    if (lastIndex < 0 || i < lastIndex) return null;
    const from = cumulative[lastIndex] ?? 0;
    return from + ((draw(b.forecast.monthEnd) - from) * (i - lastIndex)) / Math.max(1, days.length - 1 - lastIndex);
  });
  const keyName = new Map((keys.data?.data ?? []).map((k) => [k.id, k.name]));
  // The cap is drawn only when the month's spend (forecast included) comes near it: a cap many
  // times the spend would flatten the spent and forecast lines onto the axis. The caption says so.
  const reach = Math.max(draw(b.forecast.monthEnd), running);
  const capInView = draw(b.monthlyCap) <= 3 * reach;
  const yuan = (v: string | number) => `¥${v}`;

  return (
    <>
      <h1>{t('navDashboard')}</h1>
      <Incidents budget={b} onChanged={budget.reload} />
      <UsedUp budget={b} />
      <div class="grid">
        <Section title={t('budget')} id="budget">
          <div class="gauge-wrap">
            <ChartView
              testId="gauge"
              summary={`${t('spent')} ${cnySmall(b.spent)}, ${t('reserved')} ${cnySmall(b.reserved)}, ${t('cap')} ${cnyExact(b.monthlyCap)}`}
              config={{
                type: 'doughnut',
                data: {
                  labels: [t('spent'), t('reserved'), t('remaining')],
                  datasets: [{ data: [draw(b.spent), draw(b.reserved), draw(b.remaining)], backgroundColor: ['#c2410c', '#f59e0b', '#d1d5db'] }],
                },
                options: { rotation: -90, circumference: 180, cutout: '65%', plugins: { legend: { position: 'bottom' } } },
              }}
            />
          </div>
          <dl class="figures" data-test="budget-figures">
            <dt>{t('spent')}</dt>
            <dd data-test="spent">{cnySmall(b.spent)}</dd>
            <dt>{t('reserved')}</dt>
            <dd>{cnySmall(b.reserved)}</dd>
            <dt>{t('cap')}</dt>
            {/* (the cap as set, every digit: "0.012940" is not ¥0.01; what is left to a fraction of a fen: ¥0.004 is not ¥0.00) */}
            <dd data-test="cap">{cnyExact(b.monthlyCap)}</dd>
            <dt>{t('remaining')}</dt>
            <dd data-test="remaining">
              {t('remainingSpent', { remaining: cnySmall(b.remaining), pct: percent(b.utilization) })}
            </dd>
            <dt>{t('forecastMonthEnd')}</dt>
            <dd>{cnySmall(b.forecast.monthEnd)}</dd>
          </dl>
          <p data-test="exhausts">{b.forecast.exhaustsOn ? t('runsOutOn', { day: day(b.forecast.exhaustsOn, intl) }) : t('doesNotRunOut')}</p>
        </Section>
        <Section title={t('spendPerDay')} id="spend">
          {!byDay.data ? (
            <Loading error={byDay.error} />
          ) : (
            <ChartView
              testId="spend-chart"
              summary={`${t('spendPerDay')}: ${(byDay.data.data ?? []).map((r) => `${r.key} ${cnySmall(r.cost)}`).join(', ')}`}
              config={{
                type: 'bar',
                data: {
                  labels: days.map((d) => d.slice(8)),
                  datasets: [
                    { type: 'bar', label: t('spendPerDay'), data: days.map((d) => draw(spentByDay.get(d))), backgroundColor: '#3b6ea5', yAxisID: 'y' },
                    { type: 'line', label: t('spent'), data: cumulative, borderColor: '#c2410c', pointRadius: 0, yAxisID: 'y1' },
                    { type: 'line', label: t('forecast'), data: forecastLine, borderColor: '#c2410c', borderDash: [6, 4], pointRadius: 0, yAxisID: 'y1' },
                    ...(capInView ? [{ type: 'line' as const, label: t('cap'), data: days.map(() => draw(b.monthlyCap)), borderColor: '#6b7280', pointRadius: 0, yAxisID: 'y1' }] : []),
                  ],
                },
                options: {
                  scales: {
                    y: { beginAtZero: true, position: 'left', ticks: { callback: yuan } },
                    y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, ticks: { callback: yuan } },
                  },
                  // A day's bar tells its spend as the API gave it (the lines are drawn, not told).
                  plugins: {
                    tooltip: {
                      filter: (item) => item.datasetIndex === 0,
                      callbacks: { label: (item) => `${t('spendPerDay')}: ${cnySmall(spentByDay.get(days[item.dataIndex]) ?? '0')}` },
                    },
                  },
                },
              }}
            />
          )}
          {!capInView && <p class="muted" data-test="cap-off-scale">{t('capOffScale', { cap: cnyExact(b.monthlyCap) })}</p>}
        </Section>
      </div>
      <Section title={`${t('costPerGrading')} · ${t('cacheHitRate')}`} id="trend">
        {!last30.data ? (
          <Loading error={last30.error} />
        ) : (
          <ChartView
            testId="trend-chart"
            summary={last30.data.data.map((r) => `${r.key}: ${cnySmall(r.costPerGrading)}, ${r.calls ? Math.round((100 * r.cacheHits) / r.calls) : 0}%`).join('; ')}
            config={{
              type: 'line',
              data: {
                labels: last30.data.data.map((r) => r.key.slice(5)),
                datasets: [
                  { label: t('costPerGrading'), data: last30.data.data.map((r) => (r.costPerGrading === null ? null : draw(r.costPerGrading))), borderColor: '#3b6ea5', yAxisID: 'y' },
                  { label: `${t('cacheHitRate')} (%)`, data: last30.data.data.map((r) => (r.calls ? (100 * r.cacheHits) / r.calls : 0)), borderColor: '#15803d', yAxisID: 'y1' },
                ],
              },
              options: { scales: { y: { beginAtZero: true }, y1: { beginAtZero: true, max: 100, position: 'right', grid: { drawOnChartArea: false } } } },
            }}
          />
        )}
      </Section>
      {/* each the page's width: a model's name and five columns do not fit half of it */}
      <UsageTable title={t('usageByModel')} column={t('model')} rows={byModel.data?.data} error={byModel.error} name={(k) => k} />
      <UsageTable title={t('usageByTeacher')} column={t('teacherKey')} rows={byTeacher.data?.data} error={byTeacher.error} name={(k) => keyName.get(k) ?? k} />
      <Limits view={limits.data} error={limits.error} />
    </>
  );
}

interface UsageRowLike {
  key: string;
  calls: number;
  cacheHits: number;
  gradings: number;
  cost: string;
  costPerGrading: string | null;
}

function UsageTable({ title, column, rows, error, name }: { title: string; column: string; rows: UsageRowLike[] | undefined; error: string | null; name: (key: string) => string }) {
  const { t } = useApp();
  return (
    <Section title={title}>
      {!rows ? (
        <Loading error={error} />
      ) : rows.length === 0 ? (
        <p class="muted">{t('noUsageYet')}</p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{column}</th>
                <th scope="col" class="num">{t('calls')}</th>
                <th scope="col" class="num">{t('gradings')}</th>
                <th scope="col" class="num">{t('cost')}</th>
                <th scope="col" class="num">{t('costPerGrading')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr>
                  <th scope="row">{name(r.key)}</th>
                  <td class="num">{r.calls}</td>
                  <td class="num">{r.gradings}</td>
                  <td class="num">{cnySmall(r.cost)}</td>
                  <td class="num">{cnySmall(r.costPerGrading)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

type LimitsView = Schemas['LimitsView'];

const SCOPE_MESSAGE = { 'per key, per instance': 'scopePerKeyPerInstance', 'per tenant': 'scopePerTenant', 'per tenant, per instance': 'scopePerTenantPerInstance' } as const;

/**
 * The school's fair-use limits (GET /v1/limits): each limit, what is in use of it now where the
 * server counts it, and where it is counted; a read limit shared with other schools on the server
 * says what this school is held to now.
 */
function Limits({ view, error }: { view: LimitsView | null | undefined; error: string | null }) {
  const { t, code, intl } = useApp();
  const count = (n: number) => n.toLocaleString(intl);
  const usage: Partial<Record<string, number>> = view?.usage ?? {};
  const shares: Partial<Record<string, number>> = view?.shares ?? {};
  return (
    <Section title={t('limitsTitle')} id="limits">
      {!view ? (
        <Loading error={error} />
      ) : (
        <>
          <p class="muted">{t('limitsExplain')}</p>
          <div class="table-wrap">
            <table data-test="limits">
              <thead>
                <tr>
                  <th scope="col">{t('limitColumn')}</th>
                  <th scope="col" class="num">{t('limitAllowed')}</th>
                  <th scope="col" class="num">{t('limitInUse')}</th>
                  <th scope="col">{t('limitCounted')}</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(view.limits).map(([name, allowed]) => {
                  // A scope newer than the console is shown as the server wrote it.
                  const scope = (view.scope as Record<string, string | undefined>)[name];
                  const scopeMessage = scope !== undefined && Object.hasOwn(SCOPE_MESSAGE, scope) ? SCOPE_MESSAGE[scope as keyof typeof SCOPE_MESSAGE] : undefined;
                  const share = shares[name];
                  return (
                    <tr data-limit={name}>
                      <th scope="row">{code('limit', name)}</th>
                      <td class="num">
                        {count(allowed)}
                        {share !== undefined && share < allowed && (
                          <div class="muted" data-test="limit-share">
                            {t('limitShareNow', { share })}
                          </div>
                        )}
                      </td>
                      <td class="num">{usage[name] === undefined ? '—' : count(usage[name])}</td>
                      <td>{scopeMessage ? t(scopeMessage) : (scope ?? '—')}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </>
      )}
    </Section>
  );
}

type Budget = Schemas['BudgetView'];

/**
 * The month's budget is used up (nothing remains to admit a call): said on top of the page, with
 * what happens to new essays under the school's policy until the month ends or the cap is raised.
 */
function UsedUp({ budget }: { budget: Budget }) {
  const { t } = useApp();
  if (!isUsedUpAmount(budget.remaining)) return null;
  return (
    <section class="card alert" id="budget-used-up" data-test="budget-used-up" role="alert">
      <h2>{t('budgetUsedUpTitle')}</h2>
      <p>{t(budget.whenExhausted === 'reject' ? 'budgetUsedUp_reject' : 'budgetUsedUp_offline', { spent: cnySmall(budget.spent), cap: cnyExact(budget.monthlyCap) })}</p>
      <p>
        <a href={`${href.settings()}`}>{t('raiseCap')}</a>
      </p>
    </section>
  );
}

/**
 * Budget incidents not yet acknowledged, on top of the page: one that pauses admission stops every
 * model call of the school until an admin acknowledges it here (POST /v1/budget/incidents/:id/acknowledge).
 */
function Incidents({ budget, onChanged }: { budget: Budget; onChanged: () => void }) {
  const { t, code, session, intl } = useApp();
  const action = useAction();
  const open = budget.incidents.filter((i) => !i.acknowledgedAt);
  if (!open.length && !budget.admissionPaused) return null;
  return (
    <section class="card alert" id="incidents" data-test="incidents" role="alert">
      <h2>{t('incidentsTitle')}</h2>
      {budget.admissionPaused && <p data-test="admission-paused">{t('incidentsPaused')}</p>}
      {open.length > 0 && (
        <>
          <p>{t('incidentsOpen')}</p>
          <ul>
            {open.map((i) => (
              <li data-incident={i.id}>
                {t('incidentLine', {
                  when: dateTime(i.createdAt, session.timezone, intl),
                  kind: code('incidentKind', i.kind),
                  model: i.model ?? '—',
                  charged: cnyExact(i.charged),
                  excess: cnyExact(i.excess),
                })}{' '}
                <button
                  type="button"
                  data-test="acknowledge"
                  disabled={action.busy}
                  onClick={() =>
                    action.run(async () => {
                      await ok(api.POST('/v1/budget/incidents/{id}/acknowledge', { params: { path: { id: i.id } } }));
                      onChanged();
                      return t('acknowledged');
                    })
                  }
                >
                  {t('acknowledge')}
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
      <Outcome message={action.message} failed={action.failed} />
    </section>
  );
}
