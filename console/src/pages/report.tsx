import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { cny, cnySmall, percent } from '../format';
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
        [t('deepReviewsOrdered'), String(r.deepReviews.ordered)],
        [t('deepReviewsSold'), String(r.deepReviews.sold)],
        [t('deepReviewsDelivered'), String(r.deepReviews.delivered)],
        [t('deepReviewsRefunded'), String(r.deepReviews.refunded)],
        [t('modelCost'), cny(r.modelCost)],
        ...Object.entries(r.modelCostByPurpose).map(([purpose, cost]): [string, string] => [
          t('modelCostFor', { purpose: code('purpose', purpose) }),
          cny(cost),
        ]),
        [t('revenue'), cny(r.revenue)],
        [t('margin'), cny(r.margin)],
        [t('deepReviewMargin'), cny(r.deepReviewMargin)],
        [t('costPerGrading'), cnySmall(r.costPerGrading)],
        [t('cacheHitRate'), percent(r.cacheHitRate)],
        [t('savedByCache'), cny(r.savedByCache)],
        [t('savedByCompression'), cny(r.savedByCompression)],
        [t('savedByRouting'), cny(r.savedByRouting)],
        [t('savedByBatch'), cny(r.savedByBatch)],
        [t('savedByScheduling'), cny(r.savedByScheduling)],
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
            <a class="button" href={`/v1/reports/month.csv?period=${encodeURIComponent(r.period)}`} download data-test="report-csv">
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
