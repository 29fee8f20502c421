import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { runAtomically } from '../db/run-atomically';
import type { TenantAuth } from '../common/auth';
import { ApiError, FieldProblem } from '../common/errors';
import { formatCny, parseCny } from '../common/money';
import { cursorAtSql, decodeCursor, keysetPage, KeysetPosition, pageLimit } from '../common/pagination';
import { tenantQuery } from '../db/tenant-scope';
import { AssignmentsService } from './assignments.service';
import { BatchEssayDto, OverrideGradeDto, SubmitBatchDto, SubmitEssayDto } from './dto/essay.dto';
import { EssayEvents } from './essay-events';
import { ESSAY_STATUSES } from './essay-lifecycle';
import { EssaysRepository, NewEssay } from './essays.repository';
import { JobPlan, JobQueue, ScheduledJob } from '../jobs/job-queue';
import { refuseDirectPremium } from '../tenancy/premium-access';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { Clock } from '../common/clock';
import { resolveDeadline, TOMORROW_MORNING } from './deadline';
import { charCount, detectLanguage, isBlank, MAX_BATCH, MAX_ESSAY_CHARS, stripControlChars } from './essay-text';
import { GradingService, reviewBase, StoredGrade } from './grading.service';
import { BudgetPolicy } from '../billing/budget-policy';
import { LlmError } from '../llm/llm-errors';
import { OrdersService, OrderView } from '../billing/orders.service';
import { isOnStep, Language, languageMismatch, maxScore, Rubric, totalScore, totalStep, withExpectedLength } from './rubric';
import { RubricsService } from './rubrics.service';
import { LimitsService } from '../tenancy/limits.service';
import { UUID } from '../common/ids';

const DEFAULT_RUBRIC: Record<Language, string> = { zh: 'zh-gaokao-60', en: 'en-general-100' };

export interface EssayView {
  id: string;
  status: string;
  tier: string;
  language: string;
  rubric: { key: string; version: number };
  assignmentId: string | null;
  title: string | null;
  studentRef: string | null;
  text: string;
  flags: string[];
  similarTo: { essayId: string; similarity: number } | null;
  cost: string;
  cache: string | null;
  grade: StoredGrade | null;
  /** the model's grade, kept when a teacher overrode it */
  originalGrade: StoredGrade | null;
  /** the paid deep review, kept beside the standard grade */
  deepGrade: StoredGrade | null;
  /** the latest deep-review order of the essay and its state (awaiting_payment, paid, delivered, refunded, cancelled), or null */
  deepReview: { orderId: string; status: string; price: string; refundReason: string | null; schedule: WorkSchedule | null } | null;
  /**
   * The grading's deadline (its assignment's dueBy) and the plan it runs on: now, batch, or off_peak
   * from startAt. Null when it was not scheduled. What it saved is in grade.schedule once graded.
   */
  schedule: WorkSchedule | null;
  /** the teachers' overrides, oldest first: the latest 50 */
  overrides: Array<{ by: string | null; at: string; changes: unknown }>;
  failure: { code: string; reason: string } | null;
  createdAt: string;
  updatedAt: string;
  gradedAt: string | null;
}

/** How many of an essay's overrides its view shows (the latest). */
export const MAX_OVERRIDES_SHOWN = 50;

/** Work with a deadline: when it is due and the plan it runs on (null until a worker has planned it). */
export interface WorkSchedule {
  dueBy: string;
  plan: JobPlan | null;
}

/** What POST /v1/essays answers: the essay is stored and queued. */
export interface SubmittedEssay {
  id: string;
  status: 'queued';
}

/** What POST /v1/essays/batch answers: the class set's ids, in the order sent. */
export interface SubmittedBatch {
  ids: string[];
  status: 'queued';
}

/** One essay in GET /v1/essays: without its text and grade details. */
export interface EssaySummary {
  id: string;
  status: string;
  tier: string;
  language: string;
  title: string | null;
  studentRef: string | null;
  assignmentId: string | null;
  score: number | null;
  maxScore: number | null;
  flags: string[];
  cost: string;
  cache: string | null;
  createdAt: string;
  gradedAt: string | null;
}

/** A page of GET /v1/essays, newest first; nextCursor is null on the last page. */
export interface EssayPage {
  data: EssaySummary[];
  nextCursor: string | null;
}

interface Target {
  rubric: Rubric;
  assignmentId: string | null;
  language?: Language;
}

/** Teachers' essays: submitted and durably queued, read, listed and overridden, always per tenant. */
@Injectable()
export class EssaysService {
  constructor(
    private readonly ds: DataSource,
    private readonly rubrics: RubricsService,
    private readonly limits: LimitsService,
    private readonly assignments: AssignmentsService,
    private readonly events: EssayEvents,
    private readonly policy: BudgetPolicy,
    private readonly grading: GradingService,
    private readonly orders: OrdersService,
    private readonly essays: EssaysRepository,
    private readonly jobs: JobQueue,
    private readonly tenants: TenantsRepository,
    private readonly clock: Clock,
  ) {}

  /** The assignment's rubric and language, or the named rubric, or the language's default. */
  private async target(tenantId: string, dto: { assignmentId?: string; rubric?: string; language?: Language }, text?: string): Promise<Target> {
    if (dto.assignmentId) {
      const a = await this.assignments.get(tenantId, dto.assignmentId);
      // An essay of an assignment is graded on the assignment's rubric: another one named too was set
      // aside without a word, and the teacher got a grade on a scale it did not ask for.
      if (dto.rubric !== undefined && dto.rubric !== a.rubric.key) {
        throw ApiError.validation([{ field: 'rubric', message: `the assignment's essays are graded on its rubric, ${a.rubric.key}: leave rubric out, or name that one` }]);
      }
      // (With the length the assignment asks for: what a grading of it will be measured against.)
      const pinned = await this.rubrics.resolve(tenantId, a.rubric.key, a.rubric.version);
      const mismatch = languageMismatch(pinned, dto.language);
      if (mismatch) throw ApiError.validation([{ field: 'language', message: mismatch }]);
      // (An assignment made before that rule with a language its rubric is not for: its essays are
      // taken in the rubric's, so one in the other language is flagged other_language.)
      const language = dto.language ?? (languageMismatch(pinned, a.language) ? (pinned.language as Language) : a.language);
      const rubric = withExpectedLength(pinned, a.expectedLength, language);
      return { rubric, assignmentId: a.id, language };
    }
    // A named rubric of one language is the essay's language unless one is given (the text's own is
    // checked against it when graded: other_language), as in a class set; with no rubric, the
    // text's language chooses the default one. (A single essay took the text's language: a Chinese
    // essay sent for IELTS got a band with no flag, and another band sent in a batch.)
    const language = dto.language ?? (text !== undefined && !dto.rubric ? detectLanguage(text) : undefined);
    const key = dto.rubric ?? DEFAULT_RUBRIC[language ?? 'zh'];
    const rubric = await this.rubrics.resolve(tenantId, key);
    const mismatch = languageMismatch(rubric, dto.language);
    if (mismatch) throw ApiError.validation([{ field: 'language', message: mismatch }]);
    return { rubric, assignmentId: null, language };
  }

  private checkText(raw: string, field: string): string {
    const text = stripControlChars(raw);
    if (isBlank(text)) throw ApiError.validation([{ field, message: `${field} is empty` }]);
    // (A text of at most MAX_ESSAY_CHARS UTF-16 units has at most as many characters: counted only past it.)
    const chars = text.length > MAX_ESSAY_CHARS ? charCount(text) : text.length;
    if (chars > MAX_ESSAY_CHARS) {
      throw new ApiError('PAYLOAD_TOO_LARGE', `${field} has ${chars} characters; the most an essay may have is ${MAX_ESSAY_CHARS}`);
    }
    return text;
  }

  /** The budget policy (BudgetPolicy) may refuse the whole set now, with 402, when it cannot be paid for. */
  private refuseIfUnaffordable(tenantId: string, essays: Array<{ text: string; language: Language; rubric: Rubric }>, tier: 'standard' | 'deep'): Promise<void> {
    const what = essays.length === 1 ? 'grading this essay' : `grading these ${essays.length} essays`;
    return this.policy.admit(
      tenantId,
      tier,
      () => {
        let total = 0n;
        for (const e of essays) {
          const worst = this.grading.quote(e.text, e.language, e.rubric, tier);
          if (worst === null) return null; // no model: graded offline (standard) or failed clearly (deep)
          total += worst;
        }
        return total;
      },
      what,
    );
  }

  /** The premium tier is reached through a deep-review order; directly only by an admin, when the admin allowed it. */
  private async refuseDirectDeep(auth: TenantAuth, tier: string | undefined): Promise<void> {
    if (tier === 'deep') await refuseDirectPremium(auth, this.tenants, 'submitting tier "deep"');
  }

  async submit(auth: TenantAuth, dto: SubmitEssayDto): Promise<SubmittedEssay> {
    await this.refuseDirectDeep(auth, dto.tier);
    const text = this.checkText(dto.text, 'text');
    const t = await this.target(auth.tenantId, dto, text);
    const language = t.language ?? (t.rubric.language === 'any' ? detectLanguage(text) : t.rubric.language);
    await this.refuseIfUnaffordable(auth.tenantId, [{ text, language, rubric: t.rubric }], dto.tier ?? 'standard');
    const admitted = await this.limits.admitQueued(auth.tenantId, 1);
    const id = randomUUID();
    await ended(admitted, this.store(auth, [{ t, essays: [{ id, text, language, tier: dto.tier ?? 'standard', title: dto.title ?? null, studentRef: dto.studentRef ?? null }] }]));
    this.events.queued();
    return { id, status: 'queued' };
  }

  /** A class set in one transaction: every essay is checked first; one bad essay stores none. */
  async submitBatch(auth: TenantAuth, dto: SubmitBatchDto): Promise<SubmittedBatch> {
    if (dto.essays.length === 0) throw ApiError.validation([{ field: 'essays', message: 'essays must not be empty' }]);
    if (dto.essays.length > MAX_BATCH) {
      throw new ApiError('PAYLOAD_TOO_LARGE', `A batch holds at most ${MAX_BATCH} essays (got ${dto.essays.length}); split it`);
    }
    const problems: FieldProblem[] = [];
    const texts: string[] = [];
    dto.essays.forEach((e: BatchEssayDto, i) => {
      try {
        texts.push(this.checkText(e.text, `essays[${i}].text`));
      } catch (err) {
        if (err instanceof ApiError && err.code === 'PAYLOAD_TOO_LARGE') throw err;
        problems.push({ field: `essays[${i}].text`, message: 'text is empty' });
      }
    });
    if (problems.length) throw ApiError.validation(problems);
    // With neither an assignment, a rubric nor a language, each essay is graded in its own language
    // on that language's default rubric, as one essay sent alone would be (a class set may mix them).
    const each = !dto.assignmentId && !dto.rubric && !dto.language;
    const targets = new Map<string, Target>();
    const essays: Array<{ t: Target; essay: NewEssay }> = [];
    for (const [i, text] of texts.entries()) {
      const detected = each ? detectLanguage(text) : undefined;
      const tk = detected ?? '';
      let t = targets.get(tk);
      if (!t) targets.set(tk, (t = await this.target(auth.tenantId, detected ? { ...dto, language: detected } : dto)));
      const language = t.language ?? (t.rubric.language === 'any' ? detectLanguage(text) : t.rubric.language);
      essays.push({ t, essay: { id: randomUUID(), text, language, tier: 'standard', title: dto.essays[i].title ?? null, studentRef: dto.essays[i].studentRef ?? null } });
    }
    await this.refuseIfUnaffordable(auth.tenantId, essays.map(({ t, essay }) => ({ text: essay.text, language: essay.language, rubric: t.rubric })), 'standard');
    const admitted = await this.limits.admitQueued(auth.tenantId, texts.length);
    await ended(admitted, this.store(auth, [...targets.values()].map((t) => ({ t, essays: essays.filter((e) => e.t === t).map((e) => e.essay) }))));
    this.events.queued();
    return { ids: essays.map((e) => e.essay.id), status: 'queued' };
  }

  /**
   * Stores the essays as queued (a group a target) and queues their gradings, in one transaction and
   * one round trip. An assignment's essays take its deadline as the statement that queues them reads
   * it (JobQueue.enqueueStatement, `deadlineOf`), so one submitted while a teacher moves the deadline
   * has the new one.
   */
  private async store(auth: TenantAuth, groups: Array<{ t: Target; essays: NewEssay[] }>): Promise<void> {
    const now = this.clock.now();
    await runAtomically(this.ds, [
      ...groups.map(({ t, essays }) =>
        this.essays.insertQueuedStatement(auth.tenantId, { assignmentId: t.assignmentId, rubricKey: t.rubric.key, rubricVersion: t.rubric.version, submittedBy: auth.keyId }, essays),
      ),
      this.jobs.enqueueStatement(
        auth.tenantId,
        groups.flatMap(({ t, essays }) => essays.map((e) => ({ essayId: e.id, kind: 'grade' as const, ...(t.assignmentId ? { deadlineOf: { assignmentId: t.assignmentId, now } } : {}) }))),
      ).statement,
    ]);
  }

  private async row(tenantId: string, id: string, m: EntityManager = this.ds.manager): Promise<Record<string, unknown>> {
    if (!UUID.test(id)) throw ApiError.notFound('Essay');
    const [row] = await tenantQuery(m, tenantId, `SELECT * FROM essays WHERE tenant_id = $1 AND id = $2`, [id]);
    if (!row) throw ApiError.notFound('Essay');
    if (row.erased_at) {
      const erasedAt = (row.erased_at as Date).toISOString();
      throw new ApiError('NOT_FOUND', `The essay was erased at ${erasedAt}`, { erasedAt });
    }
    return row;
  }

  /** The essay's status alone, or null when it is not (any more) there. */
  statusOf(auth: TenantAuth, id: string): Promise<string | null> {
    return this.essays.statusOf(auth.tenantId, id);
  }

  /**
   * The essay's view, its parts read in one snapshot: a delivery stores the deep grade and marks
   * its order delivered in one commit, and a view read across it (the essay before, the order
   * after) showed the review delivered with no deep grade.
   */
  get(auth: TenantAuth, id: string): Promise<EssayView> {
    return this.ds.transaction('REPEATABLE READ', async (m) => {
      const row = await this.row(auth.tenantId, id, m);
      const overrides = await tenantQuery<{ api_key_id: string | null; created_at: Date; changes: unknown }>(
        m,
        auth.tenantId,
        // The latest MAX_OVERRIDES_SHOWN, oldest first: an essay overridden many times is not read whole each time it is shown.
        `SELECT * FROM (SELECT api_key_id, created_at, changes FROM grade_overrides WHERE tenant_id = $1 AND essay_id = $2
                         ORDER BY created_at DESC LIMIT ${MAX_OVERRIDES_SHOWN}) latest ORDER BY created_at`,
        [id],
      );
      const order = await this.orders.latestForEssay(auth.tenantId, id, m);
      const scheduled = await this.jobs.scheduledFor(auth.tenantId, id, m);
      const scheduleOf = (j: ScheduledJob | undefined): WorkSchedule | null => (j ? { dueBy: j.dueBy.toISOString(), plan: j.plan } : null);
      return toView(
        row,
        overrides,
        order,
        scheduleOf(scheduled.find((j) => j.kind === 'grade')),
        scheduleOf(scheduled.find((j) => j.kind === 'deep_review' && j.orderId === order?.orderId)),
      );
    });
  }

  /**
   * Orders a deep review of the essay. One that the premium tier cannot deliver within the budget
   * is refused now (402), before anyone pays for it.
   */
  async orderDeepReview(auth: TenantAuth, id: string, dueByInput?: string, shownPrice?: string): Promise<OrderView> {
    let dueBy: Date | null = null;
    if (dueByInput !== undefined) {
      const d = resolveDeadline(dueByInput, this.clock.now(), (await this.tenants.budget(auth.tenantId)).timezone);
      if ('problem' in d) throw ApiError.validation([{ field: 'dueBy', message: `${d.problem} (or "${TOMORROW_MORNING}")` }]);
      dueBy = d.dueBy;
    }
    const row = await this.row(auth.tenantId, id);
    const rubric = await this.rubrics.resolve(auth.tenantId, String(row.rubric_key), Number(row.rubric_version));
    // Checked for a new order only: an open one is answered as it is (ordered again, a client's retry
    // of a paid order was told 402 once the budget had run low, or 503 with the premium tier away).
    const admit = async () => {
      const worst = this.grading.quote(String(row.text), row.language as Language, rubric, 'deep', reviewBase(row.model_grade as StoredGrade | null) ? 'deep_review' : 'deep');
      if (worst === null) throw new LlmError('NO_PROVIDER_AVAILABLE', 'No premium model is configured for deep reviews');
      await this.policy.admit(auth.tenantId, 'deep', () => worst, 'a deep review');
    };
    const { order, created } = await this.orders.create(auth, id, dueBy, shownPrice === undefined ? undefined : parseCny(shownPrice), admit);
    if (created && order.status === 'paid') this.events.queued();
    return order;
  }

  async list(
    auth: TenantAuth,
    q: { assignmentId?: string; status?: string; studentRef?: string; limit?: string; cursor?: string },
  ): Promise<EssayPage> {
    const problems: FieldProblem[] = [];
    if (q.assignmentId !== undefined && !UUID.test(q.assignmentId)) problems.push({ field: 'assignmentId', message: 'assignmentId must be a UUID' });
    if (q.status !== undefined && !(ESSAY_STATUSES as readonly string[]).includes(q.status)) {
      problems.push({ field: 'status', message: `status must be one of ${ESSAY_STATUSES.join(', ')}` });
    }
    const limit = pageLimit(q.limit, 100, 20, problems);
    if (problems.length) throw ApiError.validation(problems);
    const after: KeysetPosition | null = q.cursor !== undefined ? decodeCursor(q.cursor) : null;
    const rows = await tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      auth.tenantId,
      `SELECT id, status, tier, language, title, student_ref, assignment_id, flags, cost_nanos, cache_status,
              grade->'score' AS score, grade->'maxScore' AS max_score, created_at, ${cursorAtSql('created_at')} AS cursor_at, graded_at
         FROM essays
        WHERE tenant_id = $1 AND erased_at IS NULL AND ($2::uuid IS NULL OR assignment_id = $2) AND ($3::text IS NULL OR status = $3)
          AND ($4::text IS NULL OR student_ref = $4)
          AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $7`,
      [q.assignmentId ?? null, q.status ?? null, q.studentRef ?? null, after?.at ?? null, after?.id ?? null, limit + 1],
    );
    const page = keysetPage(rows, limit);
    return {
      data: page.rows.map((r) => ({
        id: r.id as string,
        status: r.status as string,
        tier: r.tier as string,
        language: r.language as string,
        title: r.title as string | null,
        studentRef: r.student_ref as string | null,
        assignmentId: r.assignment_id as string | null,
        score: (r.score as number | null) ?? null,
        maxScore: (r.max_score as number | null) ?? null,
        flags: r.flags as string[],
        cost: formatCny(BigInt(r.cost_nanos as string)),
        cache: r.cache_status as string | null,
        createdAt: (r.created_at as Date).toISOString(),
        gradedAt: r.graded_at ? (r.graded_at as Date).toISOString() : null,
      })),
      nextCursor: page.nextCursor,
    };
  }

  /**
   * A teacher's override of the total, dimension scores or comment. The model's grade stays
   * beside it; who changed what and when is recorded. Scores must fit the rubric (never clamped).
   */
  async override(auth: TenantAuth, id: string, dto: OverrideGradeDto): Promise<EssayView> {
    if (dto.score === undefined && !dto.dimensions?.length && dto.comment === undefined) {
      throw ApiError.validation([{ field: 'body', message: 'give a score, dimensions or a comment' }]);
    }
    const current = await this.row(auth.tenantId, id);
    // Resolved before the transaction: no other query may run while it holds the essay's lock
    // (the embedded database has a single session).
    const rubric = await this.rubrics.resolve(auth.tenantId, String(current.rubric_key), Number(current.rubric_version));
    await this.ds.transaction(async (m) => {
      const row = await this.essays.lockForOverride(m, auth.tenantId, id);
      if (!row || row.erased_at) throw ApiError.notFound('Essay');
      if (!row.grade || !['graded', 'needs_review'].includes(row.status)) {
        throw new ApiError('CONFLICT', `The essay is ${row.status}: only a graded essay can be overridden`);
      }
      const before = row.grade;
      const problems: FieldProblem[] = [];
      const dimensions = before.dimensions.map((d) => ({ ...d }));
      const given = new Set<string>();
      (dto.dimensions ?? []).forEach((o, i) => {
        if (given.has(o.key)) return problems.push({ field: `dimensions[${i}].key`, message: `dimension "${o.key}" is given twice` });
        given.add(o.key);
        const spec = rubric.dimensions.find((d) => d.key === o.key);
        const target = dimensions.find((d) => d.key === o.key);
        if (!spec || !target) return problems.push({ field: `dimensions[${i}].key`, message: `no dimension "${o.key}" in rubric ${rubric.key}` });
        if (o.score !== undefined) {
          if (o.score < 0 || o.score > spec.max || !isOnStep(o.score, spec.step)) {
            return problems.push({ field: `dimensions[${i}].score`, message: `score must be 0–${spec.max} in steps of ${spec.step}` });
          }
          target.score = o.score;
        }
        if (o.comment !== undefined) target.comment = o.comment;
      });
      // The total is on the rubric's own scale: whole points for a sum of whole-point dimensions
      // (高考 60), half bands for IELTS; a mark the rubric cannot give is no label either.
      const top = maxScore(rubric);
      const step = totalStep(rubric);
      if (dto.score !== undefined && (dto.score < 0 || dto.score > top || !isOnStep(dto.score, step))) {
        problems.push({ field: 'score', message: `score must be 0–${top} in steps of ${step}` });
      }
      // The total follows the dimensions only when this override scores some; a comment alone keeps
      // the total as it stands (a total the teacher set earlier included).
      const rescored = (dto.dimensions ?? []).some((o) => o.score !== undefined);
      const fromDimensions = rescored ? totalScore(rubric, Object.fromEntries(dimensions.map((d) => [d.key, d.score]))) : undefined;
      // A total given with dimension scores must be theirs by the rubric's rule: a grade that says 30
      // beside dimensions making 48 is two contradicting labels of one essay (grades.csv, calibration).
      if (dto.score !== undefined && fromDimensions !== undefined && dto.score !== fromDimensions && !problems.length) {
        problems.push({ field: 'score', message: `these dimension scores make a total of ${fromDimensions} by the rubric's rule: leave the total out, or give the dimensions that make ${dto.score}` });
      }
      if (problems.length) throw ApiError.validation(problems);
      const total = dto.score ?? fromDimensions ?? before.score;
      // Which dimensions are the teacher's: those scored now, and those scored in earlier overrides.
      const scored = new Set([...(before.source === 'teacher' ? (before.labelledDimensions ?? []) : []), ...(dto.dimensions ?? []).filter((o) => o.score !== undefined).map((o) => o.key)]);
      const after: StoredGrade = {
        ...before,
        dimensions,
        score: total,
        summary: dto.comment ?? before.summary,
        source: 'teacher',
        labelledDimensions: rubric.dimensions.map((d) => d.key).filter((k) => scored.has(k)),
        // The teacher's total: set now, the sum of dimensions all scored by a teacher, or a teacher's
        // total kept (a comment alone changes no total; an earlier teacher's grade without the flag was one).
        labelledTotal: dto.score !== undefined || rubric.dimensions.every((d) => scored.has(d.key)) || (before.source === 'teacher' && before.labelledTotal !== false && !rescored),
      };
      // A reused grade is an earlier essay's (a teacher's, perhaps): the teacher against it is no
      // measure of the grader, so it makes no agreement label.
      const grader = row.model_grade && row.model_grade.source !== 'reused' ? row.model_grade : null;
      await this.essays.override(m, auth.tenantId, id, auth.keyId, dto, { before, after, grader });
    });
    this.events.emit({ tenantId: auth.tenantId, essayId: id, status: 'graded' });
    return this.get(auth, id);
  }
}

function toView(
  row: Record<string, unknown>,
  overrides: Array<{ api_key_id: string | null; created_at: Date; changes: unknown }>,
  order: OrderView | null,
  schedule: WorkSchedule | null = null,
  deepSchedule: WorkSchedule | null = null,
): EssayView {
  const grade = (row.grade as StoredGrade | null) ?? null;
  return {
    id: String(row.id),
    status: String(row.status),
    tier: String(row.tier),
    language: String(row.language),
    rubric: { key: String(row.rubric_key), version: Number(row.rubric_version) },
    assignmentId: (row.assignment_id as string | null) ?? null,
    title: (row.title as string | null) ?? null,
    studentRef: (row.student_ref as string | null) ?? null,
    text: String(row.text),
    flags: (row.flags as string[]) ?? [],
    similarTo: row.similar_essay_id ? { essayId: String(row.similar_essay_id), similarity: Number(row.similarity) } : null,
    cost: formatCny(BigInt(row.cost_nanos as string)),
    cache: (row.cache_status as string | null) ?? null,
    grade,
    originalGrade: overrides.length ? ((row.model_grade as StoredGrade | null) ?? null) : null,
    deepGrade: (row.deep_grade as StoredGrade | null) ?? null,
    deepReview: order ? { orderId: order.orderId, status: order.status, price: order.price, refundReason: order.refundReason, schedule: deepSchedule } : null,
    schedule,
    overrides: overrides.map((o) => ({ by: o.api_key_id, at: o.created_at.toISOString(), changes: o.changes })),
    failure: row.failure_code ? { code: String(row.failure_code), reason: String(row.failure_reason) } : null,
    createdAt: (row.created_at as Date).toISOString(),
    updatedAt: (row.updated_at as Date).toISOString(),
    gradedAt: row.graded_at ? (row.graded_at as Date).toISOString() : null,
  };
}

/** Tells the queued limit how an admitted write ended (LimitsService.admitQueued). */
async function ended(admitted: (stored: boolean) => void, write: Promise<void>): Promise<void> {
  try {
    await write;
    admitted(true);
  } catch (err) {
    admitted(false);
    throw err;
  }
}
