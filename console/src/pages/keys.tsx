import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { dateTime } from '../format';
import { Field, Loading, Outcome, Section, useAction, useLoad } from '../ui';

/** The tenant's API keys: a new key is shown once; a key can be revoked (its console sessions end with it). */
export function KeysPage() {
  const { t, session, intl } = useApp();
  const keys = useLoad(() => ok(api.GET('/v1/api-keys')), []);
  const [name, setName] = useState('');
  const [role, setRole] = useState<'teacher' | 'admin'>('teacher');
  const [created, setCreated] = useState<string | null>(null);
  const action = useAction();

  const create = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      const k = await ok(api.POST('/v1/api-keys', { body: { name, role } }));
      setCreated(k.key);
      setName('');
      keys.reload();
    });
  };
  const revoke = (id: string) =>
    action.run(async () => {
      await ok(api.DELETE('/v1/api-keys/{id}', { params: { path: { id } } }));
      keys.reload();
      return t('revoked');
    });

  return (
    <>
      <h1>{t('keys')}</h1>
      <Section title={t('createKey')} id="create-key">
        <form onSubmit={create} class="row">
          <Field label={t('keyName')}>
            <input name="name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label={t('role')}>
            <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as 'teacher' | 'admin')}>
              <option value="teacher">{t('roleTeacher')}</option>
              <option value="admin">{t('roleAdmin')}</option>
            </select>
          </Field>
          <button type="submit" disabled={action.busy}>
            {t('createKey')}
          </button>
        </form>
        {created && (
          <p class="secret" role="status">
            {t('keyShownOnce')} <code data-test="new-key">{created}</code>
          </p>
        )}
        <Outcome message={action.message} failed={action.failed} />
      </Section>
      <Section title={t('keys')} id="key-list">
        {!keys.data ? (
          <Loading error={keys.error} />
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('keyName')}</th>
                  <th scope="col">{t('role')}</th>
                  <th scope="col">{t('created')}</th>
                  <th scope="col">{t('lastUsed')}</th>
                  <th scope="col"></th>
                </tr>
              </thead>
              <tbody>
                {keys.data.data.map((k) => (
                  <tr data-key={k.id}>
                    <th scope="row">
                      {k.name} <code>{k.prefix}…</code>
                    </th>
                    <td>{k.role === 'admin' ? t('roleAdmin') : t('roleTeacher')}</td>
                    <td>{dateTime(k.createdAt, session.timezone, intl)}</td>
                    <td>{dateTime(k.lastUsedAt, session.timezone, intl)}</td>
                    <td>
                      {k.revokedAt ? (
                        t('revoked')
                      ) : (
                        <button type="button" class="secondary" disabled={action.busy || k.id === session.keyId} onClick={() => revoke(k.id)} aria-label={`${t('revoke')} ${k.name}`}>
                          {t('revoke')}
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </>
  );
}
