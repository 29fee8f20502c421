import type { ComponentChildren } from 'preact';
import { useApp } from './app-context';

/** An agreement figure (QWK, shares, bias) with fixed decimals, or a dash when it is undefined. */
export function figure(x: number | null | undefined, digits = 3): string {
  return x === null || x === undefined ? '—' : x.toFixed(digits);
}

interface AgreementFigures {
  n: number;
  qwk: number | null;
  exact: number | null;
  adjacent: number | null;
  bias: number | null;
}

/**
 * Agreement (SPEC §9) as a table: each row's label cells (the first is its header), then n, QWK,
 * exact, adjacent and bias. Used for an assignment (by dimension) and across the tenant (by group).
 */
export function AgreementTable({ labels, count, rows }: { labels: string[]; count: string; rows: Array<{ cells: ComponentChildren[]; a: AgreementFigures }> }) {
  const { t } = useApp();
  return (
    <div class="table-wrap">
      <table class="agreement">
        <thead>
          <tr>
            {labels.map((l) => (
              <th scope="col">{l}</th>
            ))}
            <th scope="col" class="num">
              {count}
            </th>
            <th scope="col" class="num">{t('qwk')}</th>
            <th scope="col" class="num">{t('exact')}</th>
            <th scope="col" class="num">{t('adjacent')}</th>
            <th scope="col" class="num">{t('bias')}</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ cells, a }) => (
            <tr>
              {cells.map((c, i) => (i === 0 ? <th scope="row">{c}</th> : <td>{c}</td>))}
              <td class="num">{a.n}</td>
              <td class="num">{figure(a.qwk)}</td>
              <td class="num">{figure(a.exact, 2)}</td>
              <td class="num">{figure(a.adjacent, 2)}</td>
              <td class="num">{figure(a.bias, 2)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
