import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiFailure, ok, problems, type Schemas, withSessionKey } from '../api/client';
import { AgreementTable, figure } from '../agreement';
import { useApp } from '../app-context';
import { ChartView } from '../chart';
import { regradeOutcome } from '../explain';
import { dateTime } from '../format';
import { href } from '../router';
import { Field, Loading, Outcome, Section, useAction, useLoad } from '../ui';
import { essaysFromPaste, problemText, readFiles, type UploadEssay } from '../upload';

type Essay = Schemas['EssaySummary'];

const TERMINAL = new Set(['graded', 'failed', 'needs_review']);
/** Pages of 100 essays read for one assignment's list (2,000 essays). */
const MAX_PAGES = 20;
/**
 * Essays followed over SSE at once; the rest are polled from the list (the tenant has a cap on open
 * streams too). Two: a browser opens six connections at most to one server over HTTP/1.1, and an
 * open stream holds one, so with more the page's own requests (a save, an upload, the list's
 * polls, another tab) waited for grading to end.
 */
const MAX_STREAMS = 2;
/** Essays submitted at once while a class set uploads. */
const UPLOAD_PARALLEL = 4;

export function AssignmentPage({ id }: { id: string }) {
  const { t, session, intl } = useApp();
  const detail = useLoad(() => ok(api.GET('/v1/assignments/{id}', { params: { path: { id } } })), [id]);
  const [uploaded, setUploaded] = useState(0);
  if (!detail.data) return <Loading error={detail.error} />;
  const a = detail.data;
  return (
    <>
      <p>
        <a href={href.assignments()}>← {t('back')}</a>
      </p>
      <h1>{a.title}</h1>
      <p class="prompt">{a.prompt}</p>
      {(a.dueBy || a.passMark !== null) && (
        <p class="muted" data-test="assignment-terms">
          {[a.dueBy ? t('dueByShown', { when: dateTime(a.dueBy, session.timezone, intl) }) : null, a.passMark !== null ? t('passMarkShown', { n: a.passMark }) : null].filter(Boolean).join(' · ')}
        </p>
      )}
      <div class="grid">
        <Section title={t('scoreDistribution')} id="distribution">
          <p>
            {t('essays')}: {a.counts.total} · {t('graded')}: {a.counts.graded} · {t('mean')}: {a.scores.mean ?? '—'} · {t('median')}: {a.scores.median ?? '—'}
          </p>
          <ChartView
            testId="histogram"
            summary={a.scores.distribution.map((b) => `${b.from}–${b.to}: ${b.count}`).join(', ')}
            config={{
              type: 'bar',
              data: {
                labels: a.scores.distribution.map((b) => `${b.from}–${b.to}`),
                datasets: [{ label: t('essays'), data: a.scores.distribution.map((b) => b.count), backgroundColor: '#3b6ea5' }],
              },
              options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
            }}
          />
        </Section>
        <Upload assignmentId={id} onDone={() => (setUploaded((n) => n + 1), detail.reload())} />
      </div>
      <EssayList assignmentId={id} refresh={uploaded} onFinished={detail.reload} />
      {/* A regrade changes grades (and statuses): the list and the figures above are read again. */}
      <AgreementPanel assignmentId={id} onRegraded={() => (setUploaded((n) => n + 1), detail.reload())} />
    </>
  );
}

function Upload({ assignmentId, onDone }: { assignmentId: string; onDone: () => void }) {
  const { t } = useApp();
  const [studentRef, setStudentRef] = useState('');
  const [text, setText] = useState('');
  const [progress, setProgress] = useState<{ done: number; total: number; ok: number } | null>(null);
  const [errors, setErrors] = useState<string[]>([]);
  const files = useRef<HTMLInputElement>(null);
  // One upload at a time: a second click while a class set is sent would send it all again (the
  // ref is set at once, before the page draws the buttons disabled).
  const [busy, setBusy] = useState(false);
  const sending = useRef(false);
  // Each essay of this page is sent under one Idempotency-Key, whatever the attempt: sent again (the
  // same files after some failed, a retry after an answer that never came) the service answers with
  // the essay it stored, not a second one. (Keys last 24 hours at the service; this page's life here.)
  // Two essays of one upload alike (the same text, no student line) are two essays: the key is the
  // essay's and its place among those alike in the upload. Files are sent again whole (those taken
  // answered as they were); a paste keeps only what was not taken, so an essay sent again from it
  // takes the first key of its text the service has not taken yet.
  const keys = useRef(new Map<string, string>());
  const taken = useRef(new Set<string>());
  const keysOf = (essays: UploadEssay[], resent: 'all' | 'untaken'): Map<UploadEssay, string> => {
    const alike = new Map<string, number>();
    const out = new Map<UploadEssay, string>();
    for (const e of essays) {
      const content = JSON.stringify([assignmentId, e.studentRef ?? '', e.title ?? '', e.text]);
      let n = alike.get(content) ?? 0;
      if (resent === 'untaken') while (taken.current.has(keys.current.get(`${content}#${n}`) ?? '')) n++;
      alike.set(content, n + 1);
      const id = `${content}#${n}`;
      let key = keys.current.get(id);
      if (!key) {
        key = `console-${randomHex(16)}`;
        keys.current.set(id, key);
      }
      out.set(e, key);
    }
    return out;
  };
  const once = async (work: () => Promise<void>): Promise<void> => {
    if (sending.current) return;
    sending.current = true;
    setBusy(true);
    try {
      await work();
    } finally {
      sending.current = false;
      setBusy(false);
    }
  };

  /** Sends what was read: the essays the service did not take (said so, each with why), or false when there was nothing to send. */
  const send = async (essays: UploadEssay[], readProblems: string[], resent: 'all' | 'untaken'): Promise<UploadEssay[] | false> => {
    if (!essays.length) {
      setProgress(null);
      setErrors([t('nothingToUpload'), ...readProblems]);
      return false;
    }
    setErrors(readProblems);
    setProgress({ done: 0, total: essays.length, ok: 0 });
    let next = 0;
    let okCount = 0;
    let done = 0;
    const failures: string[] = [];
    const failed: UploadEssay[] = [];
    const keyOf = keysOf(essays, resent);
    const post = (e: UploadEssay) =>
      ok(
        api.POST('/v1/essays', {
          body: { assignmentId, text: e.text, ...(e.studentRef ? { studentRef: e.studentRef } : {}), ...(e.title ? { title: e.title } : {}) },
          headers: { 'Idempotency-Key': keyOf.get(e)! },
        }),
      );
    const worker = async () => {
      while (next < essays.length) {
        const e = essays[next++];
        try {
          // A class set meets the key's rate limit: wait and send again (a few times) rather than lose the essay.
          for (let attempt = 1; ; attempt++) {
            try {
              await post(e);
              break;
            } catch (err) {
              // (also the same essay's first sending, still being answered)
              if (!(err instanceof ApiFailure && (err.code === 'RATE_LIMITED' || err.code === 'IDEMPOTENCY_KEY_IN_USE')) || attempt >= 6) throw err;
              await new Promise((r) => setTimeout(r, 1000 * attempt));
            }
          }
          taken.current.add(keyOf.get(e)!);
          okCount++;
        } catch (err) {
          failures.push(t('fileError', { file: e.source, message: problems(err) }));
          failed.push(e);
        }
        done++;
        setProgress({ done, total: essays.length, ok: okCount });
      }
    };
    await Promise.all(Array.from({ length: Math.min(UPLOAD_PARALLEL, essays.length) }, worker));
    setErrors([...readProblems, ...failures]);
    onDone();
    return failed;
  };

  const submitPaste = (e: Event) => {
    e.preventDefault();
    return once(() => sendPaste());
  };
  const sendPaste = async () => {
    if (!text.trim()) {
      setProgress(null);
      setErrors([t('nothingToUpload')]);
      return;
    }
    // one essay, or a class separated by lines --- (each maybe starting "学号：…")
    const read = essaysFromPaste(text, studentRef, (n) => t('pastedEssay', { n }));
    const failed = await send(read.essays, read.problems.map((p) => problemText(p, t)), 'untaken');
    if (!failed) return;
    // What was not taken (refused here for its student line, or by the service) stays in the box,
    // to correct and send again; the rest is cleared.
    const kept = [...read.refused, ...failed.map((f) => (f.studentRef ? `学号：${f.studentRef}\n${f.text}` : f.text))];
    setText(kept.join('\n---\n'));
    if (!kept.length) setStudentRef('');
  };

  const submitFiles = (e: Event) => {
    e.preventDefault();
    return once(() => sendFiles());
  };
  const sendFiles = async () => {
    const list = Array.from(files.current?.files ?? []);
    if (!list.length) return;
    const read = await readFiles(list);
    const readProblems = read.problems.map((p) => problemText(p, t));
    const failed = await send(read.essays, readProblems, 'all');
    if (failed && !failed.length && files.current) files.current.value = '';
  };

  return (
    <Section title={t('upload')} id="upload">
      <form onSubmit={submitFiles} class="stack" data-test="upload-files">
        <Field label={t('uploadFilesAny')}>
          <input ref={files} name="files" type="file" multiple accept=".txt,.docx,.csv,text/plain,text/csv,application/vnd.openxmlformats-officedocument.wordprocessingml.document" />
        </Field>
        <button type="submit" disabled={busy}>
          {t('submit')}
        </button>
      </form>
      <details>
        <summary>{t('uploadPasteMany')}</summary>
        <form onSubmit={submitPaste} class="stack" data-test="upload-paste">
          <Field label={t('studentRef')}>
            <input name="studentRef" maxLength={100} value={studentRef} onInput={(e) => setStudentRef(e.currentTarget.value)} />
          </Field>
          <Field label={t('pasteLabel')} hint={t('pasteHelp')}>
            <textarea name="text" rows={8} required value={text} onInput={(e) => setText(e.currentTarget.value)} />
          </Field>
          <button type="submit" disabled={busy}>
            {t('submit')}
          </button>
        </form>
      </details>
      {progress && (
        <div class="progress" data-test="upload-progress">
          <progress max={Math.max(1, progress.total)} value={progress.done} aria-label={t('submitting')} />
          <span role="status">{t('uploadDone', { ok: progress.ok, total: progress.total })}</span>
        </div>
      )}
      {errors.length > 0 && (
        <ul class="errors" role="alert" data-test="upload-errors">
          {errors.map((e) => (
            <li>{e}</li>
          ))}
        </ul>
      )}
    </Section>
  );
}

/** `bytes` random bytes as hex (crypto.getRandomValues: there also when the console is served over plain http). */
function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** How often an assignment's page looks for essays submitted elsewhere. */
const NEWER_MS = 5000;

/**
 * The assignment's essays, newest first, page after page (a class set may hold more than a page)
 * until `enough` says a page is the last wanted or none is left; at most MAX_PAGES (`more`: that
 * cut it short, older essays were not read).
 */
async function readEssays(assignmentId: string, enough: (page: Essay[]) => boolean = () => false): Promise<{ list: Essay[]; more: boolean }> {
  const out: Essay[] = [];
  let cursor: string | undefined;
  for (let n = 0; n < MAX_PAGES; n++) {
    const page = await ok(api.GET('/v1/essays', { params: { query: { assignmentId, limit: 100, ...(cursor ? { cursor } : {}) } } }));
    out.push(...page.data);
    if (!page.nextCursor || enough(page.data)) return { list: out, more: false };
    cursor = page.nextCursor;
  }
  return { list: out, more: true };
}

/** Every essay of the assignment (the newest MAX_PAGES pages). */
const essaysOf = (assignmentId: string) => readEssays(assignmentId);

/** The assignment's essays newer than those `known`: pages read until one reaches a known essay. */
async function newerThan(assignmentId: string, known: Set<string>): Promise<Essay[]> {
  const { list } = await readEssays(assignmentId, (page) => page.some((e) => known.has(e.id)));
  return list.filter((e) => !known.has(e.id));
}

/** The assignment's essays; those still being graded are followed live over Server-Sent Events. */
function EssayList({ assignmentId, refresh, onFinished }: { assignmentId: string; refresh: number; onFinished: () => void }) {
  const { t, code, session, intl } = useApp();
  const [essays, setEssays] = useState<Essay[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    essaysOf(assignmentId).then(
      ({ list, more }) => live && (setEssays(list), setMore(more)),
      (err) => live && setError(problems(err)),
    );
    return () => {
      live = false;
    };
  }, [assignmentId, refresh]);

  // Essays submitted elsewhere (another browser, the school's own system through the API) appear
  // within NEWER_MS: the newest page is read again (one request, only while the tab is shown), and
  // the next while a page holds only essays not listed yet (a class set of 150 sent at once); those
  // are put first, and the counts above are read again with them.
  const listed = useRef<Essay[] | null>(null);
  listed.current = essays;
  // Only while the page is in front of someone (shown, its window focused), and at once when it comes
  // back: each read counts its school as reading on the instance for a moment, and pages left open
  // in the background in many schools would take a share of every reading school's slots.
  useEffect(() => {
    let reading = false;
    const look = () => {
      if (reading || document.hidden || !document.hasFocus() || !listed.current) return;
      reading = true;
      newerThan(assignmentId, new Set(listed.current.map((e) => e.id)))
        .then((added) => {
          if (!added.length) return;
          setEssays((list) => (list ? [...added.filter((e) => !list.some((x) => x.id === e.id)), ...list] : list));
          onFinished();
        }, () => undefined)
        .finally(() => (reading = false));
    };
    const timer = setInterval(look, NEWER_MS);
    window.addEventListener('focus', look);
    return () => {
      clearInterval(timer);
      window.removeEventListener('focus', look);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [assignmentId]);

  const pending = (essays ?? []).filter((e) => !TERMINAL.has(e.status)).map((e) => e.id);
  const pendingKey = pending.join(',');
  const pendingNow = useRef<string[]>([]);
  pendingNow.current = pending;
  // The assignment's counts are read again at most every two seconds, not once per finished essay
  // (a class of 80 finishing together would send 80 reads, and meet the key's rate limit).
  const finishedTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const finished = () => {
    if (finishedTimer.current) return;
    finishedTimer.current = setTimeout(() => {
      finishedTimer.current = null;
      onFinished();
    }, 2000);
  };
  // One stream per essay still being graded, open until its `end` (not tied to renders).
  const streams = useRef(new Map<string, EventSource>());
  useEffect(
    () => () => {
      streams.current.forEach((source) => source.close());
      streams.current.clear();
      if (finishedTimer.current) clearTimeout(finishedTimer.current);
    },
    [assignmentId],
  );
  useEffect(() => {
    const update = (id: string, patch: Partial<Essay>) => setEssays((list) => list && list.map((e) => (e.id === id ? { ...e, ...patch } : e)));
    for (const id of pending) {
      if (streams.current.has(id) || streams.current.size >= MAX_STREAMS) continue;
      const source = new EventSource(withSessionKey(`/v1/essays/${id}/events`));
      streams.current.set(id, source);
      source.addEventListener('status', (ev) => {
        const d = JSON.parse((ev as MessageEvent).data) as { status: string; flags: string[] };
        update(id, { status: d.status, flags: d.flags });
      });
      source.addEventListener('grade', (ev) => {
        const d = JSON.parse((ev as MessageEvent).data) as { status: string; grade: { score: number; maxScore: number } };
        update(id, { status: d.status, score: d.grade.score, maxScore: d.grade.maxScore });
      });
      source.addEventListener('end', () => {
        source.close();
        streams.current.delete(id);
        finished();
      });
      // A stream that could not open (429: too many open, or the connection dropped): the essay is
      // polled with the rest instead, not left showing its last state.
      source.addEventListener('error', () => {
        source.close();
        streams.current.delete(id);
      });
    }
    if (!pending.length) return;
    // Every essay without an open stream (past the cap, or its stream failed) is read again every
    // few seconds, from the assignment's list (a page of 100 a request, not one request an essay:
    // a class of 200 would meet the key's rate limit), one reading at a time.
    let reading = false;
    const timer = setInterval(() => {
      const unwatched = new Set(pendingNow.current.filter((x) => !streams.current.has(x)));
      if (!unwatched.size || reading) return;
      reading = true;
      essaysOf(assignmentId)
        .then(({ list }) => {
          for (const e of list) {
            if (!unwatched.has(e.id)) continue;
            update(e.id, { status: e.status, flags: e.flags, score: e.score, maxScore: e.maxScore });
            if (TERMINAL.has(e.status)) finished();
          }
        }, () => undefined)
        .finally(() => (reading = false));
    }, 3000);
    return () => clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pendingKey]);

  return (
    <Section title={t('liveList')} id="essays">
      <p>
        <a class="button" href={withSessionKey(`/v1/assignments/${assignmentId}/grades.csv`)} download data-test="export-csv">
          {t('exportCsv')}
        </a>
      </p>
      {!essays ? (
        <Loading error={error} />
      ) : essays.length === 0 ? (
        <p>{t('noEssays')}</p>
      ) : (
        <>
          {more && (
            <p class="muted" data-test="essays-more">
              {t('essaysMore', { n: essays.length })}
            </p>
          )}
          <div class="table-wrap">
            <table data-test="essay-list">
              <thead>
                <tr>
                  <th scope="col">{t('studentRef')}</th>
                  <th scope="col">{t('status')}</th>
                  <th scope="col" class="num">{t('score')}</th>
                  <th scope="col">{t('flagsLabel')}</th>
                  <th scope="col">{t('created')}</th>
                </tr>
              </thead>
              <tbody>
                {essays.map((e) => (
                  <tr data-essay={e.id} data-status={e.status}>
                    <td>
                      <a href={href.essay(e.id)}>{e.studentRef ?? e.id.slice(0, 8)}</a>
                    </td>
                    <td>
                      <span class={`status status-${e.status}`}>{code('status', e.status)}</span>
                    </td>
                    <td class="num">{e.score !== null ? `${e.score} / ${e.maxScore}` : '—'}</td>
                    <td>
                      {e.flags.map((f, i) => (
                        <>
                          {i > 0 && ', '}
                          <span class="flag">{code('flagShort', f)}</span>
                        </>
                      ))}
                    </td>
                    <td class="time">{dateTime(e.createdAt, session.timezone, intl)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </Section>
  );
}

/** Labels a calibration needs at least (the service's MIN_LABELS). */
const MIN_LABELS = 20;

function AgreementPanel({ assignmentId, onRegraded }: { assignmentId: string; onRegraded: () => void }) {
  const { t } = useApp();
  const agreement = useLoad(() => ok(api.GET('/v1/assignments/{id}/agreement', { params: { path: { id: assignmentId } } })), [assignmentId]);
  const calibration = useLoad(async () => {
    const { data, response } = await api.GET('/v1/assignments/{id}/calibration', { params: { path: { id: assignmentId } } });
    return response.status === 404 ? null : (data ?? null);
  }, [assignmentId]);
  const action = useAction();
  const a = agreement.data;
  const c = calibration.data;
  return (
    <Section title={t('agreement')} id="agreement">
      <p>{t('agreementHelp')}</p>
      {!a ? (
        <Loading error={agreement.error} />
      ) : (
        <AgreementTable labels={['']} count={t('overrides')} rows={[{ key: 'total', name: t('total'), ...a }, ...a.byDimension].map((d) => ({ cells: [d.name], a: d }))} />
      )}
      <h3>{t('calibration')}</h3>
      <p data-test="calibration">
        {c
          ? t('calibrationInForce', { version: c.version, n: c.essays, before: figure(c.before.qwk), after: figure(c.after.qwk) }) + (c.active ? '' : ` — ${c.reason ?? ''}`)
          : t('calibrationNone')}
      </p>
      {/* The service's minimum (MIN_LABELS in src/quality/calibration.service.ts); it answers 422 in words below it anyway. */}
      {a && a.n < MIN_LABELS && (
        <p class="muted" data-test="calibrate-needs">
          {t('calibrateNeeds', { min: MIN_LABELS, n: a.n })}
        </p>
      )}
      <div class="row">
        <button
          type="button"
          data-test="calibrate"
          disabled={action.busy || !a || a.n < MIN_LABELS}
          onClick={() => action.run(async () => (await ok(api.POST('/v1/assignments/{id}/calibration', { params: { path: { id: assignmentId } } })), calibration.reload(), t('saved')))}
        >
          {t('calibrate')}
        </button>
        <button
          type="button"
          data-test="regrade"
          disabled={action.busy}
          onClick={() =>
            action.run(async () => {
              // Said from the answer: which calibration was applied (or that none is in force) and how many grades changed.
              const done = regradeOutcome(await ok(api.POST('/v1/assignments/{id}/regrade', { params: { path: { id: assignmentId } } })));
              onRegraded();
              return t(done.key, done.vars);
            })
          }
        >
          {t('regrade')}
        </button>
        {c?.active && (
          <button type="button" class="secondary" disabled={action.busy} onClick={() => action.run(async () => (await ok(api.DELETE('/v1/assignments/{id}/calibration', { params: { path: { id: assignmentId } } })), calibration.reload(), t('saved')))}>
            {t('calibrationOff')}
          </button>
        )}
      </div>
      <Outcome message={action.message} failed={action.failed} />
    </Section>
  );
}
