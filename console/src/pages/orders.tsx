import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { cnyExact, dateTime } from '../format';
import { href } from '../router';
import { Field, Loading, OlderRows, Section, useLoad, useOlderPages } from '../ui';

const STATUSES = ['awaiting_payment', 'paid', 'delivered', 'refunded', 'cancelled'] as const;
type Status = (typeof STATUSES)[number];

/**
 * Deep-review orders, newest first (a page of 500, older ones on request), for the admin who sells them: what each
 * order is at, and money that needs the school's attention — payments an order could not take (to
 * return to the payer) and what the payment provider gave back of a price (partial refunds).
 */
export function OrdersPage() {
  const { t, code, session, intl } = useApp();
  const [status, setStatus] = useState<Status | ''>('');
  // Each first page keeps the filter it was read with: until the next one arrives, its older pages
  // are read with that filter too, not with the one just chosen.
  const orders = useLoad(async () => ({ status, page: await ok(api.GET('/v1/orders', { params: { query: status ? { status } : {} } })) }), [status]);
  const shown = orders.data;
  const pages = useOlderPages(shown?.page, (cursor) => ok(api.GET('/v1/orders', { params: { query: { ...(shown?.status ? { status: shown.status } : {}), cursor } } })));
  const list = pages.rows;
  const toReturn = list?.filter((o) => o.unappliedPayments !== '0.00') ?? [];
  return (
    <>
      <h1>{t('orders')}</h1>
      <Section title={t('orders')} id="orders">
        <p class="muted">{t('ordersExplain')}</p>
        <Field label={t('orderStatus')}>
          <select name="status" value={status} onChange={(e) => setStatus(e.currentTarget.value as Status | '')}>
            <option value="">{t('orderStatusAll')}</option>
            {STATUSES.map((s) => (
              <option value={s}>{code('deep', s)}</option>
            ))}
          </select>
        </Field>
        {toReturn.length > 0 && (
          <p class="flags" role="status" data-test="money-to-return">
            {t('ordersMoneyToReturn', { n: String(toReturn.length) })}
          </p>
        )}
        {!list ? (
          <Loading error={orders.error} />
        ) : list.length === 0 ? (
          <p>{t('noOrders')}</p>
        ) : (
          <div class="table-wrap">
            <table data-test="orders">
              <thead>
                <tr>
                  <th scope="col">{t('created')}</th>
                  <th scope="col">{t('orderStatus')}</th>
                  <th scope="col" class="num">{t('price')}</th>
                  <th scope="col" class="num">{t('unappliedPayments')}</th>
                  <th scope="col" class="num">{t('partialRefunds')}</th>
                  <th scope="col">{t('orderReason')}</th>
                  <th scope="col">{t('essay')}</th>
                </tr>
              </thead>
              <tbody>
                {list.map((o) => (
                  <tr data-order={o.orderId}>
                    <td class="time">{dateTime(o.createdAt, session.timezone, intl)}</td>
                    <td>{code('deep', o.status)}</td>
                    <td class="num">{cnyExact(o.price)}</td>
                    <td class="num">{o.unappliedPayments === '0.00' ? '—' : cnyExact(o.unappliedPayments)}</td>
                    <td class="num">{o.partialRefunds === '0.00' ? '—' : cnyExact(o.partialRefunds)}</td>
                    <td>{o.refundReason ?? ''}</td>
                    <td>
                      <a href={href.essay(o.essayId)}>{t('openEssay')}</a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <OlderRows pages={pages} label={t('moreOrders')} test="more-orders" />
      </Section>
    </>
  );
}
