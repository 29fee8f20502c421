import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { Field, Loading, Section, useLoad } from '../ui';

const GROUPS = ['rubric', 'tier', 'model', 'source'] as const;

const fmt = (x: number | null | undefined, digits = 3) => (x === null || x === undefined ? '—' : x.toFixed(digits));

/** Agreement with the teachers' overrides across the tenant (SPEC §9), and the shadow evaluation. */
export function QualityPage() {
  const { t } = useApp();
  const [groupBy, setGroupBy] = useState<(typeof GROUPS)[number]>('rubric');
  const quality = useLoad(() => ok(api.GET('/v1/quality', { params: { query: { groupBy } } })), [groupBy]);
  const q = quality.data;
  return (
    <>
      <h1>{t('quality')}</h1>
      <Section title={t('agreement')} id="quality">
        <Field label={t('groupBy')}>
          <select name="groupBy" value={groupBy} onChange={(e) => setGroupBy(e.currentTarget.value as (typeof GROUPS)[number])}>
            {GROUPS.map((g) => (
              <option value={g}>{g}</option>
            ))}
          </select>
        </Field>
        {!q ? (
          <Loading error={quality.error} />
        ) : (
          [
            ['teacher', q.groups],
            ['shadow (standard vs deep)', q.shadow],
          ].map(([label, groups]) => (
            <>
              <h3>{label as string}</h3>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">{groupBy}</th>
                      <th scope="col">{t('rubric')}</th>
                      <th scope="col" class="num">n</th>
                      <th scope="col" class="num">{t('qwk')}</th>
                      <th scope="col" class="num">{t('exact')}</th>
                      <th scope="col" class="num">{t('adjacent')}</th>
                      <th scope="col" class="num">{t('bias')}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {(groups as typeof q.groups).map((g) => (
                      <tr>
                        <th scope="row">{g.group}</th>
                        <td>
                          {g.rubric.key} v{g.rubric.version}
                        </td>
                        <td class="num">{g.n}</td>
                        <td class="num">{fmt(g.qwk)}</td>
                        <td class="num">{fmt(g.exact, 2)}</td>
                        <td class="num">{fmt(g.adjacent, 2)}</td>
                        <td class="num">{fmt(g.bias, 2)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          ))
        )}
      </Section>
    </>
  );
}
