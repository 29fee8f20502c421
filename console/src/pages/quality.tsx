import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { AgreementTable } from '../agreement';
import { useApp } from '../app-context';
import type { MessageKey } from '../i18n';
import { Field, Loading, Section, useLoad } from '../ui';

const GROUPS = ['rubric', 'tier', 'model', 'source'] as const;
/** Each grouping's name, as a column and as a choice. */
const GROUP_LABELS: Record<(typeof GROUPS)[number], MessageKey> = { rubric: 'rubric', tier: 'groupTier', model: 'model', source: 'groupSource' };

/**
 * A group's value in words: a tier (standard, deep), a grade's source (model, offline, teacher,
 * reused), "offline" among models; a model keeps its name.
 */
export function groupValue(code: (prefix: string, value: string) => string, groupBy: (typeof GROUPS)[number], value: string): string {
  if (groupBy === 'tier') return code('tier', value);
  if (groupBy === 'source') return code('source', value);
  if (groupBy === 'model') return code('model', value);
  return value;
}

/** Agreement with the teachers' overrides across the tenant (SPEC §9), and the shadow evaluation. */
export function QualityPage() {
  const { t, code } = useApp();
  const [groupBy, setGroupBy] = useState<(typeof GROUPS)[number]>('rubric');
  // (with the grouping it was read with: drawn under its own column name while another loads)
  const quality = useLoad(async () => ({ groupBy, view: await ok(api.GET('/v1/quality', { params: { query: { groupBy } } })) }), [groupBy]);
  // Rubrics by their names (GET /v1/rubrics); one the list does not have keeps its key.
  const rubrics = useLoad(() => ok(api.GET('/v1/rubrics')), []);
  const rubricName = (key: string, version: number) => {
    const r = rubrics.data?.data.find((x) => x.key === key);
    return r ? (r.version === version ? r.name : `${r.name} (v${version})`) : `${key} v${version}`;
  };
  const q = quality.data?.view;
  // Grouped by rubric, the group is the rubric: one column says it.
  const shownBy = quality.data?.groupBy ?? groupBy;
  const byRubric = shownBy === 'rubric';
  return (
    <>
      <h1>{t('quality')}</h1>
      <Section title={t('agreement')} id="quality">
        <Field label={t('groupBy')}>
          <select name="groupBy" value={groupBy} onChange={(e) => setGroupBy(e.currentTarget.value as (typeof GROUPS)[number])}>
            {GROUPS.map((g) => (
              <option value={g}>{t(GROUP_LABELS[g])}</option>
            ))}
          </select>
        </Field>
        {!q ? (
          <Loading error={quality.error} />
        ) : (
          (
            [
              ['agreementTeachers', q.groups],
              ['agreementShadow', q.shadow],
            ] as const
          ).map(([label, groups]) => (
            <>
              <h3>{t(label)}</h3>
              {groups.length === 0 ? (
                <p class="muted">{t('noAgreementYet')}</p>
              ) : (
                <AgreementTable
                  labels={byRubric ? [t('rubric')] : [t(GROUP_LABELS[shownBy]), t('rubric')]}
                  count={t('essays')}
                  rows={groups.map((g) => {
                    const rubric = <span title={`${g.rubric.key} v${g.rubric.version}`}>{rubricName(g.rubric.key, g.rubric.version)}</span>;
                    return { cells: byRubric ? [rubric] : [groupValue(code, shownBy, g.group), rubric], a: g };
                  })}
                />
              )}
            </>
          ))
        )}
      </Section>
    </>
  );
}
