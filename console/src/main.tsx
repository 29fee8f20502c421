import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, ok, problems, setCsrfToken, setErrorLocale, setErrorTimeZone, whenUnauthenticated } from './api/client';
import { AppContext, AppContextValue, Session, useApp } from './app-context';
import { initialLocale, intlLocale, Locale, MessageKey, rememberLocale, translate, translateCode } from './i18n';
import { ADMIN_ROUTES, href, Route, useRoute } from './router';
import { AssignmentPage } from './pages/assignment';
import { AssignmentsPage } from './pages/assignments';
import { EssayPage } from './pages/essay';
import { DashboardPage } from './pages/dashboard';
import { KeysPage } from './pages/keys';
import { SettingsPage } from './pages/settings';
import { OrdersPage } from './pages/orders';
import { ReportPage } from './pages/report';
import { QualityPage } from './pages/quality';

type SessionAnswer = { tenantId: string; tenantName: string; keyId: string; role: string; timezone: string; expiresAt: string; csrfToken: string };

function toSession(s: SessionAnswer): Session {
  setCsrfToken(s.csrfToken, s.keyId);
  return { tenantId: s.tenantId, tenantName: s.tenantName, keyId: s.keyId, role: s.role, timezone: s.timezone, expiresAt: s.expiresAt };
}

function SignIn({ locale, onSignedIn, ended, dialog }: { locale: Locale; onSignedIn: (s: Session) => void; ended?: boolean; dialog?: boolean }) {
  const Root = dialog ? 'div' : 'main';
  const t = (k: MessageKey) => translate(locale, k);
  const [key, setKey] = useState('');
  // kept as it came, put in words when shown (the language can change meanwhile)
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await ok(api.POST('/v1/console/session', { body: { key } }));
      setKey('');
      onSignedIn(toSession(s as SessionAnswer));
    } catch (err) {
      setError(err ?? new Error('failed'));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Root class="signin">
      <h1 id="signin-title">{t('signInTitle')}</h1>
      {ended && (
        <p class="error" role="alert" data-test="session-ended">
          {t('sessionEnded')}
        </p>
      )}
      <p>{t('signInHelp')}</p>
      <form onSubmit={submit}>
        <label class="field">
          <span class="label">{t('apiKey')}</span>
          <input name="key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy || !key}>
          {t('signIn')}
        </button>
        {error !== null && (
          <p class="error" role="alert">
            {problems(error, locale)}
          </p>
        )}
      </form>
    </Root>
  );
}

function Page({ route }: { route: Route }) {
  const { session, t } = useApp();
  if (ADMIN_ROUTES.has(route.name) && session.role !== 'admin') {
    return (
      <p class="error" role="alert" data-test="not-allowed">
        {t('notAllowed')}
      </p>
    );
  }
  // A page of one essay or assignment is keyed by its id: another id is a new page (nothing typed
  // or loaded for one essay is ever shown, or saved, on another).
  switch (route.name) {
    case 'assignments':
      return <AssignmentsPage />;
    case 'assignment':
      return <AssignmentPage key={route.id} id={route.id!} />;
    case 'essay':
      return <EssayPage key={route.id} id={route.id!} print={false} />;
    case 'print':
      return <EssayPage key={route.id} id={route.id!} print />;
    case 'dashboard':
      return <DashboardPage />;
    case 'keys':
      return <KeysPage />;
    case 'settings':
      return <SettingsPage />;
    case 'report':
      return <ReportPage />;
    case 'orders':
      return <OrdersPage />;
    case 'quality':
      return <QualityPage />;
    default:
      return <p>{t('notFound')}</p>;
  }
}

function App() {
  const [locale, setLocale] = useState<Locale>(initialLocale);
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  // The service refused the session mid-use (its key revoked, or it expired): the sign-in page says so.
  const [ended, setEnded] = useState(false);
  const route = useRoute();

  // Errors told outside a page's hooks (problems() without a locale) follow the console's language.
  setErrorLocale(locale);
  // …and their dates in the school's time zone, as every date on the pages.
  if (session) setErrorTimeZone(session.timezone);
  useEffect(() => {
    document.documentElement.lang = locale === 'zh' ? 'zh-CN' : 'en';
  }, [locale]);
  // Remembered when chosen (an effect runs after paint: a reload right after the switch could miss it).
  const chooseLocale = (next: Locale) => {
    rememberLocale(next);
    setLocale(next);
  };
  useEffect(() => {
    // A session refused mid-use keeps its page (and whatever was typed in it) under the sign-in
    // dialog: signed in again with the same school and role, the page is as it was.
    whenUnauthenticated(() => {
      setSession((was) => {
        if (was) setEnded(true);
        return was ?? null;
      });
    });
    api.GET('/v1/console/session').then(
      ({ data, response }) => setSession(response.ok && data ? toSession(data as SessionAnswer) : null),
      () => setSession(null),
    );
  }, []);

  const value = useMemo<AppContextValue | null>(
    () => (session ? { locale, intl: intlLocale(locale), t: (k, vars) => translate(locale, k, vars), code: (p, c, f) => translateCode(locale, p, c, f), session } : null),
    [locale, session],
  );

  // Signed out only when the service says so: a refused sign-out (the service stopping, its database
  // away) leaves the session live, and the page must not look signed out on a shared computer.
  const [signOutError, setSignOutError] = useState<string | null>(null);
  const signOut = async () => {
    try {
      await ok(api.DELETE('/v1/console/session'));
    } catch (err) {
      setSignOutError(problems(err, locale));
      return;
    }
    setSignOutError(null);
    setCsrfToken('');
    setSession(null);
    location.hash = '';
  };

  const switcher = (
    <label class="lang">
      <span class="sr-only">{translate(locale, 'language')}</span>
      <select value={locale} onChange={(e) => chooseLocale(e.currentTarget.value as Locale)} aria-label={translate(locale, 'language')}>
        <option value="zh">中文</option>
        <option value="en">English</option>
      </select>
    </label>
  );

  if (session === undefined) return <p aria-busy="true">{translate(locale, 'loading')}</p>;
  /** Signed in again after the session ended: the same school and role keep the page; another starts afresh. */
  const signedInAgain = (s: Session) => {
    const same = session && s.tenantId === session.tenantId && s.role === session.role;
    setEnded(false);
    setSession(s);
    if (!same) location.hash = '';
  };
  if (!session || !value) {
    return (
      <>
        <header class="top">
          <span class="brand">{translate(locale, 'appName')}</span>
          {switcher}
        </header>
        <SignIn
          locale={locale}
          ended={ended}
          onSignedIn={(s) => {
            setEnded(false);
            setSession(s);
          }}
        />
      </>
    );
  }
  const t = value.t;
  const isAdmin = session.role === 'admin';
  const nav: Array<[string, MessageKey, boolean]> = [
    [href.assignments(), 'navAssignments', true],
    [href.quality(), 'navQuality', true],
    [href.dashboard(), 'navDashboard', isAdmin],
    [href.report(), 'navReport', isAdmin],
    [href.orders(), 'navOrders', isAdmin],
    [href.keys(), 'navKeys', isAdmin],
    [href.settings(), 'navSettings', isAdmin],
  ];
  // The page's own entry: the longest link the address is at or under (#/admin/keys is API keys, not Budget & usage).
  const here = route.name === 'assignments' ? href.assignments() : location.hash; // (no address yet, right after sign-in: the assignments)
  const current = nav
    .map(([link]) => link)
    .filter((link) => here === link || here.startsWith(`${link}/`))
    .reduce<string | undefined>((best, link) => (!best || link.length > best.length ? link : best), undefined);
  return (
    <AppContext.Provider value={value}>
      <header class={`top ${route.name === 'print' ? 'no-print' : ''}`} inert={ended}>
        <span class="brand">{t('appName')}</span>
        <nav aria-label={t('navMain')}>
          {nav
            .filter(([, , shown]) => shown)
            .map(([link, label]) => (
              <a href={link} aria-current={link === current ? 'page' : undefined}>
                {t(label)}
              </a>
            ))}
        </nav>
        <span class="who" data-test="who">
          {t('signedInAs')}: {isAdmin ? t('roleAdmin') : t('roleTeacher')} · <span data-test="school">{session.tenantName}</span>
        </span>
        {switcher}
        <button type="button" class="link" onClick={signOut}>
          {t('signOut')}
        </button>
        {signOutError && (
          <span class="error" role="alert" data-test="signout-error">
            {t('signOutFailed')}: {signOutError}
          </span>
        )}
      </header>
      <main id="main" inert={ended} aria-hidden={ended ? 'true' : undefined}>
        <Page key={`${session.tenantId}:${session.role}`} route={route} />
      </main>
      {ended && (
        <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="signin-title" data-test="signin-again">
          <SignIn locale={locale} ended dialog onSignedIn={signedInAgain} />
        </div>
      )}
    </AppContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
