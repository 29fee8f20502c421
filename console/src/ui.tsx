import type { ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useState } from 'preact/hooks';
import { problems } from './api/client';
import { AppContext, useApp } from './app-context';

/** An error kept as it came and put in words when shown, so that it follows the language switch. */
function useErrorWords(): (err: unknown) => string | null {
  const locale = useContext(AppContext)?.locale;
  return (err) => (err === null ? null : problems(err, locale));
}

/** Loads data, with its error; `reload` fetches again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const words = useErrorWords();
  useEffect(() => {
    let live = true;
    load().then(
      (d) => live && (setData(d), setError(null)),
      (e) => live && setError(e ?? new Error('failed')),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return { data, error: words(error), reload: useCallback(() => setTick((n) => n + 1), []) };
}

export function Loading({ error }: { error?: string | null }) {
  const { t } = useApp();
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : (
    <p aria-busy="true">{t('loading')}</p>
  );
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id ? `${id}-h` : undefined} id={id}>
      <h2 id={id ? `${id}-h` : undefined}>{title}</h2>
      {children}
    </section>
  );
}

/** A labelled form field. */
export function Field({ label, children, hint }: { label: string; children: ComponentChildren; hint?: string }) {
  return (
    <label class="field">
      <span class="label">{label}</span>
      {children}
      {hint && <small>{hint}</small>}
    </label>
  );
}

/** Runs an action and shows its outcome (or its error) in a live region. */
export function useAction(): { busy: boolean; message: string | null; failed: boolean; run: (fn: () => Promise<string | void>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const [failed, setFailed] = useState(false);
  const words = useErrorWords();
  const run = useCallback(async (fn: () => Promise<string | void>) => {
    setBusy(true);
    setMessage(null);
    setFailure(null);
    try {
      const done = await fn();
      setFailed(false);
      setMessage(done ?? null);
    } catch (err) {
      setFailed(true);
      setFailure(err ?? new Error('failed'));
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, message: failed ? words(failure) : message, failed, run };
}

export function Outcome({ message, failed }: { message: string | null; failed: boolean }) {
  return (
    <p class={failed ? 'error' : 'ok'} role={failed ? 'alert' : 'status'} aria-live="polite">
      {message ?? ''}
    </p>
  );
}
