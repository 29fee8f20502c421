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
  // The key just created, shown once: until it is revoked (here, or as the list says on reload).
  const [created, setCreated] = useState<{ id: string; key: string } | null>(null);
  const action = useAction();
  // Revoking is asked twice, on the row; its outcome is told on that row.
  const revoking = useAction();
  const [asked, setAsked] = useState<string | null>(null);
  const [acted, setActed] = useState<string | null>(null);

  const create = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      const k = await ok(api.POST('/v1/api-keys', { body: { name, role } }));
      setCreated({ id: k.id, key: k.key });
      setName('');
      keys.reload();
    });
  };
  const revoke = (id: string, name: string) => {
    setActed(id);
    return revoking.run(async () => {
      await ok(api.DELETE('/v1/api-keys/{id}', { params: { path: { id } } }));
      setAsked(null);
      setCreated((c) => (c?.id === id ? null : c));
      keys.reload();
      return t('revokedName', { name });
    });
  };

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
        {created && !keys.data?.data.some((k) => k.id === created.id && k.revokedAt) && (
          <p class="secret" role="status">
            {t('keyShownOnce')} <code data-test="new-key">{created.key}</code>
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
                    <td class="time">{dateTime(k.createdAt, session.timezone, intl)}</td>
                    <td class="time">{dateTime(k.lastUsedAt, session.timezone, intl)}</td>
                    <td data-test="revoke-cell">
                      {k.revokedAt ? (
                        t('revoked')
                      ) : k.id === session.keyId ? (
                        // Not the key this session runs on: say why, on hover and to a screen reader.
                        <span title={t('ownKeyNoRevoke')}>
                          <button type="button" class="secondary" disabled title={t('ownKeyNoRevoke')} aria-describedby={`own-${k.id}`}>
                            {t('revoke')}
                          </button>
                          <span class="sr-only" id={`own-${k.id}`}>
                            {t('ownKeyNoRevoke')}
                          </span>
                        </span>
                      ) : asked === k.id ? (
                        <span class="confirm">
                          <span>{t('revokeAsk', { name: k.name })}</span>{' '}
                          <button type="button" class="secondary" data-test="revoke-confirm" disabled={revoking.busy} onClick={() => revoke(k.id, k.name)}>
                            {t('revokeConfirm')}
                          </button>{' '}
                          <button type="button" disabled={revoking.busy} onClick={() => setAsked(null)}>
                            {t('cancel')}
                          </button>
                        </span>
                      ) : (
                        <button type="button" class="secondary" data-test="revoke" disabled={revoking.busy} onClick={() => (setAsked(k.id), setActed(null))} aria-label={`${t('revoke')} ${k.name}`}>
                          {t('revoke')}
                        </button>
                      )}
                      {acted === k.id && revoking.message && <Outcome message={revoking.message} failed={revoking.failed} />}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {keys.data.moreRevoked && (
              <p class="muted" data-test="older-revoked">
                {t('olderRevokedHidden')}
              </p>
            )}
          </div>
        )}
      </Section>
    </>
  );
}
