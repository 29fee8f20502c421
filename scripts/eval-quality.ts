/**
 * How well a running Inkstone agrees with human scores, through its public API, with whatever
 * providers it has (SPEC §9). For an operator, before changing a tier:
 *
 *   npm run eval:quality -- --data FILE.jsonl --rubric KEY [--url URL] [--key KEY] [--calibrate K] [--limit N] [--json OUT]
 *
 * FILE.jsonl holds one essay a line: {id, text, score, maxScore?, title?} (maxScore: the human
 * scale's top, default 100). The key (--key or INKSTONE_KEY) is a teacher or admin key of the
 * tenant to grade in; the URL (--url or INKSTONE_URL) defaults to http://127.0.0.1:3000. It creates
 * an assignment on the rubric, submits the set in class sets of 100, waits until every essay is
 * graded, and reports agreement with the human scores (QWK, exact, adjacent, bias, Spearman), the
 * Spearman of length alone as the baseline, the cost per essay and the time, as a table and as JSON.
 * With --calibrate K, the first K essays of the file are overridden with their human scores, the
 * assignment is calibrated and regraded, and agreement is reported on the other essays before and
 * after.
 */
import * as fs from 'node:fs';
import { formatCny, parseCny } from '../src/common/money';
import { detectLanguage, essayLength } from '../src/grading/essay-text';
import { Rubric, totalStep } from '../src/grading/rubric';
import { Agreement, agreement, tabulate } from '../src/quality/agreement';
import { spearman } from '../src/quality/calibration';

export interface EvalRow {
  id: string;
  text: string;
  score: number;
  maxScore?: number;
  title?: string;
}

export interface EvalOptions {
  url: string;
  key: string;
  rubric: string;
  rows: EvalRow[];
  calibrate?: number;
  pollMs?: number;
  timeoutMs?: number;
  log?: (line: string) => void;
}

type Figures = Agreement & { spearman: number | null };

export interface EvalReport {
  url: string;
  rubric: string;
  assignmentId: string;
  essays: number;
  graded: number;
  failed: number;
  /** graded by a model, and by the offline grader (no provider, all failed, or the budget) */
  byModel: number;
  offline: number;
  humanMax: number;
  agreement: Figures;
  lengthBaseline: { spearman: number | null };
  /** all the set's model cost ÷ essays, in CNY */
  costPerEssay: string;
  seconds: number;
  calibrated?: {
    labelled: number;
    evaluated: number;
    calibration: Record<string, unknown>;
    before: Figures;
    after: Figures;
  };
}

interface EssayItem {
  id: string;
  status: string;
  studentRef: string | null;
  score: number | null;
  maxScore: number | null;
  flags: string[];
  cost: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** The Inkstone API for one key: JSON in and out, 429 waited out as the service asks. */
export class InkstoneClient {
  constructor(
    private readonly url: string,
    private readonly key: string,
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${this.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status === 429 && attempt < 20) {
        await sleep(Math.min(30, Number(res.headers.get('retry-after') ?? 1)) * 1000);
        continue;
      }
      if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text.slice(0, 300)}`);
      return (text ? JSON.parse(text) : undefined) as T;
    }
  }

  /** Every essay of an assignment (GET /v1/essays, page by page). */
  async essays(assignmentId: string): Promise<EssayItem[]> {
    const out: EssayItem[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/v1/essays?assignmentId=${assignmentId}&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page: { data: EssayItem[]; nextCursor: string | null } = await this.call('GET', q);
      out.push(...page.data);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  }

  /** Submits the rows to the assignment in class sets of 100; their essay ids by row id. */
  async submit(assignmentId: string, rows: EvalRow[]): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    for (let i = 0; i < rows.length; i += 100) {
      const set = rows.slice(i, i + 100);
      const res = await this.call<{ ids: string[] }>('POST', '/v1/essays/batch', {
        assignmentId,
        essays: set.map((r) => ({ text: r.text, studentRef: r.id, ...(r.title ? { title: r.title.slice(0, 200) } : {}) })),
      });
      set.forEach((r, j) => ids.set(r.id, res.ids[j]));
    }
    return ids;
  }

  /** Waits until no essay of the assignment is queued or grading; the essays. */
  async settled(assignmentId: string, expected: number, pollMs: number, timeoutMs: number): Promise<EssayItem[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const list = await this.essays(assignmentId);
      if (list.length >= expected && list.every((e) => e.status !== 'queued' && e.status !== 'grading')) return list;
      if (Date.now() > until) throw new Error(`gave up after ${Math.round(timeoutMs / 1000)} s: ${list.filter((e) => e.status === 'queued' || e.status === 'grading').length} essays still waiting`);
      await sleep(pollMs);
    }
  }
}

/** A grade on the rubric's scale as a score on the human scale. */
const toHuman = (e: EssayItem, humanMax: number) => (Number(e.score) / Number(e.maxScore)) * humanMax;

/** Agreement of grades with human scores, on the human scale's steps (whole points unless halves occur). */
function figures(pairs: Array<[number, number]>, humanMax: number, step: number): Figures {
  const onStep = pairs.map(([g, h]) => [Math.max(0, Math.min(humanMax, Math.round(g / step) * step)), h] as [number, number]);
  const a = agreement(tabulate(onStep), { step, max: humanMax });
  return { ...a, spearman: pairs.length > 1 ? round4(spearman(pairs.map((p) => p[0]), pairs.map((p) => p[1]))) : null };
}

export async function evaluateQuality(o: EvalOptions): Promise<EvalReport> {
  const log = o.log ?? (() => undefined);
  const api = new InkstoneClient(o.url.replace(/\/$/, ''), o.key);
  const rows = o.rows;
  if (!rows.length) throw new Error('the data set is empty');
  const humanMax = rows[0].maxScore ?? 100;
  const step = rows.every((r) => Number.isInteger(r.score)) ? 1 : 0.5;
  const started = Date.now();
  const a = await api.call<{ id: string; maxScore?: number }>('POST', '/v1/assignments', {
    title: `quality evaluation ${new Date().toISOString().slice(0, 16)}`,
    // Each essay is graded against its own title (sent with it), not one task for all.
    prompt: '按每篇作文的题目写作 / Write on the title given with each essay',
    rubric: o.rubric,
  });
  log(`assignment ${a.id}: submitting ${rows.length} essays`);
  const ids = await api.submit(a.id, rows);
  const list = await api.settled(a.id, rows.length, o.pollMs ?? 500, o.timeoutMs ?? 30 * 60_000);
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  const byEssay = new Map(list.map((e) => [e.id, e]));
  const gradedRows = rows.filter((r) => byEssay.get(ids.get(r.id)!)?.score != null);
  const pairs = gradedRows.map((r) => [toHuman(byEssay.get(ids.get(r.id)!)!, humanMax), r.score] as [number, number]);
  const cost = list.reduce((s, e) => s + parseCny(e.cost), 0n);
  const offline = list.filter((e) => e.flags.includes('offline_estimate')).length;
  const report: EvalReport = {
    url: o.url,
    rubric: o.rubric,
    assignmentId: a.id,
    essays: rows.length,
    graded: gradedRows.length,
    failed: list.filter((e) => e.status === 'failed').length,
    byModel: gradedRows.length - offline,
    offline,
    humanMax,
    agreement: figures(pairs, humanMax, step),
    lengthBaseline: {
      spearman: rows.length > 1 ? round4(spearman(rows.map((r) => essayLength(r.text, detectLanguage(r.text))), rows.map((r) => r.score))) : null,
    },
    costPerEssay: formatCny(cost / BigInt(rows.length)),
    seconds,
  };
  if (o.calibrate) report.calibrated = await calibrateAndCompare(api, a.id, o.rubric, rows, ids, byEssay, o.calibrate, humanMax, step, log);
  return report;
}

/** The step of a rubric's total (the rule of src/grading/rubric.ts), for the rubric as GET /v1/rubrics describes it. */
async function rubricStep(api: InkstoneClient, key: string): Promise<number> {
  const rubrics = await api.call<{ data: Rubric[] }>('GET', '/v1/rubrics');
  const r = rubrics.data.find((x) => x.key === key);
  if (!r) throw new Error(`rubric ${key} is not among the tenant's rubrics`);
  return totalStep(r);
}

/** Overrides the first K essays with the human scores, calibrates, regrades, and compares on the rest. */
async function calibrateAndCompare(
  api: InkstoneClient,
  assignmentId: string,
  rubric: string,
  rows: EvalRow[],
  ids: Map<string, string>,
  before: Map<string, EssayItem>,
  k: number,
  humanMax: number,
  step: number,
  log: (line: string) => void,
): Promise<NonNullable<EvalReport['calibrated']>> {
  const labelled = rows.slice(0, k);
  const rest = rows.slice(k);
  const mark = await rubricStep(api, rubric);
  log(`overriding ${labelled.length} essays with their human scores`);
  for (const r of labelled) {
    const e = before.get(ids.get(r.id)!);
    if (!e || e.maxScore == null) continue;
    // The human score on the rubric's scale, on the rubric's own step (an override takes no other mark).
    const score = Math.round((r.score / humanMax) * Number(e.maxScore) / mark) * mark;
    await api.call('PATCH', `/v1/essays/${e.id}/grade`, { score });
  }
  const calibration = await api.call<Record<string, unknown>>('POST', `/v1/assignments/${assignmentId}/calibration`);
  log(`calibration ${calibration.version}: ${calibration.method}, active ${calibration.active}`);
  await api.call('POST', `/v1/assignments/${assignmentId}/regrade`);
  const after = new Map((await api.essays(assignmentId)).map((e) => [e.id, e]));
  const pairsOf = (m: Map<string, EssayItem>) =>
    rest.filter((r) => m.get(ids.get(r.id)!)?.score != null).map((r) => [toHuman(m.get(ids.get(r.id)!)!, humanMax), r.score] as [number, number]);
  return { labelled: labelled.length, evaluated: rest.length, calibration, before: figures(pairsOf(before), humanMax, step), after: figures(pairsOf(after), humanMax, step) };
}

export function readRows(file: string, limit?: number): EvalRow[] {
  const rows = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      const r = JSON.parse(l) as EvalRow;
      if (typeof r.text !== 'string' || typeof r.score !== 'number') throw new Error(`${file}:${i + 1}: each line needs text (string) and score (number)`);
      return { ...r, id: String(r.id ?? i + 1) };
    });
  return limit ? rows.slice(0, limit) : rows;
}

export function parseArgs(argv: string[]): { data: string; rubric: string; url: string; key: string; calibrate?: number; limit?: number; json?: string } {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [name, inline] = a.slice(2).split('=', 2);
    args.set(name, inline ?? argv[++i]);
  }
  const num = (name: string) => {
    if (!args.has(name)) return undefined;
    const n = Number(args.get(name));
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number`);
    return n;
  };
  const data = args.get('data');
  const rubric = args.get('rubric');
  const key = args.get('key') ?? process.env.INKSTONE_KEY;
  if (!data || !rubric) throw new Error('usage: npm run eval:quality -- --data FILE.jsonl --rubric KEY [--url URL] [--key KEY] [--calibrate K] [--limit N] [--json OUT]');
  if (!key) throw new Error('give a teacher or admin key with --key or INKSTONE_KEY');
  return { data, rubric, key, url: args.get('url') ?? process.env.INKSTONE_URL ?? 'http://127.0.0.1:3000', calibrate: num('calibrate'), limit: num('limit'), json: args.get('json') };
}

export function formatReport(r: EvalReport): string {
  const row = (what: string, f: Figures) => `| ${what} | ${f.n} | ${f.qwk ?? '—'} | ${f.exact ?? '—'} | ${f.adjacent ?? '—'} | ${f.bias ?? '—'} | ${f.spearman ?? '—'} |`;
  const lines = [
    `${r.essays} essays on ${r.rubric} at ${r.url}: ${r.graded} graded (${r.byModel} by a model, ${r.offline} offline), ${r.failed} failed, in ${r.seconds} s; cost per essay ${r.costPerEssay} CNY`,
    `length alone: Spearman ${r.lengthBaseline.spearman ?? '—'}`,
    '',
    '| | n | QWK | exact | adjacent | bias | Spearman |',
    '|---|---|---|---|---|---|---|',
    row('all essays, as graded', r.agreement),
  ];
  if (r.calibrated) {
    lines.push(row(`the other ${r.calibrated.evaluated}, before calibration`, r.calibrated.before));
    lines.push(row(`the other ${r.calibrated.evaluated}, after (calibrated on ${r.calibrated.labelled})`, r.calibrated.after));
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const report = await evaluateQuality({ url: o.url, key: o.key, rubric: o.rubric, rows: readRows(o.data, o.limit), calibrate: o.calibrate, log: (l) => console.error(l) });
  console.log(formatReport(report));
  console.log(JSON.stringify(report, null, 2));
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
