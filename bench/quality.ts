/**
 * How well the offline grader agrees with teachers, on 300 human-scored Chinese essays
 * (bench/data/zh-aes-300, MIT; scores out of 100), beside the baseline every grader must beat: the
 * essay's length alone.
 *
 * Through the API of the built service (no provider key: every essay is graded offline), with the
 * same code as `npm run eval:quality`:
 * - uncalibrated: the set graded on zh-gaokao-60, its totals scaled to 100;
 * - calibrated, 5-fold cross-validated: for each fold, a tenant grades all 300 essays, a teacher
 *   overrides the 240 outside the fold with their human scores, the assignment is calibrated
 *   (POST /calibration: the ridge over the offline grader's features) and regraded, and the fold's
 *   60 essays are read back — so every essay is scored by a calibration that never saw it. Twice:
 *   folds dealt in turn, and folds of 60 consecutive essays (the file comes in runs from different
 *   sources with different mean scores: a calibration that has seen an essay's run partly learns
 *   the run, which no assignment's calibration could); and per class set: each run of 30 an
 *   assignment of its own, calibrated from 20 of its essays and read back on the other 10, three
 *   times round — how a school calibrates.
 * In process (the grader is a pure function): the feature weights of a ridge fitted on all 300, the
 * isotonic map of the offline total (5-fold), and the grader's time per essay.
 * And the speed of agreement: GET /v1/quality and GET /v1/assignments/:id/agreement over 100,000
 * teacher overrides (rows generated in the database).
 *
 *   npm run bench:quality
 */
import * as path from 'node:path';
import { essayFeatures, featureVector, FEATURE_NAMES } from '../src/grading/offline-features';
import { offlineGrade } from '../src/grading/offline-grader';
import { builtinRubric, totalStep } from '../src/grading/rubric';
import { agreement, Agreement, tabulate } from '../src/quality/agreement';
import { applyIsotonic, crossValidated, fitIsotonic, fitRidge, RIDGE_LAMBDA, spearman } from '../src/quality/calibration';
import { backfillAgreementCells } from '../migrations/1766000000000-AgreementCells';
import { evaluateQuality, EvalRow, InkstoneClient, readRows } from '../scripts/eval-quality';
import { commit, dropDatabase, ensureBuilt, freshDatabase, newTenant, runMain, startService } from './lib/harness';

type Figures = Agreement & { spearman: number | null };

export interface QualityResult {
  commit: string;
  date: string;
  data: string;
  essays: number;
  rubric: string;
  folds: number;
  lengthBaseline: { spearman: number | null };
  /**
   * through the API: the offline grader as it stands, and calibrated by the service (5-fold): folds
   * dealt in turn (every fold has essays from every part of the file), and folds of consecutive
   * essays (each fold's part of the file, with its own sources and mean score, unseen by its calibration)
   */
  api: {
    uncalibrated: Figures;
    calibrated: Figures;
    calibratedConsecutive?: Figures;
    /**
     * calibrated as a school would: each run of CLASS_SET consecutive essays (one source, one
     * teachers' mean) an assignment of its own, two thirds of it overridden and calibrated, the
     * other third read back, three times round so that every essay is predicted once
     */
    calibratedPerClassSet?: Figures;
    /** the methods the per-class-set calibrations chose, with how many of each */
    perClassSetMethods?: Record<string, number>;
    /** how many of them were switched on, of how many */
    perClassSetActive?: { on: number; of: number };
    calibrationMethod: string;
    activeFolds: number;
    activeFoldsConsecutive?: number;
    seconds: number;
    costPerEssay: string;
  };
  /** the teachers' mean score in each run of 30 consecutive essays of the file */
  runMeans?: number[];
  /** in process: the isotonic map of the offline total (5-fold), the ridge weights on all essays */
  inProcess: { isotonic: Figures; lambda: number; weights: Array<{ feature: string; weight: number }>; msPerEssay: number };
  /** GET /v1/quality and the assignment's agreement over this many overrides: median of 5, ms */
  agreementSpeed: { overrides: number; qualityMs: number; assignmentMs: number };
}

const DATA = path.join(__dirname, 'data/zh-aes-300/essays.jsonl');
const FOLDS = 5;
const RUBRIC = 'zh-gaokao-60';
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

function figures(predicted: number[], truth: number[], max: number): Figures {
  const rounded = predicted.map((p) => Math.max(0, Math.min(max, Math.round(p))));
  return { ...agreement(tabulate(rounded.map((p, i) => [p, truth[i]])), { step: 1, max }), spearman: round4(spearman(predicted, truth)) };
}

/** One fold through the API: the other folds' essays overridden with their human scores, calibrated, regraded. */
async function fold(url: string, rows: EvalRow[], f: number, inFold: (i: number) => boolean): Promise<{ predictions: Map<string, number>; method: string; active: boolean }> {
  const tenant = await newTenant(url);
  const api = new InkstoneClient(url, tenant.teacherKey);
  const a = await api.call<{ id: string }>('POST', '/v1/assignments', { title: `fold ${f}`, prompt: '记叙文或议论文', rubric: RUBRIC });
  const ids = await api.submit(a.id, rows);
  const graded = new Map((await api.settled(a.id, rows.length, 300, 600_000)).map((e) => [e.id, e]));
  const train = rows.filter((_, i) => !inFold(i));
  for (const r of train) {
    const e = graded.get(ids.get(r.id)!)!;
    // The human score on the rubric's scale and its own step (whole points on 高考 60): the only marks an override takes.
    const step = totalStep(builtinRubric(RUBRIC)!);
    await api.call('PATCH', `/v1/essays/${e.id}/grade`, { score: Math.round((r.score / (r.maxScore ?? 100)) * Number(e.maxScore) / step) * step });
  }
  const c = await api.call<{ method: string; active: boolean }>('POST', `/v1/assignments/${a.id}/calibration`);
  await api.call('POST', `/v1/assignments/${a.id}/regrade`);
  const after = new Map((await api.essays(a.id)).map((e) => [e.id, e]));
  const predictions = new Map<string, number>();
  rows.forEach((r, i) => {
    if (!inFold(i)) return;
    const e = after.get(ids.get(r.id)!)!;
    predictions.set(r.id, (Number(e.score) / Number(e.maxScore)) * (r.maxScore ?? 100));
  });
  return { predictions, method: c.method, active: c.active };
}

/** Essays of one source in the file: a class set, as an assignment of its own. */
const CLASS_SET = 30;
const CLASS_FOLDS = 3;

/**
 * Each set of essays calibrated through the API `folds` times, once for each fold of it: the rest
 * of the set overridden, calibrated and regraded, the fold read back. Every essay of the sets is
 * predicted once; with the methods the calibrations chose and how many were switched on.
 */
async function calibrateSets(url: string, sets: EvalRow[][], folds: number, inFold: (i: number, f: number) => boolean) {
  const predicted = new Map<string, number>();
  const methods: Record<string, number> = {};
  let on = 0;
  let of = 0;
  for (const set of sets) {
    for (let f = 0; f < folds; f++) {
      const r = await fold(url, set, f, (i) => inFold(i, f));
      r.predictions.forEach((v, k) => predicted.set(k, v));
      methods[r.method] = (methods[r.method] ?? 0) + 1;
      of++;
      if (r.active) on++;
    }
  }
  return { predicted, methods, active: { on, of } };
}

/** 100,000 teacher overrides in one assignment, generated in the database; the agreement endpoints timed. */
async function agreementSpeed(url: string, databaseUrl: string, overrides: number): Promise<QualityResult['agreementSpeed']> {
  const tenant = await newTenant(url);
  const api = new InkstoneClient(url, tenant.adminKey);
  const a = await api.call<{ id: string }>('POST', '/v1/assignments', { title: 'labels', prompt: '记叙文', rubric: RUBRIC });
  const { Client } = await import('pg');
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    // The grader's grade and the teacher's, with dimensions, as an override leaves them.
    await c.query(
      `INSERT INTO essays (tenant_id, id, assignment_id, rubric_key, rubric_version, language, tier, text, status, grade, model_grade, created_at)
       SELECT $1, gen_random_uuid(), $2, $3, 1, 'zh', 'standard', '作文', 'graded',
              jsonb_build_object('score', t.s, 'source', 'teacher', 'dimensions', jsonb_build_array(
                jsonb_build_object('key', 'content', 'score', t.s / 3), jsonb_build_object('key', 'expression', 'score', t.s / 3), jsonb_build_object('key', 'development', 'score', t.s - 2 * (t.s / 3)))),
              jsonb_build_object('score', m.s, 'source', 'model', 'tier', 'standard', 'provider', 'dashscope', 'model', 'qwen-flash', 'dimensions', jsonb_build_array(
                jsonb_build_object('key', 'content', 'score', m.s / 3), jsonb_build_object('key', 'expression', 'score', m.s / 3), jsonb_build_object('key', 'development', 'score', m.s - 2 * (m.s / 3)))),
              now() - (g % 60) * interval '1 day'
         FROM generate_series(1, $4) g
         CROSS JOIN LATERAL (SELECT 20 + (g * 7919) % 40 AS s) t
         CROSS JOIN LATERAL (SELECT least(60, greatest(0, t.s + (g % 7) - 3)) AS s) m`,
      [tenant.tenantId, a.id, RUBRIC, overrides],
    );
    // Counted as the overrides would have counted them.
    await backfillAgreementCells(c, [tenant.tenantId]);
    await c.query('ANALYZE essays');
    await c.query('ANALYZE agreement_cells');
  } finally {
    await c.end();
  }
  const time = async (p: string) => {
    const ms: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await api.call('GET', p);
      if (i > 0) ms.push(performance.now() - t0); // the first warms the caches
    }
    return Math.round(ms.sort((x, y) => x - y)[2]);
  };
  return { overrides, qualityMs: await time('/v1/quality?groupBy=model'), assignmentMs: await time(`/v1/assignments/${a.id}/agreement`) };
}

export async function runQuality(): Promise<QualityResult> {
  ensureBuilt();
  const rows = readRows(DATA);
  const truth = rows.map((r) => r.score);
  const max = rows[0].maxScore ?? 100;
  const rubric = builtinRubric(RUBRIC)!;

  // In process first: the grader alone.
  const t0 = performance.now();
  const offline = rows.map((r) => {
    const g = offlineGrade(r.text, rubric, 'zh');
    return (g.score / g.maxScore) * max;
  });
  const msPerEssay = round4((performance.now() - t0) / rows.length);
  const features = rows.map((r) => featureVector(essayFeatures(r.text, 'zh'), rubric));
  const idx = rows.map((_, i) => i);
  const isotonic = crossValidated(idx, FOLDS, (train, test) => {
    const m = fitIsotonic(train.map((i) => ({ x: offline[i], y: truth[i] })));
    return test.map((i) => applyIsotonic(m, offline[i]));
  });
  const all = fitRidge(features, truth, RIDGE_LAMBDA);

  const dbName = 'inkstone_bench_quality';
  const databaseUrl = await freshDatabase(dbName);
  // No provider key: every essay is graded by the offline grader.
  const service = await startService({ DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: '10', WORKER_POLL_MS: '100' });
  try {
    const tenant = await newTenant(service.url);
    const uncalibrated = await evaluateQuality({ url: service.url, key: tenant.teacherKey, rubric: RUBRIC, rows, pollMs: 300 });
    const scored = (predicted: Map<string, number>) => figures(rows.map((r) => predicted.get(r.id)!), truth, max);
    const calibrate = async (inFold: (i: number, f: number) => boolean) => {
      const r = await calibrateSets(service.url, [rows], FOLDS, inFold);
      return { figures: scored(r.predicted), methods: Object.keys(r.methods).join(', '), active: r.active.on };
    };
    const dealt = await calibrate((i, f) => i % FOLDS === f);
    const per = Math.ceil(rows.length / FOLDS);
    const consecutive = await calibrate((i, f) => Math.floor(i / per) === f);
    // Calibration as an assignment gets it: each class set from its own overrides only (20 of 30,
    // the minimum a calibration takes), the rest read back; a short last set is left out.
    const classSets = Array.from({ length: Math.floor(rows.length / CLASS_SET) }, (_, k) => rows.slice(k * CLASS_SET, (k + 1) * CLASS_SET));
    const perClassRun = await calibrateSets(service.url, classSets, CLASS_FOLDS, (i, f) => i % CLASS_FOLDS === f);
    const inClassSets = classSets.flat();
    const perClass = {
      figures: figures(inClassSets.map((r) => perClassRun.predicted.get(r.id)!), inClassSets.map((r) => r.score), max),
      methods: perClassRun.methods,
      active: perClassRun.active,
    };
    return {
      commit: commit(),
      date: new Date().toISOString().slice(0, 10),
      data: "zh-aes-300 (300 Chinese high-school essays, teachers' scores out of 100, MIT)",
      essays: rows.length,
      rubric: RUBRIC,
      folds: FOLDS,
      lengthBaseline: uncalibrated.lengthBaseline,
      runMeans: Array.from({ length: Math.ceil(rows.length / 30) }, (_, k) => {
        const run = truth.slice(k * 30, k * 30 + 30);
        return Math.round((run.reduce((a, b) => a + b, 0) / run.length) * 10) / 10;
      }),
      api: {
        uncalibrated: uncalibrated.agreement,
        calibrated: dealt.figures,
        calibratedConsecutive: consecutive.figures,
        calibrationMethod: dealt.methods,
        activeFolds: dealt.active,
        activeFoldsConsecutive: consecutive.active,
        calibratedPerClassSet: perClass.figures,
        perClassSetMethods: perClass.methods,
        perClassSetActive: perClass.active,
        seconds: uncalibrated.seconds,
        costPerEssay: uncalibrated.costPerEssay,
      },
      inProcess: {
        isotonic: figures(isotonic, truth, max),
        lambda: RIDGE_LAMBDA,
        weights: FEATURE_NAMES.map((feature, j) => ({ feature, weight: Math.round(all.weights[j] * 100) / 100 })).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)),
        msPerEssay,
      },
      agreementSpeed: await agreementSpeed(service.url, databaseUrl, 100_000),
    };
  } finally {
    await service.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('quality.json', runQuality);
