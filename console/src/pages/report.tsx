import { useState } from 'preact/hooks';
import { api, ok, withSessionKey } from '../api/client';
import { useApp } from '../app-context';
import { cnyExact, cnySmall, percent } from '../format';
import { Field, Loading, Section, useLoad } from '../ui';

/** The month's business from the ledger and the orders, and its CSV. */
export function ReportPage() {
  const { t, code } = useApp();
  const [period, setPeriod] = useState('');
  const report = useLoad(() => ok(api.GET('/v1/reports/month', { params: { query: period ? { period } : {} } })), [period]);
  const r = report.data;
  const rows: Array<[string, string]> = r
    ? [
        [t('gradings'), String(r.gradings.total)],
        // How they were graded: a month graded offline (no provider, or the budget's policy) costs nothing, and says so.
        ...(['standard', 'deep', 'offline', 'fromCache'] as const).map((kind): [string, string] => [
          t('gradingsOf', { kind: code('gradingKind', kind) }),
          String(r.gradings[kind]),
        ]),
        [t('deepReviewsOrdered'), String(r.deepReviews.ordered)],
        [t('deepReviewsSold'), String(r.deepReviews.sold)],
        [t('deepReviewsDelivered'), String(r.deepReviews.delivered)],
        [t('deepReviewsRefunded'), String(r.deepReviews.refunded)],
        [t('modelCost'), cnyExact(r.modelCost)],
        ...Object.entries(r.modelCostByPurpose).map(([purpose, cost]): [string, string] => [
          t('modelCostFor', { purpose: code('purpose', purpose) }),
          cnyExact(cost),
        ]),
        [t('refunds'), cnyExact(r.refunds)],
        [t('revenue'), cnyExact(r.revenue)],
        [t('margin'), cnyExact(r.margin)],
        [t('deepReviewMargin'), cnyExact(r.deepReviewMargin)],
        [t('costPerGrading'), cnySmall(r.costPerGrading)],
        [t('cacheHitRate'), percent(r.cacheHitRate)],
        [t('savedByCache'), cnyExact(r.savedByCache)],
        [t('savedByCompression'), cnyExact(r.savedByCompression)],
        [t('savedByRouting'), cnyExact(r.savedByRouting)],
        [t('savedByBatch'), cnyExact(r.savedByBatch)],
        [t('savedByScheduling'), cnyExact(r.savedByScheduling)],
      ]
    : [];
  return (
    <>
      <h1>{t('report')}</h1>
      <Section title={r ? `${t('report')} ${r.period}` : t('report')} id="report">
        <div class="row">
          <Field label={t('period')}>
            <input name="period" type="month" value={period || r?.period || ''} onChange={(e) => setPeriod(e.currentTarget.value)} />
          </Field>
          {r && (
            <a class="button" href={withSessionKey(`/v1/reports/month.csv?period=${encodeURIComponent(r.period)}`)} download data-test="report-csv">
              CSV
            </a>
          )}
        </div>
        {!r ? (
          <Loading error={report.error} />
        ) : (
          <table data-test="report">
            <tbody>
              {rows.map(([k, v]) => (
                <tr>
                  <th scope="row">{k}</th>
                  <td class="num">{v}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </>
  );
}
