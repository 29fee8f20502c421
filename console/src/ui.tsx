import type { ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { problems } from './api/client';
import { AppContext, useApp } from './app-context';

/** An error kept as it came and put in words when shown, so that it follows the language switch. */
function useErrorWords(): (err: unknown) => string | null {
  const locale = useContext(AppContext)?.locale;
  return (err) => (err === null ? null : problems(err, locale));
}

/**
 * Loads data, with its error; `reload` fetches again. A new session (signed in again after the
 * last one ended) fetches again too: what failed while it was gone is loaded, not left failed.
 * What was loaded for other `deps` (another month, another filter) stays while the new ones load,
 * and goes when they fail: the page then says why (a report of the month before, left under the
 * month just chosen, read as that month's). A page that draws it with its deps draws it with
 * those it was loaded for (load them with it).
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const words = useErrorWords();
  const session = useContext(AppContext)?.session;
  const loadedFor = useRef<unknown[] | null>(null);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        loadedFor.current = [...deps, session];
        setData(d);
        setError(null);
      },
      (e) => {
        if (!live) return;
        // (another session — another school signed in on this page — is other deps too)
        const was = loadedFor.current;
        const now = [...deps, session];
        if (!was || was.length !== now.length || now.some((d, i) => !Object.is(d, was[i]))) {
          loadedFor.current = null;
          setData(undefined);
        }
        setError(e ?? new Error('failed'));
      },
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick, session]);
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
export function useAction(): { busy: boolean; message: string | null; failed: boolean; run: (fn: () => Promise<string | void>) => Promise<void>; clear: () => void } {
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
  /** Forgets the last outcome (a new attempt refused before it was sent is not told as the last one's). */
  const clear = useCallback(() => {
    setMessage(null);
    setFailure(null);
    setFailed(false);
  }, []);
  return { busy, message: failed ? words(failure) : message, failed, run, clear };
}

export function Outcome({ message, failed }: { message: string | null; failed: boolean }) {
  return (
    <p class={failed ? 'error' : 'ok'} role={failed ? 'alert' : 'status'} aria-live="polite">
      {message ?? ''}
    </p>
  );
}

/** A page of a list the API gives out in pages (`nextCursor` null on the last). */
export interface ListPage<T> {
  data: T[];
  nextCursor: string | null;
}

/**
 * A list read a page at a time: the first page as loaded, older pages added below on request
 * (`more`, null when there are none). A new first page (a filter changed, a reload) starts again.
 */
export function useOlderPages<T>(
  first: ListPage<T> | undefined,
  next: (cursor: string) => Promise<ListPage<T>>,
): { rows: T[] | undefined; more: (() => void) | null; busy: boolean; message: string | null; failed: boolean } {
  const [older, setOlder] = useState<{ after: ListPage<T>; rows: T[]; next: string | null } | null>(null);
  const action = useAction();
  const mine = older && older.after === first ? older : null;
  const cursor = mine ? mine.next : (first?.nextCursor ?? null);
  const more = () =>
    void action.run(async () => {
      if (!cursor || !first) return;
      const page = await next(cursor);
      setOlder({ after: first, rows: [...(mine?.rows ?? []), ...page.data], next: page.nextCursor });
    });
  return { rows: first ? [...first.data, ...(mine?.rows ?? [])] : undefined, more: cursor ? more : null, busy: action.busy, message: action.message, failed: action.failed };
}

/** The button under a paged list that adds its older rows, and what went wrong reading them. */
export function OlderRows({ pages, label, test }: { pages: ReturnType<typeof useOlderPages<unknown>>; label: string; test: string }) {
  return (
    <>
      {pages.more && (
        <p class="row">
          <button type="button" class="secondary" data-test={test} disabled={pages.busy} onClick={pages.more}>
            {label}
          </button>
        </p>
      )}
      <Outcome message={pages.message} failed={pages.failed} />
    </>
  );
}
