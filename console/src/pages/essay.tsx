import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure, ok, type Schemas, withSessionKey } from '../api/client';
import { notDrawn, runs } from '../annotate';
import { useApp } from '../app-context';
import { failureWords } from '../explain';
import { cny, cnyExact, dateTime } from '../format';
import type { MessageKey } from '../i18n';
import { href } from '../router';
import { Field, Loading, Outcome, Section, useAction, useLoad } from '../ui';

type Essay = Schemas['EssayView'];
type Grade = NonNullable<Essay['grade']>;

/** A graded essay: its text with the annotations drawn on it, scores, comments, flags, override, deep review. */
export function EssayPage({ id, print }: { id: string; print: boolean }) {
  const { t, code, locale } = useApp();
  const essay = useLoad(() => ok(api.GET('/v1/essays/{id}', { params: { path: { id } } })), [id]);
  const status = essay.data?.status;
  useFollowGrading(id, status === 'queued' || status === 'grading', essay.reload);
  if (!essay.data) return <Loading error={essay.error} />;
  const e = essay.data;
  if (print) return <PrintView essay={e} />;
  return (
    <>
      <p class="row">
        {e.assignmentId && <a href={href.assignment(e.assignmentId)}>← {t('back')}</a>}
        <a href={href.print(e.id)}>{t('print')}</a>
      </p>
      <h1>
        {e.studentRef ?? t('essay')} {e.title ? `· ${e.title}` : ''}
      </h1>
      <p>
        {t('status')}: <span class={`status status-${e.status}`}>{code('status', e.status)}</span>
        {e.failure && (
          <span class="error" data-test="failure" title={`${e.failure.code}: ${e.failure.reason}`}>
            {' '}
            · {t('failure', { reason: failureWords(locale, e.failure) })}
          </span>
        )}
      </p>
      <Flags essay={e} />
      <div class="essay-layout">
        <Section title={t('essay')} id="essay-text">
          <AnnotatedText text={e.text} grade={e.grade} />
        </Section>
        <div>
          {e.grade && <GradeView grade={e.grade} original={e.originalGrade} />}
          {e.grade && <Override essay={e} onSaved={essay.reload} />}
          {e.originalGrade && (
            <Section title={t('originalGrade')} id="original-grade">
              <p data-test="original-score">
                {t('total')}: {e.originalGrade.score} / {e.originalGrade.maxScore}
              </p>
              <ul data-test="original-dimensions">
                {e.originalGrade.dimensions.map((d) => (
                  <li>
                    {d.name}: {d.score} / {d.max}
                  </li>
                ))}
              </ul>
              <p>{e.originalGrade.summary}</p>
            </Section>
          )}
          <DeepReview essay={e} onChanged={essay.reload} />
          <Erase essay={e} />
        </div>
      </div>
    </>
  );
}

/** Live-followed essays are read again at most this often when their stream cannot open (ms). */
const POLL_MS = 3000;

/**
 * While the essay is queued or being graded, its page follows it over the essay's event stream
 * (as the assignment's list does) and reads it again at each change, so the grade shows when it
 * lands; a stream that cannot open (the tenant's cap on open streams, a dropped connection) is
 * replaced by reading the essay every few seconds.
 */
function useFollowGrading(id: string, pending: boolean, reload: () => void): void {
  useEffect(() => {
    if (!pending) return;
    let source: EventSource | null = new EventSource(withSessionKey(`/v1/essays/${id}/events`));
    let timer: ReturnType<typeof setInterval> | null = null;
    const stop = () => {
      source?.close();
      source = null;
    };
    source.addEventListener('status', () => reload());
    source.addEventListener('grade', () => reload());
    source.addEventListener('end', () => (stop(), reload()));
    source.addEventListener('error', () => {
      stop();
      if (!timer) timer = setInterval(reload, POLL_MS);
    });
    return () => {
      stop();
      if (timer) clearInterval(timer);
    };
  }, [id, pending, reload]);
}

const CATEGORIES = ['typo', 'grammar', 'word_choice', 'punctuation', 'logic', 'structure', 'style', 'highlight'] as const;

/** The essay's text with each annotation marked in its category's colour; its suggestion shows on hover, focus or tap. */
function AnnotatedText({ text, grade }: { text: string; grade: Grade | null }) {
  const { t, code } = useApp();
  const annotations = grade?.annotations ?? [];
  const used = CATEGORIES.filter((c) => annotations.some((a) => a.category === c));
  // (marks that overlap one drawn: listed under the text, so no correction is lost)
  const hidden = notDrawn(text, annotations);
  return (
    <>
      {used.length > 0 && (
        <p class="legend" aria-label={t('legend')}>
          {used.map((c) => (
            <span class={`mark cat-${c}`}>{t(`cat_${c}` as MessageKey)}</span>
          ))}
        </p>
      )}
      <div class="essay-text" data-test="essay-text">
        {runs(text, annotations).map((r) => {
          if (r.mark === undefined) return r.text;
          const a = annotations[r.mark];
          return (
            <mark class={`mark cat-${a.category}`} tabIndex={0} data-start={a.start} data-end={a.end} data-category={a.category} aria-describedby={`tip-${r.mark}`}>
              {r.text}
              <span class="tip" role="tooltip" id={`tip-${r.mark}`}>
                <strong>{code('cat', a.category)}</strong>
                <Advice a={a} />
              </span>
            </mark>
          );
        })}
      </div>
      {hidden.length > 0 && (
        <section class="more-notes" data-test="more-notes">
          <h3>{t('moreNotes')}</h3>
          <ul>
            {hidden.map((i) => {
              const a = annotations[i];
              return (
                <li data-category={a.category}>
                  <span class={`mark cat-${a.category}`}>{code('cat', a.category)}</span> “{a.quote}”
                  <Advice a={a} />
                </li>
              );
            })}
          </ul>
        </section>
      )}
    </>
  );
}

/** An annotation's suggestion and explanation, after its category. */
function Advice({ a }: { a: { suggestion?: string | null; explanation?: string | null } }) {
  const { t } = useApp();
  return (
    <>
      {a.suggestion && (
        <>
          {' '}
          {t('suggestion')}: {a.suggestion}
        </>
      )}
      {a.explanation && <> — {a.explanation}</>}
    </>
  );
}

function Flags({ essay }: { essay: Essay }) {
  const { t, code } = useApp();
  if (!essay.flags.length) return null;
  return (
    <ul class="flags" data-test="flags">
      {essay.flags.map((f) => (
        <li>
          {code('flag', f, t('flag_other', { flag: f }))}
          {f === 'possible_copy' && essay.similarTo && (
            <>
              {' '}
              <a href={href.essay(essay.similarTo.essayId)}>{t('similarEssay', { pct: `${Math.round(essay.similarTo.similarity * 100)}%` })}</a>
            </>
          )}
        </li>
      ))}
    </ul>
  );
}

function GradeView({ grade, original }: { grade: Grade; original?: Grade | null }) {
  const { t, code, session, intl } = useApp();
  return (
    <Section title={t('dimensions')} id="grade">
      <p class="total" data-test="total">
        {t('total')}: <strong>{grade.score}</strong> / {grade.maxScore}
        {grade.source === 'teacher' && <span class="badge"> {t('overridden')}</span>}
      </p>
      <div class="table-wrap">
        <table>
          <tbody>
            {grade.dimensions.map((d) => (
              <tr>
                <th scope="row">{d.name}</th>
                <td class="num">
                  {d.score} / {d.max}
                </td>
                <td>{d.comment}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h3>{t('summary')}</h3>
      <p>{grade.summary}</p>
      {grade.strengths.length > 0 && (
        <>
          <h3>{t('strengths')}</h3>
          <ul>
            {grade.strengths.map((s) => (
              <li>{s}</li>
            ))}
          </ul>
        </>
      )}
      {grade.improvements.length > 0 && (
        <>
          <h3>{t('improvements')}</h3>
          <ul>
            {grade.improvements.map((s) => (
              <li>{s}</li>
            ))}
          </ul>
        </>
      )}
      <p class="muted" data-test="graded-by">
        {grade.source === 'teacher'
          ? original
            ? t('gradedByTeacher', { source: original.model ?? code('source', original.source) })
            : t('overridden')
          : t('gradedBy', { source: grade.model ?? code('source', grade.source) })}{' '}
        · {dateTime(grade.gradedAt, session.timezone, intl)}
        <span class="cost"> · {cny(grade.cost, 6)}</span>
      </p>
    </Section>
  );
}

function Override({ essay, onSaved }: { essay: Essay; onSaved: () => void }) {
  const { t } = useApp();
  const grade = essay.grade!;
  // The scores the rubric allows (whole points, half points or half bands): the fields take no other.
  const rubric = useLoad(
    () => ok(api.GET('/v1/rubrics/{key}', { params: { path: { key: essay.rubric.key }, query: { version: String(essay.rubric.version) } } })),
    [essay.rubric.key, essay.rubric.version],
  );
  const [dims, setDims] = useState<Record<string, string>>(() => Object.fromEntries(grade.dimensions.map((d) => [d.key, String(d.score)])));
  const [comment, setComment] = useState('');
  const [total, setTotal] = useState('');
  const action = useAction();
  const save = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      const changed = grade.dimensions.filter((d) => dims[d.key] !== String(d.score)).map((d) => ({ key: d.key, score: Number(dims[d.key]) }));
      await ok(
        api.PATCH('/v1/essays/{id}/grade', {
          params: { path: { id: essay.id } },
          body: {
            ...(changed.length ? { dimensions: changed } : {}),
            ...(total.trim() ? { score: Number(total) } : {}),
            ...(comment.trim() ? { comment: comment.trim() } : {}),
          },
        }),
      );
      // Saved: the fields start again from the grade (a comment left in its box was sent again with the next change).
      setTotal('');
      setComment('');
      onSaved();
      return t('saved');
    });
  };
  // Until the rubric is read (or if it cannot be), the service still refuses a score off its steps, in words.
  const steps = scoreSteps(rubric.data);
  const range = (max: number, step: number | undefined) => `(0–${max}${step !== undefined && step !== 1 ? `, ${t('inSteps', { step })}` : ''})`;
  return (
    <Section title={t('override')} id="override">
      <p>{t('overrideHelp')}</p>
      <form onSubmit={save} class="stack" data-test="override">
        {grade.dimensions.map((d) => (
          <Field label={`${d.name} ${range(d.max, steps?.dimension(d.key))}`}>
            <input type="number" name={`dim-${d.key}`} min={0} max={d.max} step={steps?.dimension(d.key) ?? 'any'} required value={dims[d.key]} onInput={(e) => setDims({ ...dims, [d.key]: e.currentTarget.value })} />
          </Field>
        ))}
        <Field label={`${t('overrideTotal')} ${range(grade.maxScore, steps?.total)}`}>
          <input type="number" name="total" min={0} max={grade.maxScore} step={steps?.total ?? 'any'} value={total} onInput={(e) => setTotal(e.currentTarget.value)} />
        </Field>
        <Field label={t('comment')}>
          <textarea name="comment" rows={3} maxLength={4000} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={action.busy}>
          {t('save')}
        </button>
        <Outcome message={action.message} failed={action.failed} />
      </form>
    </Section>
  );
}

type Rubric = Schemas['RubricView'];

/** The rubric's score steps: each dimension's, and the total's (half bands for a mean, else the finest dimension's), as the service checks them. */
export function scoreSteps(rubric: Pick<Rubric, 'dimensions' | 'totalRule'> | undefined): { dimension: (key: string) => number | undefined; total: number } | null {
  if (!rubric || !rubric.dimensions.length) return null;
  return {
    dimension: (key) => rubric.dimensions.find((d) => d.key === key)?.step,
    total: rubric.totalRule === 'mean_half_band' ? 0.5 : Math.min(...rubric.dimensions.map((d) => d.step)),
  };
}

/** Whether the school sells deep reviews, and at what price (GET /v1/billing/offer: any key, so a teacher sees it before ordering). */
function useDeepOffer(): { known: boolean; price: string | null; error: string | null; reload: () => void } {
  const offer = useLoad(() => ok(api.GET('/v1/billing/offer')), []);
  const o = offer.data;
  if (!o) return { known: false, price: null, error: offer.error, reload: offer.reload };
  return { known: true, price: o.onSale ? o.price : null, error: null, reload: offer.reload };
}

/** The service's answers to an order when the offer changed after the page read it (OrdersService.create). */
const isNotOnSale = (err: unknown) => err instanceof ApiFailure && err.code === 'NOT_ON_SALE';
const changedPrice = (err: unknown): string | null => {
  if (!(err instanceof ApiFailure) || err.code !== 'PRICE_CHANGED') return null;
  const price = (err.details as { price?: unknown } | undefined)?.price;
  return typeof price === 'string' ? price : null;
};

function DeepReview({ essay, onChanged }: { essay: Essay; onChanged: () => void }) {
  const { t, code, session } = useApp();
  const action = useAction();
  const [asked, setAsked] = useState(false);
  const offer = useDeepOffer();
  const order = essay.deepReview;
  // A paid order is being delivered: look again every few seconds until it is (or is refunded).
  const pending = order?.status === 'paid' || order?.status === 'awaiting_payment';
  useEffect(() => {
    if (!pending) return;
    const timer = setInterval(onChanged, 4000);
    return () => clearInterval(timer);
  }, [pending, onChanged]);
  // An order is offered only once the price is known, and it carries that price: the service refuses
  // it if the school's price is another by then, so no one orders at a price they did not see.
  const place = (price: string) =>
    action.run(async () => {
      try {
        const placed = await ok(api.POST('/v1/essays/{id}/deep-review', { params: { path: { id: essay.id } }, body: { price } }));
        setAsked(false);
        onChanged();
        return t('deepOrdered', { price: cnyExact(placed.price) });
      } catch (err) {
        const now = changedPrice(err);
        if (now !== null) {
          // Nothing was ordered: the confirm step stays, with the new price, to be confirmed again.
          offer.reload();
          throw new Error(t('deepPriceChanged', { price: cnyExact(now) }));
        }
        if (!isNotOnSale(err)) throw err;
        // Taken off sale since the page read the offer: read it again (it then says so).
        setAsked(false);
        offer.reload();
      }
    });
  const notOnSale = offer.known && offer.price === null;
  const orderable = essay.status !== 'queued' && essay.status !== 'grading';
  return (
    <Section title={t('deepReview')} id="deep-review">
      {order ? (
        <p data-test="deep-state">
          {t('deepReviewState', { status: code('deep', order.status) })} · {cnyExact(order.price)}
          {order.refundReason ? ` · ${order.refundReason}` : ''}
        </p>
      ) : notOnSale ? (
        <p class="muted" data-test="deep-not-on-sale">
          {session.role === 'admin' ? (
            <>
              {t('deepNotOnSale')} <a href={href.settings()}>{t('navSettings')}</a>
            </>
          ) : (
            t('deepNotOnSaleTeacher')
          )}
        </p>
      ) : offer.price === null ? (
        // The offer is not read yet, or could not be: nothing to order until the price is known.
        offer.error && <Loading error={offer.error} />
      ) : (
        orderable &&
        (asked ? (
          <>
            <p data-test="deep-price">{t('deepOrderPrice', { price: cnyExact(offer.price) })}</p>
            <p class="row">
              <button type="button" data-test="deep-confirm" disabled={action.busy} onClick={() => place(offer.price!)}>
                {`${t('deepOrderConfirm')} · ${cnyExact(offer.price)}`}
              </button>
              <button type="button" class="secondary" disabled={action.busy} onClick={() => setAsked(false)}>
                {t('cancel')}
              </button>
            </p>
          </>
        ) : (
          <button type="button" data-test="deep-order" onClick={() => setAsked(true)}>
            {t('orderDeepReview')}
          </button>
        ))
      )}
      <Outcome message={action.message} failed={action.failed} />
      <DeepReviewBody essay={essay} />
    </Section>
  );
}

/** The delivered deep review: the premium model's summary, paragraph by paragraph, the revision plan, rewrites, notes on sentences. */
function DeepReviewBody({ essay }: { essay: Essay }) {
  const { t, code } = useApp();
  const deepGrade = essay.deepGrade;
  const deep = deepGrade?.deep;
  return (
    <>
      {deepGrade && deepGrade.summary && (
        <>
          <h3>{t('deepSummary')}</h3>
          <p data-test="deep-summary">{deepGrade.summary}</p>
        </>
      )}
      {deep && deep.paragraphs.length > 0 && (
        <>
          <h3>{t('deepParagraphs')}</h3>
          <dl data-test="deep-paragraphs">
            {deep.paragraphs.map((p) => (
              <>
                <dt>{t('deepParagraph', { n: p.index })}</dt>
                <dd>{p.analysis}</dd>
              </>
            ))}
          </dl>
        </>
      )}
      {deep && (
        <>
          {deep.revisionPlan.length > 0 && (
            <>
              <h3>{t('deepRevisionPlan')}</h3>
              <ol>
                {deep.revisionPlan.map((s) => (
                  <li>{s}</li>
                ))}
              </ol>
            </>
          )}
          {deep.rewrites.length > 0 && (
            <>
              <h3>{t('deepRewrites')}</h3>
              <ul>
                {deep.rewrites.map((r) => (
                  <li>
                    <q>{unquoted(r.quote)}</q> → <q>{unquoted(r.rewrite)}</q> — {r.reason}
                  </li>
                ))}
              </ul>
            </>
          )}
        </>
      )}
      {deepGrade && deepGrade.annotations.length > 0 && (
        <>
          <h3>{t('deepNotes')}</h3>
          <ul data-test="deep-notes">
            {deepGrade.annotations.map((a) => (
              <li>
                <q>{unquoted(a.quote)}</q> · {code('cat', a.category)}
                {a.suggestion ? ` → ${a.suggestion}` : ''}
                {a.explanation ? ` — ${a.explanation}` : ''}
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}

/** A quotation shown in <q> (which draws its own marks) without the marks the text itself opens and closes with. */
export function unquoted(text: string): string {
  const m = /^\s*["“「『'‘](.*)["”」』'’]\s*$/su.exec(text);
  return m ? m[1] : text;
}

/**
 * Erasing the essay (a student's or a parent's request): its text, student, title and grades go for
 * good, its cost stays in the books. Asked twice, on the page; then back to its assignment.
 */
function Erase({ essay }: { essay: Essay }) {
  const { t } = useApp();
  const action = useAction();
  const [asked, setAsked] = useState(false);
  const erase = () =>
    action.run(async () => {
      await ok(api.DELETE('/v1/essays/{id}', { params: { path: { id: essay.id } } }));
      location.hash = essay.assignmentId ? href.assignment(essay.assignmentId) : href.assignments();
    });
  return (
    <Section title={t('eraseTitle')} id="erase">
      <p>{t('eraseExplain')}</p>
      {asked ? (
        <p class="row">
          <button type="button" class="secondary" data-test="erase-confirm" disabled={action.busy} onClick={erase}>
            {t('eraseConfirm')}
          </button>
          <button type="button" disabled={action.busy} onClick={() => setAsked(false)}>
            {t('cancel')}
          </button>
        </p>
      ) : (
        <button type="button" data-test="erase" onClick={() => setAsked(true)}>
          {t('erase')}
        </button>
      )}
      <Outcome message={action.message} failed={action.failed} />
    </Section>
  );
}

/** One graded essay laid out for paper: its assignment, text with marks, scores, comments, the deep review; the browser's print dialog prints it. */
function PrintView({ essay }: { essay: Essay }) {
  const { t } = useApp();
  const assignmentId = essay.assignmentId;
  const assignment = useLoad(() => (assignmentId ? ok(api.GET('/v1/assignments/{id}', { params: { path: { id: assignmentId } } })) : Promise.resolve(null)), [assignmentId]);
  return (
    <article class="print-view">
      <p class="no-print row">
        <a href={href.essay(essay.id)}>← {t('back')}</a>
        <button type="button" onClick={() => print()}>
          {t('print')}
        </button>
      </p>
      {assignment.data && (
        <p class="print-assignment" data-test="print-assignment">
          {t('printAssignment', { title: assignment.data.title })}
        </p>
      )}
      <h1>
        {essay.studentRef ?? t('essay')} {essay.title ? `· ${essay.title}` : ''}
      </h1>
      <AnnotatedText text={essay.text} grade={essay.grade} />
      {essay.grade && <GradeView grade={essay.grade} original={essay.originalGrade} />}
      {essay.deepGrade && (
        <Section title={t('deepReview')} id="print-deep-review">
          <DeepReviewBody essay={essay} />
        </Section>
      )}
    </article>
  );
}
