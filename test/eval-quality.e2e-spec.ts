import * as path from 'node:path';
import { evaluateQuality, formatReport, parseArgs, readRows } from '../scripts/eval-quality';
import { startAppWithFake, AppWithFake } from './support/app-with-fake';
import { Factory } from './support/factories';

/**
 * npm run eval:quality against a listening service with the fake provider, on a small slice of the
 * human-scored set: the essays go through the public API, are graded by a model, and the report's
 * figures are those of the grades the API shows.
 */
describe('eval:quality (fake provider, real PostgreSQL, real HTTP)', () => {
  let app: AppWithFake;
  let url: string;
  let key: string;
  const rows = readRows(path.join(__dirname, '../bench/data/zh-aes-300/essays.jsonl'), 30);

  beforeAll(async () => {
    app = await startAppWithFake({ WORKER_POLL_MS: '50' }, { listen: true });
    url = await app.t.app.getUrl();
    const f = new Factory(app.t.app);
    const tenant = await f.newTenant({ monthlyBudget: '100.00' });
    key = (await f.newKey(tenant, 'teacher')).key;
  });
  afterAll(async () => {
    await app.close();
  });

  it('grades the set through the API and reports agreement, the length baseline, cost and time; calibrates on the first K', async () => {
    const r = await evaluateQuality({ url, key, rubric: 'zh-gaokao-60', rows, calibrate: 20, pollMs: 100 });
    expect(r).toMatchObject({ essays: 30, graded: 30, failed: 0, byModel: 30, offline: 0, humanMax: 100 });
    expect(r.agreement.n).toBe(30);
    expect(r.agreement.qwk).not.toBeNull();
    expect(r.agreement.adjacent).toBeGreaterThanOrEqual(r.agreement.exact!);
    expect(typeof r.lengthBaseline.spearman).toBe('number');
    expect(Number(r.costPerEssay)).toBeGreaterThan(0);
    expect(r.calibrated).toMatchObject({ labelled: 20, evaluated: 10 });
    expect(r.calibrated!.calibration).toMatchObject({ essays: 20, method: 'isotonic' });
    expect(r.calibrated!.before.n).toBe(10);
    expect(r.calibrated!.after.n).toBe(10);
    // Switched on, the calibration moves the held-out totals toward the teachers' (the fake grades at
    // 55–95% of the range, these teachers give about 83 of 100); left off, the regrade changes nothing.
    if (r.calibrated!.calibration.active) expect(Math.abs(r.calibrated!.after.bias!)).toBeLessThan(Math.abs(r.calibrated!.before.bias!));
    else expect(r.calibrated!.after).toEqual(r.calibrated!.before);
    const table = formatReport(r);
    expect(table).toContain('| all essays, as graded | 30 |');
    expect(table).toContain('after (calibrated on 20)');
  });

  it('reads its arguments and refuses bad ones', () => {
    expect(parseArgs(['--data', 'x.jsonl', '--rubric', 'zh-gaokao-60', '--key', 'k', '--calibrate=20'])).toMatchObject({ data: 'x.jsonl', rubric: 'zh-gaokao-60', key: 'k', calibrate: 20 });
    expect(() => parseArgs(['--rubric', 'zh-gaokao-60', '--key', 'k'])).toThrow(/usage/);
    expect(() => parseArgs(['--data', 'x', '--rubric', 'r', '--key', 'k', '--calibrate', '-3'])).toThrow(/positive/);
  });

  it('says clearly when the key is refused', async () => {
    await expect(evaluateQuality({ url, key: 'ink_not_a_key', rubric: 'zh-gaokao-60', rows: rows.slice(0, 2) })).rejects.toThrow(/401/);
  });
});
