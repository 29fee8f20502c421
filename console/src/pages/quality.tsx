import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { AgreementTable } from '../agreement';
import { useApp } from '../app-context';
import { Field, Loading, Section, useLoad } from '../ui';

const GROUPS = ['rubric', 'tier', 'model', 'source'] as const;

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
              <AgreementTable
                labels={[groupBy, t('rubric')]}
                count="n"
                rows={(groups as typeof q.groups).map((g) => ({ cells: [g.group, `${g.rubric.key} v${g.rubric.version}`], a: g }))}
              />
            </>
          ))
        )}
      </Section>
    </>
  );
}
