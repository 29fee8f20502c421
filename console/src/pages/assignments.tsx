import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { dateTime, wallTimeToIso } from '../format';
import { href } from '../router';
import { Field, Loading, OlderRows, Outcome, Section, useAction, useLoad, useOlderPages } from '../ui';

/** A teacher's assignments: the list with counts (newest first, older pages on request), and a new one. */
export function AssignmentsPage() {
  const { t, session, intl } = useApp();
  const list = useLoad(() => ok(api.GET('/v1/assignments')), []);
  // Older pages, read on request (a school may have more assignments than a page holds).
  const pages = useOlderPages(list.data, (cursor) => ok(api.GET('/v1/assignments', { params: { query: { cursor } } })));
  const rows = pages.rows ?? [];
  const rubrics = useLoad(() => ok(api.GET('/v1/rubrics')), []);
  const [title, setTitle] = useState('');
  const [prompt, setPrompt] = useState('');
  const [rubric, setRubric] = useState('');
  const [language, setLanguage] = useState('');
  const [dueBy, setDueBy] = useState('');
  const [passMark, setPassMark] = useState('');
  const action = useAction();
  // the rubric chosen, or the first one for the chosen language
  const fitting = (rubrics.data?.data ?? []).filter((r) => !language || r.language === language || r.language === 'any');
  const chosenRubric = rubric && fitting.some((r) => r.key === rubric) ? rubric : (fitting[0]?.key ?? '');

  const maxScore = (rubrics.data?.data ?? []).find((r) => r.key === chosenRubric)?.maxScore;

  const create = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      // the deadline as typed, a wall time where the school is (the service checks it is ahead and within 60 days)
      const due = dueBy.trim() ? wallTimeToIso(dueBy, session.timezone) : null;
      if (dueBy.trim() && !due) throw new Error(t('dueByInvalid'));
      const created = await ok(
        api.POST('/v1/assignments', {
          body: {
            title,
            prompt,
            rubric: chosenRubric,
            ...(language ? { language: language as 'zh' | 'en' } : {}),
            ...(due ? { dueBy: due } : {}),
            ...(passMark.trim() ? { passMark: Number(passMark) } : {}),
          },
        }),
      );
      location.hash = href.assignment(created.id);
    });
  };

  return (
    <>
      <h1>{t('navAssignments')}</h1>
      <Section title={t('navAssignments')} id="assignment-list">
        {!list.data ? (
          <Loading error={list.error} />
        ) : rows.length === 0 ? (
          <p>{t('noAssignments')}</p>
        ) : (
          <>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('title')}</th>
                  <th scope="col" class="num">{t('essays')}</th>
                  <th scope="col" class="num">{t('graded')}</th>
                  <th scope="col">{t('created')}</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((a) => (
                  <tr>
                    <td>
                      <a href={href.assignment(a.id)}>{a.title}</a>
                    </td>
                    <td class="num">{a.counts.total}</td>
                    <td class="num">{a.counts.graded}</td>
                    <td class="time">{dateTime(a.createdAt, session.timezone, intl)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <OlderRows pages={pages} label={t('moreAssignments')} test="more-assignments" />
          </>
        )}
      </Section>
      <Section title={t('newAssignment')} id="new-assignment">
        <form onSubmit={create} class="stack">
          <Field label={t('title')}>
            <input name="title" required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
          </Field>
          <Field label={t('prompt')}>
            <textarea name="prompt" required rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
          </Field>
          <Field label={t('languageOfEssays')}>
            <select name="language" value={language} onChange={(e) => setLanguage(e.currentTarget.value)}>
              <option value="">{t('langAuto')}</option>
              <option value="zh">{t('langZh')}</option>
              <option value="en">{t('langEn')}</option>
            </select>
          </Field>
          <Field label={t('rubric')}>
            <select name="rubric" required value={chosenRubric} onChange={(e) => setRubric(e.currentTarget.value)}>
              {fitting.map((r) => (
                <option value={r.key}>
                  {r.name} ({r.key})
                </option>
              ))}
            </select>
          </Field>
          <Field label={t('dueByLabel')} hint={t('dueByHint', { zone: session.timezone })}>
            <input name="dueBy" type="datetime-local" value={dueBy} onInput={(e) => setDueBy(e.currentTarget.value)} />
          </Field>
          <Field label={t('passMarkLabel')}>
            <input name="passMark" type="number" min={0} max={maxScore} step="any" value={passMark} onInput={(e) => setPassMark(e.currentTarget.value)} />
          </Field>
          <button type="submit" disabled={action.busy}>
            {t('create')}
          </button>
          <Outcome message={action.message} failed={action.failed} />
        </form>
      </Section>
    </>
  );
}
