/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, HTTPRequest, Page } from 'puppeteer-core';
import { buildConsole } from '../scripts/build-console';
import { cnyExact, cnySmall, dateTime } from '../console/src/format';
import { intlLocale } from '../console/src/i18n';
import { makeDocx } from './support/docx';
import { generateEssay } from './support/essays';
import { waitForEssays } from './support/grading';
import { collectProblems, launchBrowser, screenshot } from './support/browser';
import { signPayload } from '../src/common/signature';
import { AppWithFake, startAppWithFake } from './support/app-with-fake';
import { OPERATOR_TOKEN } from './support/test-app';
import { waitFor } from './support/wait';
import { LimitsService } from '../src/tenancy/limits.service';
import type { TestTenant } from './support/factories';

/**
 * The console in a real browser (Debian's chromium, driven by puppeteer-core), against the service
 * on loopback with its workers grading on the fake provider: what a teacher and a tenant admin do.
 */
/** The school's name, long enough to wrap in a phone's header. */
const SCHOOL = '春风实验小学 · Spring Breeze Experimental Primary School';

describe('the web console in a browser', () => {
  let s: AppWithFake;
  let base: string;
  let browser: Browser;
  let tenant: TestTenant;
  let teacherKey: string;
  const files = fs.mkdtempSync(path.join(os.tmpdir(), 'inkstone-console-'));

  beforeAll(async () => {
    await buildConsole();
    s = await startAppWithFake({}, { listen: true });
    base = `http://127.0.0.1:${(s.t.app.getHttpServer().address() as AddressInfo).port}`;
    tenant = await s.f.newTenant({ name: SCHOOL, monthlyBudget: '100.00', timezone: 'Asia/Shanghai' });
    teacherKey = (await s.f.newKey(tenant, 'teacher')).key;
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await s?.close();
    fs.rmSync(files, { recursive: true, force: true });
  });

  const api = (key: string) => ({
    get: (url: string) => s.t.http.get(url).set('authorization', `Bearer ${key}`),
  });

  /** A fresh browser profile (its own cookies) on a page of the console, watched for problems. */
  async function openConsole(width = 1280): Promise<{ ctx: BrowserContext; page: Page; problems: string[] }> {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setViewport({ width, height: 900 });
    await page.setExtraHTTPHeaders({ 'accept-language': 'en-US,en' });
    const problems = collectProblems(page);
    await page.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
    return { ctx, page, problems };
  }

  /** Signs in with the keyboard only: tab to the labelled key field, type, Enter. */
  async function signIn(page: Page, key: string): Promise<void> {
    await page.waitForSelector('input[name=key]');
    await page.focus('input[name=key]');
    await page.keyboard.type(key);
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-test=who]');
  }

  const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? '');

  it('serves the page with a Content-Security-Policy that allows no inline script, and the page has none', async () => {
    const res = await s.t.http.get('/console/').expect(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    await s.t.http.get('/console').expect(308).expect('location', '/console/');
    await s.t.http.get('/console/nope.js').expect(404);
    // In the browser the policy holds: an inline script slipped into the page does not run.
    const { ctx, page } = await openConsole();
    try {
      await page.waitForSelector('input[name=key]');
      const ran = await page.evaluate(async () => {
        const script = document.createElement('script');
        script.textContent = 'window.__injected = true';
        document.body.appendChild(script);
        await new Promise((r) => setTimeout(r, 50));
        return (window as unknown as { __injected?: boolean }).__injected === true;
      });
      expect(ran).toBe(false);
      await screenshot(page, 'sign-in');
    } finally {
      await ctx.close();
    }
  });

  it("answers a revalidation 304 for the file's ETag however the browser names it (weak, as a compressing proxy gives it back; in a list; *), and a missing file under /docs 404", async () => {
    const etag = (await s.t.http.get('/console/app.js').expect(200)).headers.etag as string;
    expect(etag).toMatch(/^"[^"]+"$/);
    for (const named of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      // Before, only the exact strong tag was matched: every page load behind nginx's gzip fetched the script again.
      const res = await s.t.http.get('/console/app.js').set('if-none-match', named);
      expect([named, res.status]).toEqual([named, 304]);
    }
    await s.t.http.get('/console/app.js').set('if-none-match', '"other"').expect(200);
    // Before, 405 "GET is not a method of /docs/nope.css; it takes GET, HEAD".
    const missing = await s.t.http.get('/docs/nope.css').expect(404);
    expect(missing.headers.allow).toBeUndefined();
    await s.t.http.post('/docs/nope.css').expect(405);
  });

  it('serves the API reference (/docs) under a policy that allows no inline script, and it renders with no violation; over HTTPS the pages pin HTTPS (HSTS)', async () => {
    const res = await s.t.http.get('/docs').expect(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self';");
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['strict-transport-security']).toBeUndefined();
    for (const path of ['/docs', '/console/']) {
      const viaTls = await s.t.http.get(path).set('x-forwarded-proto', 'https').expect(200);
      expect([path, viaTls.headers['strict-transport-security']]).toEqual([path, 'max-age=15552000']);
    }
    const ctx = await browser.createBrowserContext();
    try {
      const page = await ctx.newPage();
      const problems = collectProblems(page);
      await page.goto(`${base}/docs`, { waitUntil: 'networkidle0' });
      // Its operations are listed (its scripts ran and read the document), and nothing was refused.
      await page.waitForSelector('.opblock-summary', { timeout: 15_000 });
      expect(await page.$$eval('.opblock-summary', (els) => els.length)).toBeGreaterThan(20);
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  });

  it('sends an upload once however often Submit is clicked, and a retry after a failure stores only what was not taken', async () => {
    const { ctx, page } = await openConsole();
    try {
      await signIn(page, teacherKey);
      const assignment = (await s.t.http.post('/v1/assignments').set('authorization', `Bearer ${teacherKey}`).send({ title: '只交一次', prompt: '写一篇记叙文', rubric: 'zh-gaokao-60' }).expect(201)).body as { id: string };
      const stored = async () =>
        ((await api(teacherKey).get(`/v1/essays?assignmentId=${assignment.id}&limit=100`).expect(200)).body.data as Array<{ studentRef: string | null }>).map((e) => e.studentRef ?? '-').sort();
      await page.goto(`${base}/console/#/assignments/${assignment.id}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#upload');

      // Two clicks on Submit before the page draws again: one class set sent.
      await page.click('#upload details summary');
      const pasted = `学号：twice-1\n${generateEssay(91, 'zh').text}\n---\n学号：twice-2\n${generateEssay(92, 'zh').text}\n`;
      await page.$eval('[data-test=upload-paste] textarea[name=text]', (el, v) => ((el as HTMLTextAreaElement).value = v as string) && el.dispatchEvent(new Event('input', { bubbles: true })), pasted);
      await page.$eval('[data-test=upload-paste] button[type=submit]', (b) => {
        (b as HTMLButtonElement).click();
        (b as HTMLButtonElement).click();
      });
      await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '2 of 2 submitted', { timeout: 30_000 });
      expect(await stored()).toEqual(['twice-1', 'twice-2']);
      // Two essays alike in one paste (the same text, no student line) are two essays: also when the
      // second is refused a moment and sent again from the box.
      const same = generateEssay(95, 'zh').text;
      let alikeSeen = 0;
      const refuseSecond = (r: HTTPRequest) => {
        if (r.method() === 'POST' && r.url().endsWith('/v1/essays') && (r.postData() ?? '').includes(same.slice(60, 75)) && ++alikeSeen === 2) {
          void r.respond({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'This server is stopping' } }) });
        } else void r.continue();
      };
      await page.setRequestInterception(true);
      page.on('request', refuseSecond);
      try {
        await page.$eval('[data-test=upload-paste] textarea[name=text]', (el, v) => ((el as HTMLTextAreaElement).value = v as string) && el.dispatchEvent(new Event('input', { bubbles: true })), `${same}\n---\n${same}\n`);
        await page.click('[data-test=upload-paste] button[type=submit]');
        await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '1 of 2 submitted', { timeout: 30_000 });
        expect(await stored()).toEqual(['-', 'twice-1', 'twice-2']);
        await page.click('[data-test=upload-paste] button[type=submit]');
        await page.waitForFunction(() => (document.querySelector('[data-test=upload-paste] textarea[name=text]') as HTMLTextAreaElement).value === '', { timeout: 30_000 });
      } finally {
        page.off('request', refuseSecond);
        await page.setRequestInterception(false);
      }
      expect(alikeSeen).toBe(3);
      expect(await stored()).toEqual(['-', '-', 'twice-1', 'twice-2']);

      // Two files, one refused for a moment (503): Submit again with the same files sends the
      // refused one, and the one taken before is answered as it was, not stored twice.
      fs.writeFileSync(path.join(files, 'alice.txt'), generateEssay(93, 'zh').text);
      fs.writeFileSync(path.join(files, 'bob.txt'), generateEssay(94, 'zh').text);
      const bobStarts = generateEssay(94, 'zh').text.slice(60, 75);
      let refusedOnce = false;
      const refuseBob = (r: HTTPRequest) => {
        if (!refusedOnce && r.method() === 'POST' && r.url().endsWith('/v1/essays') && (r.postData() ?? '').includes(bobStarts)) {
          refusedOnce = true;
          void r.respond({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'This server is stopping' } }) });
        } else void r.continue();
      };
      await page.setRequestInterception(true);
      page.on('request', refuseBob);
      try {
        const input = await page.waitForSelector('input[type=file]');
        await input!.uploadFile(path.join(files, 'alice.txt'), path.join(files, 'bob.txt'));
        await page.click('[data-test=upload-files] button[type=submit]');
        await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '1 of 2 submitted', { timeout: 10_000 }).catch(async (err) => {
          throw new Error(`${err}: the upload says ${await text(page, '#upload')}; refused: ${refusedOnce}`);
        });
        expect([refusedOnce, await text(page, '[data-test=upload-errors]')]).toEqual([true, expect.stringContaining('bob.txt')]);
        await page.click('[data-test=upload-files] button[type=submit]');
        await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '2 of 2 submitted', { timeout: 30_000 });
      } finally {
        page.off('request', refuseBob);
        await page.setRequestInterception(false);
      }
      expect(await stored()).toEqual(['-', '-', 'alice', 'bob', 'twice-1', 'twice-2']);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('a teacher signs in, uploads a class set of three files, watches them finish, opens one, sees its annotations, overrides it and exports CSV', async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      // the header says which school the session is in
      expect(await text(page, '[data-test=school]')).toBe(SCHOOL);
      // the key is not kept anywhere in the page
      expect(await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie)).not.toContain(teacherKey.slice(-12));

      // a new assignment
      await page.type('input[name=title]', '春天 · 三年二班');
      await page.type('textarea[name=prompt]', '以“春天”为题，写一篇不少于六百字的记叙文。');
      await page.select('select[name=language]', 'zh');
      await Promise.all([page.waitForFunction(() => location.hash.startsWith('#/assignments/')), page.click('#new-assignment button[type=submit]')]);
      const assignmentId = await page.evaluate(() => location.hash.split('/')[2]);

      // three files: a .txt, a .docx and a .csv of studentRef,text (plus one the page must refuse)
      const essay = (n: number) => `春天来了，小草从地里探出头来。第${n}段，我们去公园放风筝，风筝飞得很高。柳树发芽了，桃花也开了，小鸟在枝头唱歌，小朋友们在草地上跑来跑去，玩得真开心。\n\n妈妈说，春天是播种的季节。我门要珍惜时间，努力学习，像小树一样长大。`;
      fs.writeFileSync(path.join(files, '张三.txt'), essay(1));
      fs.writeFileSync(path.join(files, '李四.docx'), await makeDocx(essay(2).split('\n\n')));
      fs.writeFileSync(path.join(files, 'class.csv'), `studentRef,text\r\n王五,"${essay(3).replace(/"/g, '""')}"\r\n`);
      fs.writeFileSync(path.join(files, 'photo.png'), 'not an essay');
      const input = await page.waitForSelector('input[type=file]');
      await input!.uploadFile(...['张三.txt', '李四.docx', 'class.csv', 'photo.png'].map((f) => path.join(files, f)));
      await page.click('[data-test=upload-files] button[type=submit]');
      await page
        .waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent?.includes('3 of 3'), { timeout: 30_000 })
        .catch(async (err) => {
          throw new Error(`${err}: the upload says ${await text(page, '#upload')}; the page: ${problems.join('; ')}`);
        });
      expect(await text(page, '[data-test=upload-errors]')).toContain('photo.png: only .txt, .docx and .csv files are read');
      expect(await page.$eval('[data-test=upload-progress] progress', (p) => [(p as HTMLProgressElement).value, (p as HTMLProgressElement).max])).toEqual([3, 3]);

      // the live list: three rows whose statuses move to a finished state over SSE
      await page.waitForFunction(() => document.querySelectorAll('[data-test=essay-list] tbody tr').length === 3, { timeout: 30_000 });
      await page.waitForFunction(
        () => [...document.querySelectorAll('[data-test=essay-list] tbody tr')].every((tr) => ['graded', 'needs_review'].includes(tr.getAttribute('data-status') ?? '')),
        { timeout: 60_000 },
      );
      const students = await page.$$eval('[data-test=essay-list] tbody tr td:first-child', (tds) => tds.map((td) => td.textContent).sort());
      expect(students).toEqual(['张三', '李四', '王五'].sort());
      const listed = (await api(teacherKey).get(`/v1/essays?assignmentId=${assignmentId}`).expect(200)).body.data as Array<{ id: string; studentRef: string }>;
      expect(listed.map((e) => e.studentRef).sort()).toEqual(students);
      // each essay's flags read as words in the list, never as the API's codes
      const flagged = (await api(teacherKey).get(`/v1/essays?assignmentId=${assignmentId}`).expect(200)).body.data as Array<{ studentRef: string; flags: string[] }>;
      const flagCells = Object.fromEntries(await page.$$eval('[data-test=essay-list] tbody tr', (trs) => trs.map((tr) => [tr.querySelector('td:first-child')?.textContent, tr.querySelector('td:nth-child(4)')?.textContent ?? ''])));
      for (const e of flagged) {
        expect(flagCells[e.studentRef]).not.toMatch(/[a-z]_[a-z]/);
        if (e.flags.includes('possible_copy')) expect(flagCells[e.studentRef]).toContain('Possible copy');
      }
      expect(flagged.some((e) => e.flags.length > 0)).toBe(true);
      // the score distribution follows: the histogram is drawn again with the three scores
      await page.waitForFunction(() => /Mean: \d/.test(document.querySelector('#distribution')?.textContent ?? ''), { timeout: 10_000 });
      await screenshot(page, 'teacher-assignment');

      // open 李四's essay (the .docx one): its text is the document's, and its annotations are drawn at the API's characters
      const docxEssay = listed.find((e) => e.studentRef === '李四')!;
      await page.click(`tr[data-essay="${docxEssay.id}"] a`);
      await page.waitForSelector('[data-test=essay-text]');
      const view = (await api(teacherKey).get(`/v1/essays/${docxEssay.id}`).expect(200)).body as { text: string; grade: { annotations: Array<{ start: number; end: number; quote: string; category: string }> } };
      expect(view.text).toBe(essay(2));
      expect(view.grade.annotations.length).toBeGreaterThan(0);
      const marks = await page.$$eval('[data-test=essay-text] mark', (ms) =>
        ms.map((m) => ({ start: Number(m.getAttribute('data-start')), end: Number(m.getAttribute('data-end')), category: m.getAttribute('data-category'), text: m.firstChild?.textContent ?? '' })),
      );
      expect(marks.length).toBeGreaterThan(0);
      for (const m of marks) {
        expect(m.text).toBe(view.text.slice(m.start, m.end));
        expect(view.grade.annotations).toContainEqual(expect.objectContaining({ start: m.start, end: m.end, category: m.category }));
      }
      // every character of the essay is on the page, in order
      expect(await page.$eval('[data-test=essay-text]', (el) => [...el.childNodes].map((n) => (n.nodeType === 3 ? n.textContent : n.firstChild?.textContent)).join(''))).toBe(view.text);
      // the suggestion shows on hover
      await page.hover('[data-test=essay-text] mark');
      expect(await page.$eval('[data-test=essay-text] mark .tip', (tip) => getComputedStyle(tip).display)).toBe('block');
      expect(await text(page, '[data-test=essay-text] mark .tip')).toContain('Suggestion');
      const before = await page.$eval('[data-test=total] strong', (el) => Number(el.textContent));

      // The override fields take the rubric's steps (高考 60: whole points), not any fraction.
      await page.waitForFunction(() => [...document.querySelectorAll('[data-test=override] input[type=number]')].every((i) => i.getAttribute('step') === '1'), { timeout: 10_000 });
      const offStep = await page.$eval('[data-test=override] input[type=number]', (el) => {
        const input = el as HTMLInputElement;
        const was = input.value;
        input.value = '10.5';
        const valid = input.checkValidity();
        input.value = was;
        return valid;
      });
      expect(offStep).toBe(false);
      expect(await text(page, '[data-test=graded-by]')).toMatch(/^Graded by /);

      // override the first dimension: the new total shows, the model's original is kept
      const firstDim = await page.$eval('[data-test=override] input[type=number]', (el) => ({ name: el.getAttribute('name')!, max: Number(el.getAttribute('max')), value: Number((el as HTMLInputElement).value) }));
      const newScore = firstDim.value === firstDim.max ? firstDim.max - 1 : firstDim.max;
      await page.$eval(`[data-test=override] input[name="${firstDim.name}"]`, (el) => ((el as HTMLInputElement).value = ''));
      await page.type(`[data-test=override] input[name="${firstDim.name}"]`, String(newScore));
      await page.type('[data-test=override] textarea[name=comment]', '细节描写很生动，注意错别字。');
      await page.click('[data-test=override] button[type=submit]');
      await page.waitForSelector('[data-test=original-score]');
      const after = (await api(teacherKey).get(`/v1/essays/${docxEssay.id}`).expect(200)).body as { grade: { score: number; source: string; summary: string }; originalGrade: { score: number } };
      expect(after.grade.source).toBe('teacher');
      expect(after.originalGrade.score).toBe(before);
      expect(after.grade.score).toBe(before + newScore - firstDim.value);
      expect(await page.$eval('[data-test=total] strong', (el) => Number(el.textContent))).toBe(after.grade.score);
      expect(await text(page, '[data-test=original-score]')).toContain(String(before));
      // the footer says the grade is the teacher's now, not the model's
      await page.waitForFunction(() => document.querySelector('[data-test=graded-by]')?.textContent?.startsWith('Overridden by the teacher'));
      expect(await text(page, '[data-test=graded-by]')).not.toMatch(/^Graded by/);
      await screenshot(page, 'teacher-essay');

      // CSV export over the session: UTF-8 with a BOM, every student, the teacher's total
      await page.goto(`${base}/console/#/assignments/${assignmentId}`, { waitUntil: 'networkidle0' });
      const csvHref = await (await page.waitForSelector('[data-test=export-csv]'))!.evaluate((a) => a.getAttribute('href'));
      const csv = await page.evaluate(async (url) => {
        const res = await fetch(url!);
        return { status: res.status, type: res.headers.get('content-type'), bytes: [...new Uint8Array(await res.arrayBuffer())] };
      }, csvHref);
      expect(csv.status).toBe(200);
      expect(csv.type).toContain('text/csv');
      expect(csv.bytes.slice(0, 3)).toEqual([0xef, 0xbb, 0xbf]);
      const body = Buffer.from(csv.bytes).toString('utf8');
      for (const name of ['张三', '李四', '王五']) expect(body).toContain(name);
      expect(body).toContain(String(after.grade.score));
      // One override of one dimension of three is far from a calibration (it labels no total: none
      // yet): the button waits, and the page says how far.
      await page.waitForSelector('[data-test=calibrate-needs]');
      expect(await text(page, '[data-test=calibrate-needs]')).toContain('at least 20 essays a teacher overrode; this assignment has 0');
      expect(await page.$eval('[data-test=calibrate]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
      // Applying with no calibration in force says so, from the service's answer (not "regraded with the calibration").
      expect((await api(teacherKey).get(`/v1/assignments/${assignmentId}/calibration`)).status).toBe(404);
      await page.click('[data-test=regrade]');
      await page.waitForFunction(() => /\S/.test(document.querySelector('#agreement [role=status]')?.textContent ?? ''), { timeout: 10_000 });
      expect(await text(page, '#agreement [role=status]')).toMatch(/^No calibration is in force/);

      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 180_000);

  it('an admin sets a budget, sees the gauge and the spend chart, and finds each page marked in the menu and labelled in words', async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, tenant.adminKey);
      await page.goto(`${base}/console/#/admin/settings`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=budget-form] input[name=monthlyCap]');
      // Thresholds are percentages of the cap: a fraction typed as 0.8 is refused in words, nothing is saved.
      const thresholdsBefore = (await api(tenant.adminKey).get('/v1/budget').expect(200)).body.alertThresholds as number[];
      const setThresholds = async (value: string) => {
        await page.$eval('input[name=alertThresholds]', (el) => ((el as HTMLInputElement).value = ''));
        await page.type('input[name=alertThresholds]', value);
      };
      await setThresholds('0.8, 1');
      expect(await text(page, '[data-test=thresholds-read]')).toBe('"0.8" looks like a fraction: enter percentages, e.g. 80 for 80% of the cap.');
      await page.click('[data-test=budget-form] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#budget-policy [role=alert]')?.textContent?.includes('looks like a fraction'));
      expect((await api(tenant.adminKey).get('/v1/budget').expect(200)).body.alertThresholds).toEqual(thresholdsBefore);
      await setThresholds('100, 50 80%');
      expect(await text(page, '[data-test=thresholds-read]')).toBe('Will be saved: an alert when spending reaches 50%, 80%, 100% of the monthly cap.');
      // the same in Chinese
      await page.select('label.lang select', 'zh');
      await page.waitForFunction(() => document.querySelector('[data-test=thresholds-read]')?.textContent === '将保存：支出达到月度上限的 50%、80%、100% 时提醒。');
      await screenshot(page, 'admin-settings-zh');
      await page.select('label.lang select', 'en');
      await page.waitForFunction(() => document.querySelector('[data-test=thresholds-read]')?.textContent?.startsWith('Will be saved'));
      await page.$eval('input[name=monthlyCap]', (el) => ((el as HTMLInputElement).value = ''));
      await page.type('input[name=monthlyCap]', '5000.00');
      await page.click('[data-test=budget-form] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#budget-policy [role=status]')?.textContent === 'Saved');
      expect((await api(tenant.adminKey).get('/v1/budget').expect(200)).body.monthlyCap).toBe('5000.00');
      expect((await api(tenant.adminKey).get('/v1/budget').expect(200)).body.alertThresholds).toEqual([0.5, 0.8, 1]);
      // A save refused for its thresholds after that one: the earlier "Saved" does not stay as if it were this one's.
      await setThresholds('0.8');
      // (Clicked once the page shows what it read, as a person would: a click landing before the last
      // keystroke's render, on a loaded machine, submitted what was read before it.)
      await page.waitForFunction(() => document.querySelector('[data-test=thresholds-read]')?.textContent?.startsWith('"0.8" looks like a fraction'));
      await page.click('[data-test=budget-form] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#budget-policy [role=alert]')?.textContent?.includes('looks like a fraction'));
      expect(await page.$eval('#budget-policy p.ok', (el) => el.textContent)).toBe('');
      await setThresholds('50, 80, 100');

      await page.goto(`${base}/console/#/admin`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=gauge] canvas');
      await page.waitForSelector('[data-test=spend-chart] canvas');
      const budget = (await api(tenant.adminKey).get('/v1/budget').expect(200)).body as { spent: string };
      expect(await text(page, '[data-test=cap]')).toBe('¥5,000.00');
      expect(await text(page, '[data-test=spent]')).toBe(cnySmall(budget.spent));
      // the charts were drawn (a canvas with pixels that are not all blank)
      for (const chart of ['gauge', 'spend-chart', 'trend-chart']) {
        const painted = await page.$eval(`[data-test=${chart}] canvas`, (c) => {
          const canvas = c as HTMLCanvasElement;
          const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
          return false;
        });
        expect({ chart, painted }).toEqual({ chart, painted: true });
      }
      // Every table fits its card at a desktop width (none cut off behind a scroll bar).
      const overflowing = await page.$$eval('.table-wrap', (wraps) => wraps.filter((w) => w.scrollWidth > w.clientWidth + 1).map((w) => w.closest('section, .card')?.querySelector('h2')?.textContent));
      expect(overflowing).toEqual([]);
      expect(await page.$('[data-test=budget-used-up]')).toBeNull();
      // The school's limits as GET /v1/limits gives them: each named in words, its use now where the
      // server counts it, and where it is counted.
      await page.waitForSelector('[data-test=limits] tr[data-limit=apiKeys]');
      const limitsView = (await api(tenant.adminKey).get('/v1/limits').expect(200)).body as { limits: Record<string, number>; usage: Record<string, number>; shares: Record<string, number> };
      const limitRows = () => page.$$eval('[data-test=limits] tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-limit'), ...[...tr.children].map((c) => c.textContent)]));
      const rows = await limitRows();
      expect(rows.map((r) => r[0])).toEqual(Object.keys(limitsView.limits));
      const n = (x: number) => x.toLocaleString('en-GB');
      expect(rows.find((r) => r[0] === 'apiKeys')).toEqual(['apiKeys', 'Active API keys', n(limitsView.limits.apiKeys), n(limitsView.usage.apiKeys), 'for the school']);
      expect(rows.find((r) => r[0] === 'readsInFlight')).toEqual(['readsInFlight', 'Lists and exports read at once', n(limitsView.limits.readsInFlight), '0', 'for the school, on each server']);
      expect(rows.find((r) => r[0] === 'essaysGrading')?.[3]).toBe('—'); // not counted in the view
      expect(rows.filter((r) => /^[a-z]+[A-Z]/.test(r[1] ?? ''))).toEqual([]); // words, not the API's field names
      expect(await page.$('[data-test=limit-share]')).toBeNull(); // no other school reads here
      await screenshot(page, 'admin-dashboard');

      // The other admin pages: the menu marks the page itself only, and labels are words, not the API's field names.
      const currentNav = () => page.$$eval('header nav a[aria-current=page]', (as) => as.map((a) => a.textContent));
      expect(await currentNav()).toEqual(['Budget & usage']);
      const spare = await s.f.newKey(tenant, 'teacher');
      await page.goto(`${base}/console/#/admin/keys`, { waitUntil: 'networkidle0' });
      expect(await currentNav()).toEqual(['API keys']);
      // The key this session runs on cannot be revoked here, and its button says why.
      await page.waitForSelector(`tr[data-key="${spare.id}"] [data-test=revoke]`);
      expect(await page.$$eval('[data-test=revoke-cell] button[disabled]', (bs) => bs.map((b) => b.getAttribute('title')))).toEqual([
        'You are signed in with this key: sign in with another admin key to revoke it.',
      ]);
      // Revoking is asked again on the row before anything happens; the outcome is told on that row.
      const revokedAt = async () => ((await api(tenant.adminKey).get('/v1/api-keys').expect(200)).body.data as Array<{ id: string; revokedAt: string | null }>).find((k) => k.id === spare.id)?.revokedAt;
      await page.click(`tr[data-key="${spare.id}"] [data-test=revoke]`);
      await page.waitForSelector(`tr[data-key="${spare.id}"] [data-test=revoke-confirm]`);
      expect(await revokedAt()).toBeNull();
      await page.click(`tr[data-key="${spare.id}"] [data-test=revoke-confirm]`);
      await page.waitForFunction((id) => document.querySelector(`tr[data-key="${id}"] [role=status]`)?.textContent?.endsWith('is revoked.'), { timeout: 10_000 }, spare.id);
      expect(await revokedAt()).toEqual(expect.any(String));
      // A key created here is shown once, and no longer once it is revoked.
      await page.type('#create-key input[name=name]', 'short-lived');
      await page.click('#create-key button[type=submit]');
      await page.waitForSelector('[data-test=new-key]');
      const created = await text(page, '[data-test=new-key]');
      const shortLived = ((await api(tenant.adminKey).get('/v1/api-keys').expect(200)).body.data as Array<{ id: string; name: string; prefix: string }>).find((k) => k.name === 'short-lived')!;
      expect(created.length).toBeGreaterThan(20);
      await page.waitForSelector(`tr[data-key="${shortLived.id}"] [data-test=revoke]`);
      await page.click(`tr[data-key="${shortLived.id}"] [data-test=revoke]`);
      await page.click(`tr[data-key="${shortLived.id}"] [data-test=revoke-confirm]`);
      await page.waitForFunction((id) => document.querySelector(`tr[data-key="${id}"] [role=status]`)?.textContent?.endsWith('is revoked.'), { timeout: 10_000 }, shortLived.id);
      expect(await page.$('[data-test=new-key]')).toBeNull();
      expect(await page.evaluate((k) => document.body.textContent?.includes(k), created)).toBe(false);
      await page.goto(`${base}/console/#/admin/settings`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#grading-settings input[name=shadowRate]');
      expect(await currentNav()).toEqual(['Settings']);
      expect(await text(page, '#grading-settings')).not.toMatch(/nearDuplicateThreshold|shadowRate|reuseResubmissionGrades|directDeep|essayRetentionDays/);
      // A retention rule is set in days, and an empty field keeps essays until erased.
      const retention = async (value: string) => {
        // Emptied and typed into as a person would, then checked to hold exactly that before saving
        // (a triple click under a loaded CI machine did not always select the whole field).
        const field = '#grading-settings input[name=essayRetentionDays]';
        await page.focus(field);
        await page.$eval(field, (el) => (el as HTMLInputElement).select());
        await page.keyboard.press('Backspace');
        await page.waitForFunction((f) => (document.querySelector(f) as HTMLInputElement).value === '', {}, field);
        if (value) await page.type(field, value);
        await page.waitForFunction((f, v) => (document.querySelector(f) as HTMLInputElement).value === v, {}, field, value);
        const saved = page.waitForResponse((r) => r.url().endsWith('/v1/grading/settings') && r.request().method() === 'PUT');
        await page.click('#grading-settings button[type=submit]');
        expect((await saved).status()).toBe(200);
        return (await api(tenant.adminKey).get('/v1/grading/settings').expect(200)).body.essayRetentionDays as number | null;
      };
      expect(await retention('365')).toBe(365);
      expect(await page.$eval('#grading-settings input[name=essayRetentionDays]', (el) => (el as HTMLInputElement).value)).toBe('365');
      {
        // The reload that follows a save, answered late, does not overwrite what was typed meanwhile
        // (before, it filled the form again with what it read).
        const field = '#grading-settings input[name=essayRetentionDays]';
        const held: Array<() => void> = [];
        let released = 0;
        const hold = (r: HTTPRequest) => {
          if (r.isInterceptResolutionHandled()) return;
          if (r.method() === 'GET' && r.url().endsWith('/v1/grading/settings')) held.push(() => void r.continue());
          else void r.continue();
        };
        await page.setRequestInterception(true);
        page.on('request', hold);
        try {
          const saved = page.waitForResponse((r) => r.url().endsWith('/v1/grading/settings') && r.request().method() === 'PUT');
          await page.click('#grading-settings button[type=submit]');
          expect((await saved).status()).toBe(200);
          for (const until = Date.now() + 10_000; held.length === 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
          expect(held).toHaveLength(1); // the reload, held
          await page.focus(field);
          await page.$eval(field, (el) => (el as HTMLInputElement).select());
          await page.keyboard.type('3650');
          await page.waitForFunction((f) => (document.querySelector(f) as HTMLInputElement).value === '3650', {}, field);
          const reloaded = page.waitForResponse((r) => r.url().endsWith('/v1/grading/settings') && r.request().method() === 'GET');
          held[0]();
          released = 1;
          await reloaded;
          await new Promise((r) => setTimeout(r, 300)); // a render after it
          expect(await page.$eval(field, (el) => (el as HTMLInputElement).value)).toBe('3650');
        } finally {
          page.off('request', hold);
          for (const release of held.slice(released)) release();
          await page.setRequestInterception(false);
        }
      }
      expect(await retention('')).toBeNull();
      await page.goto(`${base}/console/#/admin/report`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=report] tr');
      expect(await currentNav()).toEqual(['Monthly report']);
      const month = (await api(tenant.adminKey).get('/v1/reports/month').expect(200)).body as { gradings: { total: number }; deepReviews: Record<string, number>; deepReviewMargin: string };
      const figures = Object.fromEntries(await page.$$eval('[data-test=report] tr', (trs) => trs.map((tr) => [tr.querySelector('th')?.textContent, tr.querySelector('td')?.textContent])));
      expect(figures).toMatchObject({
        Gradings: String(month.gradings.total),
        'Deep reviews ordered': String(month.deepReviews.ordered),
        'Deep reviews paid': String(month.deepReviews.sold),
        'Deep reviews delivered': String(month.deepReviews.delivered),
        'Deep reviews refunded': String(month.deepReviews.refunded),
      });
      expect(figures['Deep-review margin (revenue less their model cost)']).toMatch(/^-?¥/);
      // the model cost by purpose, each purpose named in words
      for (const purpose of ['grading', 'deep reviews', 'shadow evaluation']) expect(figures[`… of which ${purpose}`]).toMatch(/^¥/);
      // how the month's gradings were made, and the model cost to its last digit (the books)
      const kinds = month.gradings as unknown as Record<string, number>;
      expect(figures['… of which on the standard model']).toBe(String(kinds.standard));
      expect(figures['… of which by the offline grader (free, an estimate)']).toBe(String(kinds.offline));
      expect(figures['… of which answered from the cache']).toBe(String(kinds.fromCache));
      const modelCost = (month as unknown as { modelCost: string }).modelCost;
      expect(figures['Model cost']).toBe(cnyExact(modelCost));
      const digits = (x: string) => x.replace(/[¥,]/g, '').replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
      expect(digits(figures['Model cost']!)).toBe(digits(modelCost));
      // Another month chosen whose report cannot be read (the service refuses it a moment): the page
      // says so, and shows neither this month's figures under it nor this month's CSV.
      const refuseJanuary = (r: HTTPRequest) => {
        if (r.url().includes('/v1/reports/month?period=2026-01')) void r.respond({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'This server is stopping' } }) });
        else void r.continue();
      };
      await page.setRequestInterception(true);
      page.on('request', refuseJanuary);
      try {
        await page.$eval('#report input[name=period]', (el) => {
          (el as HTMLInputElement).value = '2026-01';
          el.dispatchEvent(new Event('change', { bubbles: true }));
        });
        await page.waitForSelector('#report [role=alert]');
        expect(await page.$('[data-test=report]')).toBeNull();
        expect(await page.$('[data-test=report-csv]')).toBeNull();
      } finally {
        page.off('request', refuseJanuary);
        await page.setRequestInterception(false);
      }
      problems.length = 0; // (the refused request's own console line)
      await page.goto(`${base}/console/#/quality`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#quality h3');
      expect(await currentNav()).toEqual(['Quality']);
      expect(await page.$$eval('#quality select[name=groupBy] option', (os) => os.map((o) => o.textContent))).toEqual(['Rubric', 'Tier', 'Model', 'Source of the grade']);
      expect(await page.$$eval('#quality h3', (hs) => hs.map((h) => h.textContent))).toEqual(["The grader against the teachers' overrides", 'Shadow evaluation: the standard grade against the deep tier']);
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 120_000);

  it("a teacher erases a student's essay: asked twice, back at its assignment, gone from it and from the API", async () => {
    const http = s.t.http;
    const auth = { authorization: `Bearer ${teacherKey}` };
    const assignment = (await http.post('/v1/assignments').set(auth).send({ title: '删除测试', prompt: '写一篇记叙文', rubric: 'zh-gaokao-60' }).expect(201)).body as { id: string };
    const ids = (
      await http
        .post('/v1/essays/batch')
        .set(auth)
        .send({ assignmentId: assignment.id, essays: [{ text: generateEssay(71, 'zh').text, studentRef: '赵六' }, { text: generateEssay(72, 'zh').text, studentRef: '钱七' }] })
        .expect(202)
    ).body.ids as string[];
    await waitForEssays(s.t.app, teacherKey, ids);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/essays/${ids[0]}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=essay-text]');
      await page.click('[data-test=erase]');
      // Asked again on the page before anything is erased.
      await api(teacherKey).get(`/v1/essays/${ids[0]}`).expect(200);
      await page.waitForSelector('[data-test=erase-confirm]');
      await screenshot(page, 'teacher-erase');
      await page.click('[data-test=erase-confirm]');
      await page.waitForFunction((a) => location.hash === `#/assignments/${a}`, {}, assignment.id);
      await page.waitForSelector(`tr[data-essay="${ids[1]}"]`);
      expect(await page.$(`tr[data-essay="${ids[0]}"]`)).toBeNull();
      await api(teacherKey).get(`/v1/essays/${ids[0]}`).expect(404);
      await api(teacherKey).get(`/v1/essays/${ids[1]}`).expect(200);
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it("going from one essay's page to another's (a link, the back button) shows the other essay's own grade in the override form, never what was typed or loaded for the first; an essay that cannot be read shows no other's", async () => {
    const http = s.t.http;
    const post = async (seed: number, studentRef: string) => (await http.post('/v1/essays').set('authorization', `Bearer ${teacherKey}`).send({ text: generateEssay(seed, 'zh').text, studentRef }).expect(202)).body.id as string;
    const [a, b] = [await post(9501, '周一'), await post(9502, '郑二')];
    const [va, vb] = await waitForEssays(s.t.app, teacherKey, [a, b]);
    const firstDim = (v: typeof va) => (v.grade as { dimensions: Array<{ key: string; score: number }> }).dimensions[0];
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/essays/${a}`);
      await page.waitForFunction(() => document.querySelector('main h1')?.textContent?.includes('周一'));
      await page.waitForSelector('[data-test=override] textarea[name=comment]');
      await page.type('[data-test=override] textarea[name=comment]', '只给周一的评语');
      const dim = `[data-test=override] input[name="dim-${firstDim(va).key}"]`;
      await page.$eval(dim, (el) => ((el as HTMLInputElement).value = ''));
      await page.type(dim, '0');
      // To the other essay in the same page (as its link does): its own grade, nothing of the first's.
      await page.evaluate((id) => (location.hash = `#/essays/${id}`), b);
      await page.waitForFunction(() => document.querySelector('main h1')?.textContent?.includes('郑二'));
      await page.waitForSelector('[data-test=override] textarea[name=comment]');
      expect(await page.$eval('[data-test=override] textarea[name=comment]', (el) => (el as HTMLTextAreaElement).value)).toBe('');
      expect(await page.$eval(`[data-test=override] input[name="dim-${firstDim(vb).key}"]`, (el) => (el as HTMLInputElement).value)).toBe(String(firstDim(vb).score));
      // An essay that cannot be read (another school's, erased, unknown): its error, and no other essay's text or form.
      await page.evaluate(() => (location.hash = '#/essays/00000000-0000-4000-8000-000000000000'));
      await page.waitForSelector('main [role=alert]');
      expect(await page.$('[data-test=override]')).toBeNull();
      expect(await text(page, 'main')).not.toContain('郑二');
      // Back to the first: loaded afresh, what was typed there is not kept either (nothing was saved).
      await page.goBack();
      await page.goBack();
      await page.waitForFunction(() => document.querySelector('main h1')?.textContent?.includes('周一'));
      await page.waitForSelector('[data-test=override] textarea[name=comment]');
      expect(await page.$eval('[data-test=override] textarea[name=comment]', (el) => (el as HTMLTextAreaElement).value)).toBe('');
      expect((await api(teacherKey).get(`/v1/essays/${b}`).expect(200)).body.grade).toEqual(vb.grade);
      expect(problems.filter((p) => !/404|Not Found/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('a teacher orders a deep review: asked first, then the page follows it to delivery and shows every part of it, at its exact price', async () => {
    const http = s.t.http;
    await http.put('/v1/billing/settings').set('authorization', `Bearer ${tenant.adminKey}`).send({ deepReviewPrice: '9.999', paymentMode: 'invoice' }).expect(200);
    const assignment = (await http.post('/v1/assignments').set('authorization', `Bearer ${teacherKey}`).send({ title: '精批 · 我的老师', prompt: '写一篇记叙文', rubric: 'zh-gaokao-60' }).expect(201)).body as { id: string };
    const id = (await http.post('/v1/essays').set('authorization', `Bearer ${teacherKey}`).send({ assignmentId: assignment.id, text: generateEssay(81, 'zh').text, studentRef: '孙八' }).expect(202)).body.id as string;
    await waitForEssays(s.t.app, teacherKey, [id]);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/essays/${id}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=deep-order]');
      // The teacher sets the total alone: it is kept as given, and the model's original is shown with its dimensions.
      await page.type('[data-test=override] input[name=total]', '41');
      await page.click('[data-test=override] button[type=submit]');
      await page.waitForSelector('[data-test=original-dimensions] li');
      expect((await api(teacherKey).get(`/v1/essays/${id}`).expect(200)).body.grade).toMatchObject({ score: 41, source: 'teacher' });
      expect(await text(page, '[data-test=total]')).toContain('41');
      await page.click('[data-test=deep-order]');
      // Nothing is ordered until the teacher confirms on the page.
      await page.waitForSelector('[data-test=deep-confirm]');
      expect((await api(teacherKey).get(`/v1/essays/${id}`).expect(200)).body.deepReview).toBeNull();
      await page.click('[data-test=deep-confirm]');
      // No reload: the page looks again until the review is delivered.
      await page.waitForFunction(() => document.querySelector('[data-test=deep-state]')?.textContent?.includes('delivered'), { timeout: 30_000 });
      const view = (await api(teacherKey).get(`/v1/essays/${id}`).expect(200)).body as {
        deepReview: { status: string; price: string };
        deepGrade: { summary: string; annotations: unknown[]; deep: { paragraphs: unknown[] } };
      };
      expect(view.deepReview).toMatchObject({ status: 'delivered', price: '9.999' });
      expect(await text(page, '[data-test=deep-state]')).toContain('¥9.999');
      expect(await text(page, '[data-test=deep-summary]')).toBe(view.deepGrade.summary);
      expect(await page.$$eval('[data-test=deep-paragraphs] dd', (dds) => dds.length)).toBe(view.deepGrade.deep.paragraphs.length);
      expect(view.deepGrade.deep.paragraphs.length).toBeGreaterThan(0);
      const first = (view.deepGrade.deep.paragraphs as Array<{ index: number }>)[0];
      expect(await text(page, '[data-test=deep-paragraphs] dt')).toBe(`Paragraph ${first.index}`);
      expect(await page.$$eval('[data-test=deep-notes] li', (lis) => lis.length)).toBe(view.deepGrade.annotations.length);
      await screenshot(page, 'teacher-deep-review');
      // On paper: the assignment's title, and the deep review whole.
      await page.goto(`${base}/console/#/essays/${id}/print`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=print-assignment]');
      expect(await text(page, '[data-test=print-assignment]')).toBe('Assignment: 精批 · 我的老师');
      expect(await text(page, '#print-deep-review [data-test=deep-summary]')).toBe(view.deepGrade.summary);
      expect(await page.$$eval('#print-deep-review [data-test=deep-paragraphs] dd', (dds) => dds.length)).toBe(view.deepGrade.deep.paragraphs.length);
      expect(await page.$('#print-deep-review [data-test=deep-order]')).toBeNull();
      await screenshot(page, 'teacher-print-deep-review');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('an admin sees the deep-review orders, and which hold money to return, in both languages', async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const http = s.t.http;
    const as = (key: string) => ({ authorization: `Bearer ${key}` });
    const secret = 'whsec_console_orders_0123456789';
    await http.put('/v1/billing/settings').set(as(school.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: secret }).expect(200);
    const ids: string[] = [];
    for (const seed of [91, 92]) ids.push((await http.post('/v1/essays').set(as(school.adminKey)).send({ text: generateEssay(seed, 'zh').text }).expect(202)).body.id);
    await waitForEssays(s.t.app, school.adminKey, ids);
    const orderIds: string[] = [];
    for (const id of ids) orderIds.push((await http.post(`/v1/essays/${id}/deep-review`).set(as(school.adminKey)).expect(202)).body.orderId);
    // The payer sent 0.99 for the first order: not applied (409 to the provider), money to return.
    const body = JSON.stringify({ id: 'evt_console_1', type: 'payment.succeeded', data: { orderId: orderIds[0], amount: '0.99' } });
    await http.post(`/v1/payments/webhook/${school.tenantId}`).set('content-type', 'application/json').set('x-inkstone-signature', signPayload(secret, body)).send(body).expect(409);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, school.adminKey);
      await page.goto(`${base}/console/#/admin/orders`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=orders] tbody tr');
      expect(await page.$$eval('[data-test=orders] tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-order')))).toEqual([...orderIds].reverse());
      const cells = (orderId: string) => page.$eval(`tr[data-order="${orderId}"]`, (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''));
      expect(await cells(orderIds[0])).toEqual([expect.any(String), 'awaiting payment', '¥9.90', '¥0.99', '—', '', 'Open the essay']);
      expect(await cells(orderIds[1])).toEqual([expect.any(String), 'awaiting payment', '¥9.90', '—', '—', '', 'Open the essay']);
      expect(await text(page, '[data-test=money-to-return]')).toContain('1 order');
      await page.select('select[name=status]', 'delivered');
      await page.waitForFunction(() => !document.querySelector('[data-test=orders]'));
      await page.select('select[name=status]', '');
      await page.waitForSelector('[data-test=orders] tbody tr');
      // In Chinese: the same table, in words.
      await page.select('label.lang select', 'zh');
      await page.waitForFunction(() => document.querySelector('[data-test=orders] thead')?.textContent?.includes('待退还'));
      expect((await cells(orderIds[0])).slice(1, 4)).toEqual(['等待付款', '¥9.90', '¥0.99']);
      expect(await text(page, '[data-test=money-to-return]')).toContain('待退还');
      await screenshot(page, 'admin-orders');
      await page.select('label.lang select', 'en');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it("reads older orders with the filter the list on screen was read with, even while another filter's list is loading (no rows of two filters mixed)", async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const as = { authorization: `Bearer ${school.adminKey}` };
    await s.t.http.put('/v1/billing/settings').set(as).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: 'whsec_console_race_0123456789' }).expect(200);
    const ids: string[] = [];
    for (const seed of [93, 94]) ids.push((await s.t.http.post('/v1/essays').set(as).send({ text: generateEssay(seed, 'zh').text }).expect(202)).body.id);
    await waitForEssays(s.t.app, school.adminKey, ids);
    const orderIds: string[] = [];
    for (const id of ids) orderIds.push((await s.t.http.post(`/v1/essays/${id}/deep-review`).set(as).expect(202)).body.orderId);
    const { ctx, page, problems } = await openConsole();
    // The first page of all orders is read one order a page (so it has an older page, with the
    // service's own cursor); the first page of the delivered ones is held back until released.
    let release: () => void = () => undefined;
    const heldBack = new Promise<void>((r) => (release = r));
    const olderPageReads: string[] = [];
    const route = (req: HTTPRequest) => {
      const url = new URL(req.url());
      if (url.pathname !== '/v1/orders') return void req.continue();
      if (url.searchParams.has('cursor')) olderPageReads.push(url.search);
      if (!url.searchParams.has('cursor') && !url.searchParams.has('status')) {
        url.searchParams.set('limit', '1');
        return void req.continue({ url: url.toString() });
      }
      if (url.searchParams.get('status') === 'delivered') return void heldBack.then(() => req.continue());
      req.continue();
    };
    try {
      await signIn(page, school.adminKey);
      await page.setRequestInterception(true);
      page.on('request', route);
      await page.goto(`${base}/console/#/admin/orders`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=more-orders]');
      const shown = () => page.$$eval('[data-test=orders] tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-order')));
      expect(await shown()).toEqual([orderIds[1]]);
      // Another filter chosen; while its list loads, the older orders of the list on screen asked for.
      await page.select('select[name=status]', 'delivered');
      await page.click('[data-test=more-orders]');
      await waitFor(async () => olderPageReads.length === 1, 10_000, 'the older page asked for');
      expect(new URLSearchParams(olderPageReads[0]).get('status')).toBeNull();
      await page.waitForFunction(() => document.querySelectorAll('[data-test=orders] tbody tr').length === 2);
      expect(await shown()).toEqual([orderIds[1], orderIds[0]]);
      expect(olderPageReads).toHaveLength(1);
      // The delivered orders' list arrives: none, and none of the other list's rows with it.
      release();
      await page.waitForFunction(() => !document.querySelector('[data-test=orders]') && document.body.textContent?.includes('No orders.'));
      expect(problems).toEqual([]);
    } finally {
      release();
      page.off('request', route);
      await ctx.close();
    }
  }, 90_000);

  it("an admin sees a budget incident that paused the school's model calls on the dashboard, and acknowledges it there", async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    // A provider bills far more tokens than the call was admitted for: an incident, admission paused.
    s.fake.enqueue('deepseek', { kind: 'ok', inflateUsage: 200 });
    await s.t.http
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${school.adminKey}`)
      .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: '你好' }], max_tokens: 50 })
      .expect(200);
    const before = (await api(school.adminKey).get('/v1/budget').expect(200)).body as { admissionPaused: boolean; incidents: Array<{ id: string; acknowledgedAt: string | null }> };
    expect(before.admissionPaused).toBe(true);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, school.adminKey);
      await page.goto(`${base}/console/#/admin`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=admission-paused]');
      expect(await page.$$eval('[data-test=incidents] li', (lis) => lis.map((li) => li.getAttribute('data-incident')))).toEqual([before.incidents[0].id]);
      expect(await text(page, '[data-test=incidents] li')).toContain('a provider reported more tokens than the call was admitted for');
      await screenshot(page, 'admin-incident');
      await page.click('[data-test=acknowledge]');
      await page.waitForFunction(() => !document.querySelector('[data-test=incidents]'));
      const after = (await api(school.adminKey).get('/v1/budget').expect(200)).body as { admissionPaused: boolean; incidents: Array<{ acknowledgedAt: string | null }> };
      expect(after.admissionPaused).toBe(false);
      expect(after.incidents[0].acknowledgedAt).toEqual(expect.any(String));
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it("an admin sees on the dashboard what the school's reads are held to while other schools read on the same server, in both languages", async () => {
    // Another school's reads in flight at the moment of the view are a race in a browser test: the
    // view the server gives is answered with its share set below the school's limit (the share
    // itself is the server's, tested in fair-share.e2e-spec).
    const real = (await api(tenant.adminKey).get('/v1/limits').expect(200)).body as { limits: { readsInFlight: number }; shares: { readsInFlight: number; reportsInFlight: number } };
    expect(real.shares.readsInFlight).toBe(real.limits.readsInFlight);
    const held = { ...real, shares: { ...real.shares, readsInFlight: 2 } };
    const { ctx, page, problems } = await openConsole();
    const route = (req: HTTPRequest) => {
      if (req.isInterceptResolutionHandled()) return;
      if (new URL(req.url()).pathname === '/v1/limits') return void req.respond({ status: 200, contentType: 'application/json', body: JSON.stringify(held) });
      void req.continue();
    };
    try {
      await signIn(page, tenant.adminKey);
      await page.setRequestInterception(true);
      page.on('request', route);
      await page.goto(`${base}/console/#/admin`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=limits] tr[data-limit=readsInFlight] [data-test=limit-share]');
      expect(await text(page, '[data-test=limits] tr[data-limit=readsInFlight] td')).toBe(`${real.limits.readsInFlight}held to 2 now: other schools read on this server too`);
      // only where the share is below the limit
      expect(await page.$$eval('[data-test=limit-share]', (els) => els.map((e) => e.closest('tr')?.getAttribute('data-limit')))).toEqual(['readsInFlight']);
      await page.select('label.lang select', 'zh');
      await page.waitForFunction(() => document.querySelector('[data-test=limit-share]')?.textContent === '当前限为 2：其他学校也在这台服务器上读取');
      await page.select('label.lang select', 'en');
      expect(problems).toEqual([]);
    } finally {
      page.off('request', route);
      await ctx.close();
    }
  });

  it('a teacher key cannot open admin pages', async () => {
    const { ctx, page } = await openConsole();
    try {
      await signIn(page, teacherKey);
      expect(await page.$$eval('nav a', (as) => as.map((a) => a.getAttribute('href')))).not.toContain('#/admin');
      await page.goto(`${base}/console/#/admin`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=not-allowed]');
      // nor can its session read what those pages show
      expect(await page.evaluate(async () => (await fetch('/v1/budget')).status)).toBe(403);
      await screenshot(page, 'teacher-not-allowed');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it("shows a page a moment later, not an error, when the school's reads at once are full (429): the read is sent again after Retry-After", async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const teacher = (await s.f.newKey(school, 'teacher')).key;
    await s.t.http.post('/v1/assignments').set('authorization', `Bearer ${teacher}`).send({ title: '满员时的作文', prompt: '以“等待”为题', rubric: 'zh-gaokao-60' }).expect(201);
    await s.t.http.put(`/v1/tenants/${school.tenantId}/limits`).set('authorization', `Bearer ${OPERATOR_TOKEN}`).send({ readsInFlight: 1 }).expect(200);
    const limits = s.t.app.get(LimitsService);
    const { ctx, page, problems } = await openConsole();
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (new URL(r.url()).pathname === '/v1/assignments') statuses.push(r.status());
    });
    try {
      await signIn(page, teacher);
      // The school's one read slot taken and its 64 places in the queue full, as by other teachers' pages.
      const held = await limits.readSlot(school.tenantId);
      const queued = Array.from({ length: 64 }, () => limits.readSlot(school.tenantId));
      statuses.length = 0;
      await page.reload(); // the assignments page, read again
      await waitFor(async () => statuses.includes(429), 10_000, 'the list refused for the moment');
      // Freed a moment later: every queued read is served, and the page's read, sent again, too.
      held();
      for (const q of queued) (await q)();
      await page.waitForFunction(() => document.body.textContent?.includes('满员时的作文'), { timeout: 20_000 });
      expect(statuses[statuses.length - 1]).toBe(200);
      expect(await page.$('#main .error[role=alert]')).toBeNull();
      expect(problems.filter((p) => !/429|Too Many Requests/i.test(p))).toEqual([]);
    } finally {
      await s.t.http.put(`/v1/tenants/${school.tenantId}/limits`).set('authorization', `Bearer ${OPERATOR_TOKEN}`).send({ readsInFlight: null }).expect(200);
      await ctx.close();
    }
  }, 60_000);

  it("shows a school's assignments past the first page: older ones on request, each once", async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const titles: string[] = [];
    for (let i = 0; i < 203; i++) {
      titles.push(`作业 ${i}`);
      await s.t.http.post('/v1/assignments').set('authorization', `Bearer ${school.adminKey}`).send({ title: titles[i], prompt: 'P', rubric: 'zh-gaokao-60' }).expect(201);
    }
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, school.adminKey);
      await page.goto(`${base}/console/#/assignments`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=more-assignments]');
      const shown = () => page.$$eval('#assignment-list tbody tr td:first-child a', (as) => as.map((a) => a.textContent ?? ''));
      expect(await shown()).toEqual([...titles].reverse().slice(0, 200));
      await page.click('[data-test=more-assignments]');
      await page.waitForFunction(() => document.querySelectorAll('#assignment-list tbody tr').length === 203);
      expect(await shown()).toEqual([...titles].reverse());
      expect(await page.$('[data-test=more-assignments]')).toBeNull();
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it("creates an assignment with a deadline, typed as a wall time where the school is, and a pass mark; the assignment's page shows both, and a pass mark above the rubric's maximum is refused in words", async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/assignments`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#new-assignment select[name=rubric] option');
      const zone = await page.evaluate(async () => ((await (await fetch('/v1/console/session')).json()) as { timezone: string }).timezone);
      // two days ahead, to the minute, as the school's clock shows it
      const due = new Date(Math.floor((Date.now() + 2 * 86_400_000) / 60_000) * 60_000);
      const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }).formatToParts(due).map((x) => [x.type, x.value]));
      const wall = `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
      const set = (selector: string, value: string) => page.$eval(selector, (el, v) => ((el as HTMLInputElement).value = v as string) && el.dispatchEvent(new Event('input', { bubbles: true })), value);
      await set('#new-assignment input[name=title]', '期末作文');
      await set('#new-assignment textarea[name=prompt]', '以“成长”为题写一篇作文。');
      await page.select('#new-assignment select[name=rubric]', 'zh-gaokao-60');
      await set('#new-assignment input[name=dueBy]', wall);
      await set('#new-assignment input[name=passMark]', '61');
      // Above the rubric's 60: the browser's own check stops it first; past it (a field the browser does not check), the service's refusal in words.
      await page.$eval('#new-assignment input[name=passMark]', (el) => el.removeAttribute('max'));
      await page.click('#new-assignment button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#new-assignment [role=alert]')?.textContent?.includes('Pass mark: must be 0–60'));
      await set('#new-assignment input[name=passMark]', '36');
      await Promise.all([page.waitForFunction(() => /^#\/assignments\/[0-9a-f-]{36}$/.test(location.hash)), page.click('#new-assignment button[type=submit]')]);
      const id = await page.evaluate(() => location.hash.split('/')[2]);
      const created = (await api(teacherKey).get(`/v1/assignments/${id}`).expect(200)).body as { dueBy: string; passMark: number };
      expect(new Date(created.dueBy).toISOString()).toBe(due.toISOString());
      expect(created.passMark).toBe(36);
      await page.waitForSelector('[data-test=assignment-terms]');
      const terms = await text(page, '[data-test=assignment-terms]');
      expect(terms).toContain('Pass mark: 36');
      expect(terms).toContain(dateTime(due.toISOString(), zone, intlLocale('en')));
      expect(problems.filter((p) => !/400|Bad Request/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  /** A teacher on the assignments page with one key, and another key of the same school to sign in again with once the first is revoked. */
  const onAssignmentsWithTwoKeys = async () => {
    const first = await s.f.newKey(tenant, 'teacher');
    const second = await s.f.newKey(tenant, 'teacher');
    const opened = await openConsole();
    await signIn(opened.page, first.key);
    await opened.page.goto(`${base}/console/#/assignments`, { waitUntil: 'networkidle0' });
    const revokeFirst = () => s.t.http.delete(`/v1/api-keys/${first.id}`).set('authorization', `Bearer ${tenant.adminKey}`).expect((r) => expect([200, 204]).toContain(r.status));
    /** Signs in again with the second key in the dialog over the page. */
    const signInAgain = async () => {
      await opened.page.focus('[data-test=signin-again] input[name=key]');
      await opened.page.keyboard.type(second.key);
      await opened.page.keyboard.press('Enter');
      await opened.page.waitForFunction(() => !document.querySelector('[data-test=signin-again]'));
    };
    return { ...opened, second, revokeFirst, signInAgain };
  };

  it('keeps what a teacher typed when the session ends mid-use: signed in again over the page, the form is as it was', async () => {
    const { ctx, page, problems, second, revokeFirst, signInAgain } = await onAssignmentsWithTwoKeys();
    try {
      await page.waitForSelector('#new-assignment input[name=title]');
      await page.type('#new-assignment input[name=title]', '第六单元 期中作文');
      await page.type('#new-assignment textarea[name=prompt]', '以“我眼中的秋天”为题，写一篇不少于800字的记叙文。');
      // The key is revoked while the teacher types; the form's save is refused and the sign-in comes over the page.
      await revokeFirst();
      await page.click('#new-assignment button[type=submit]');
      await page.waitForSelector('[data-test=signin-again] [data-test=session-ended]');
      expect(await page.$eval('main#main', (el) => el.hasAttribute('inert'))).toBe(true);
      await screenshot(page, 'session-ended-over-page');
      await signInAgain();
      // What was typed is still there, and saved now.
      expect(await page.$eval('#new-assignment input[name=title]', (el) => (el as HTMLInputElement).value)).toBe('第六单元 期中作文');
      expect(await page.$eval('#new-assignment textarea[name=prompt]', (el) => (el as HTMLTextAreaElement).value)).toContain('我眼中的秋天');
      await Promise.all([page.waitForFunction(() => /^#\/assignments\/[0-9a-f-]{36}$/.test(location.hash)), page.click('#new-assignment button[type=submit]')]);
      const id = await page.evaluate(() => location.hash.split('/')[2]);
      expect((await api(second.key).get(`/v1/assignments/${id}`).expect(200)).body.title).toBe('第六单元 期中作文');
      expect(problems.filter((p) => !/401|Unauthorized/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('a page whose reads were refused while the session was gone reads again once the teacher signs in over it', async () => {
    const { ctx, page, problems, revokeFirst, signInAgain } = await onAssignmentsWithTwoKeys();
    try {
      await revokeFirst();
      // The next page's reads are refused under the sign-in dialog: the page shows their error.
      await page.evaluate(() => (location.hash = '#/quality'));
      await page.waitForSelector('[data-test=signin-again] [data-test=session-ended]');
      await page.waitForSelector('#quality [role=alert]');
      // From then on the page sends nothing but the sign-in (a tab left open must not keep polling a
      // session that ended: each refusal counted against the address): its pages' reads fail at once.
      const sent: string[] = [];
      const seen = (r: { url(): string }) => {
        const path = new URL(r.url()).pathname;
        if (path.startsWith('/v1/') && path !== '/v1/console/session') sent.push(path);
      };
      page.on('request', seen);
      await page.evaluate(() => (location.hash = '#/assignments'));
      await page.waitForFunction(() => !document.querySelector('#quality'));
      await page.evaluate(() => (location.hash = '#/quality'));
      await page.waitForSelector('#quality [role=alert]');
      page.off('request', seen);
      expect(sent).toEqual([]);
      await signInAgain();
      // Read again with the new session: the agreement tables, no error left.
      await page.waitForSelector('#quality h3');
      expect(await page.$('#quality [role=alert]')).toBeNull();
      expect(problems.filter((p) => !/401|Unauthorized/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it("a page of one school does not read another school's data once another tab of the browser signs in there: it asks to sign in again", async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, (await s.f.newKey(tenant, 'admin')).key);
      // A link the browser follows itself (the month's CSV) carries the page's key id in its URL.
      await page.goto(`${base}/console/#/admin/report`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=report-csv]');
      const csvLink = await page.$eval('[data-test=report-csv]', (a) => (a as HTMLAnchorElement).href);
      expect(csvLink).toMatch(/[?&]sessionKey=[0-9a-f-]{36}$/);
      const fetchStatus = (url: string) => page.evaluate(async (u) => (await fetch(u)).status, url);
      expect(await fetchStatus(csvLink)).toBe(200);
      await page.goto(`${base}/console/#/assignments`, { waitUntil: 'networkidle0' });
      // Another tab of the same browser (one cookie jar) signs in to another school (as its sign-in
      // dialog does once a session has ended there): the cookie is that school's now.
      const other = await s.f.newTenant({ name: '第二实验中学' });
      const tab = await ctx.newPage();
      await tab.goto(`${base}/health`);
      const signedIn = await tab.evaluate(async (key) => {
        const res = await fetch('/v1/console/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
        return [res.status, ((await res.json()) as { tenantName: string }).tenantName];
      }, other.adminKey);
      expect(signedIn).toEqual([201, '第二实验中学']);
      await tab.close();
      // The first school's CSV link now downloads nothing of the second's (without its key id it would).
      expect([await fetchStatus(csvLink), await fetchStatus(csvLink.replace(/[?&]sessionKey=.*$/, ''))]).toEqual([401, 200]);
      // The first page's next reads are refused (the cookie is the other school's now), not shown as its own.
      const answers: number[] = [];
      page.on('response', (r) => {
        if (new URL(r.url()).pathname.startsWith('/v1/') && new URL(r.url()).pathname !== '/v1/console/session') answers.push(r.status());
      });
      await page.evaluate(() => (location.hash = '#/quality'));
      await page.waitForSelector('[data-test=signin-again] [data-test=session-ended]');
      expect(answers.length).toBeGreaterThan(0);
      expect(answers.every((status) => status === 401)).toBe(true);
      expect(problems.filter((p) => !/401|Unauthorized/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it("a revoked key's session stops working, and signing out ends a session", async () => {
    const key = await s.f.newKey(tenant, 'teacher');
    const { ctx, page } = await openConsole();
    try {
      await signIn(page, key.key);
      expect(await page.evaluate(async () => (await fetch('/v1/assignments')).status)).toBe(200);
      await s.t.http.delete(`/v1/api-keys/${key.id}`).set('authorization', `Bearer ${tenant.adminKey}`).expect((r) => expect([200, 204]).toContain(r.status));
      expect(await page.evaluate(async () => (await fetch('/v1/assignments')).status)).toBe(401);
      // The next page the teacher opens is refused: back at sign-in, told why.
      await page.evaluate(() => (location.hash = '#/quality'));
      await page.waitForSelector('[data-test=session-ended]');
      expect(await text(page, '[data-test=session-ended]')).toContain('your key was revoked or the session expired');
      await screenshot(page, 'revoked-session');
      await page.reload({ waitUntil: 'networkidle0' });
      await page.waitForSelector('input[name=key]');

      // A sign-out the service refuses (it is stopping) leaves the page signed in, and says so.
      await signIn(page, teacherKey);
      const refuse = (r: HTTPRequest) => {
        if (r.method() === 'DELETE' && r.url().endsWith('/v1/console/session')) void r.respond({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'SERVICE_UNAVAILABLE', message: 'This server is stopping' } }) });
        else void r.continue();
      };
      await page.setRequestInterception(true);
      page.on('request', refuse);
      try {
        await page.click('header button.link');
        await page.waitForSelector('[data-test=signout-error]');
        expect(await text(page, '[data-test=signout-error]')).toContain('Not signed out');
        expect(await page.$('input[name=key]')).toBeNull();
      } finally {
        page.off('request', refuse);
        await page.setRequestInterception(false);
      }
      // sign out: the cookie is cleared and the session's calls are refused
      await page.click('header button.link');
      await page.waitForSelector('input[name=key]');
      expect(await page.evaluate(async () => (await fetch('/v1/assignments')).status)).toBe(401);
      // Signing out is no ended session: nothing to explain.
      expect(await page.$('[data-test=session-ended]')).toBeNull();
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('fits a 390 px window in Chinese (the new-assignment form, an assignment page with a pasted class), tells errors and codes in words, and prints the annotations', async () => {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    const problems = collectProblems(page);
    // A window 390 px wide, not a mobile emulation: a phone browser zooms out to show a page wider
    // than its screen, which would hide the overflow from innerWidth.
    const fits = async (where: string) => {
      const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: innerWidth }));
      expect({ where, width: fit.width, fits: fit.scroll <= fit.width ? true : `scrollWidth ${fit.scroll}` }).toEqual({ where, width: 390, fits: true });
    };
    /** How many lines an element's text takes. */
    const lines = (selector: string) =>
      page.$$eval(selector, (els) =>
        els.map((el) => {
          const range = document.createRange();
          range.selectNodeContents(el);
          return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
        }),
      );
    try {
      await page.setViewport({ width: 390, height: 844 });
      await page.evaluateOnNewDocument(() => Object.defineProperty(navigator, 'languages', { get: () => ['zh-CN', 'zh'] }));
      await page.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
      // a key that is not valid: said in Chinese, not as the API's English
      await page.type('input[name=key]', 'isk_live_not_a_real_key_0000000000');
      await page.keyboard.press('Enter');
      await page.waitForSelector('.signin [role=alert]');
      expect(await text(page, '.signin [role=alert]')).toBe('密钥无效或已吊销。');
      await page.$eval('input[name=key]', (el) => ((el as HTMLInputElement).value = ''));
      await signIn(page, teacherKey);
      expect(await page.$eval('header nav', (nav) => nav.getAttribute('aria-label'))).toBe('主导航');
      // the header: sign-out on the first line, the menu below it
      const [signOutTop, navTop] = await page.evaluate(() => [document.querySelector('header button.link')!.getBoundingClientRect().top, document.querySelector('header nav')!.getBoundingClientRect().top]);
      expect(signOutTop).toBeLessThan(navTop);

      // the assignments page with the new-assignment form, its rubric list loaded
      await page.goto(`${base}/console/#/assignments`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#new-assignment select[name=rubric] option');
      await fits('#/assignments');
      const [buttonRight, cardRight] = await page.evaluate(() => [document.querySelector('#new-assignment button[type=submit]')!.getBoundingClientRect().right, document.querySelector('#new-assignment')!.getBoundingClientRect().right]);
      expect(buttonRight).toBeLessThanOrEqual(cardRight);
      expect(new Set(await lines('#assignment-list td.time'))).toEqual(new Set([1]));

      // an assignment page: a whole class pasted at once, separated by lines ---, each naming its student
      const assignment = (await s.t.http.post('/v1/assignments').set('authorization', `Bearer ${teacherKey}`).send({ title: '手机宽度', prompt: '写一篇记叙文', rubric: 'zh-gaokao-60' }).expect(201)).body as { id: string };
      await page.goto(`${base}/console/#/assignments/${assignment.id}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#upload');
      await fits('#/assignments/:id');
      await page.click('#upload details summary');
      const pasted = `学号：s390-1\n${generateEssay(81, 'zh').text}\n---\n学号：s390-2\n${generateEssay(82, 'zh').text}\n`;
      await page.$eval('[data-test=upload-paste] textarea[name=text]', (el, v) => ((el as HTMLTextAreaElement).value = v as string) && el.dispatchEvent(new Event('input', { bubbles: true })), pasted);
      await page.click('[data-test=upload-paste] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '已提交 2 / 2', { timeout: 30_000 });
      await page.waitForFunction(() => document.querySelectorAll('[data-test=essay-list] tbody tr').length === 2, { timeout: 30_000 });
      expect((await page.$$eval('[data-test=essay-list] tbody tr td:first-child', (tds) => tds.map((td) => td.textContent))).sort()).toEqual(['s390-1', 's390-2']);
      await page.waitForFunction(() => [...document.querySelectorAll('[data-test=essay-list] tbody tr')].every((tr) => ['graded', 'needs_review', 'failed'].includes(tr.getAttribute('data-status') ?? '')), { timeout: 60_000 });
      await fits('#/assignments/:id with its essays');
      // status badges, flags and times on one line each (not one character per line)
      for (const selector of ['[data-test=essay-list] .status', '[data-test=essay-list] .flag', '[data-test=essay-list] td.time', '#agreement tbody th']) {
        const counts = await lines(selector);
        expect({ selector, lines: [...new Set(counts)] }).toEqual({ selector, lines: counts.length ? [1] : [] });
      }
      await screenshot(page, 'phone-assignment-zh');
      // a paste with nothing in it says so, not "已提交 0 / 0"
      await page.$eval('[data-test=upload-paste] textarea[name=text]', (el) => ((el as HTMLTextAreaElement).value = '---\n') && el.dispatchEvent(new Event('input', { bubbles: true })));
      await page.click('[data-test=upload-paste] button[type=submit]');
      await page.waitForSelector('[data-test=upload-errors]');
      expect(await text(page, '[data-test=upload-errors]')).toContain('没有找到可提交的作文。');
      expect(await page.$('[data-test=upload-progress]')).toBeNull();
      // an essay refused here for its student line stays in the box as pasted, to be corrected; the one sent is cleared
      const refused = `student: O'Brien, Kate\n${generateEssay(84, 'zh').text}`.trim();
      const both = `学号：s390-3\n${generateEssay(83, 'zh').text}\n---\n${refused}\n`;
      await page.$eval('[data-test=upload-paste] textarea[name=text]', (el, v) => ((el as HTMLTextAreaElement).value = v as string) && el.dispatchEvent(new Event('input', { bubbles: true })), both);
      await page.click('[data-test=upload-paste] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('[data-test=upload-progress] [role=status]')?.textContent === '已提交 1 / 1', { timeout: 30_000 });
      await page.waitForFunction((v) => (document.querySelector('[data-test=upload-paste] textarea[name=text]') as HTMLTextAreaElement).value === v, { timeout: 10_000 }, refused);
      expect(await text(page, '[data-test=upload-errors]')).toContain('粘贴的第 2 篇');
      // a paste of blank space only says there is nothing, and the last attempt's lines go (not kept as if they were this one's)
      await page.$eval('[data-test=upload-paste] textarea[name=text]', (el) => ((el as HTMLTextAreaElement).value = '  \n ') && el.dispatchEvent(new Event('input', { bubbles: true })));
      await page.click('[data-test=upload-paste] button[type=submit]');
      await page.waitForFunction(() => document.querySelector('[data-test=upload-errors]')?.textContent === '没有找到可提交的作文。', { timeout: 10_000 });
      expect(await page.$('[data-test=upload-progress]')).toBeNull();

      // the quality page: groups and rubrics in words, not the API's codes and keys
      await page.goto(`${base}/console/#/quality`, { waitUntil: 'networkidle0' });
      await page.select('#quality select[name=groupBy]', 'source');
      // grouped by source, the first table has a column more (the group, then the rubric)
      await page.waitForFunction(() => document.querySelector('#quality thead tr')?.children.length === 7 && document.querySelectorAll('#quality tbody tr').length > 0, { timeout: 10_000 });
      const cells = await page.$$eval('#quality tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('th, td')].slice(0, 2).map((c) => c.textContent ?? '')));
      for (const [group, rubric] of cells) {
        expect(group).not.toMatch(/^(model|offline|teacher|reused)$/);
        expect(rubric).not.toMatch(/^[a-z0-9-]+ v\d+$/);
      }

      // a graded essay at a desktop width: dimension names on one line; on paper, each annotation's suggestion follows its mark
      const [first] = (await api(teacherKey).get(`/v1/essays?assignmentId=${assignment.id}`).expect(200)).body.data as Array<{ id: string }>;
      await page.setViewport({ width: 1280, height: 900 });
      await page.goto(`${base}/console/#/essays/${first.id}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#grade tbody th');
      expect(new Set(await lines('#grade tbody th'))).toEqual(new Set([1]));
      await page.goto(`${base}/console/#/essays/${first.id}/print`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=essay-text]');
      await page.emulateMediaType('print');
      const tips = await page.$$eval('[data-test=essay-text] mark .tip', (ts) => ts.map((tip) => ({ display: getComputedStyle(tip).display, text: (tip as HTMLElement).innerText })));
      expect(tips.length).toBeGreaterThan(0);
      for (const tip of tips) expect(tip).toEqual({ display: 'inline', text: expect.stringMatching(/\S/) });
      expect(await page.$$eval('.cost', (els) => els.filter((el) => getComputedStyle(el).display !== 'none').length)).toBe(0);
      await page.emulateMediaType('screen');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 150_000);

  it("fits a 390 px window on an admin's API keys page, the row of the key in use with its note for screen readers", async () => {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    try {
      await page.setViewport({ width: 390, height: 844 });
      await page.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
      await signIn(page, tenant.adminKey);
      await page.goto(`${base}/console/#/admin/keys`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=revoke-cell] .sr-only');
      const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: innerWidth }));
      expect(fit).toEqual({ scroll: expect.any(Number), width: 390 });
      expect(fit.scroll).toBeLessThanOrEqual(390);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('works on a phone-width screen, with every input labelled, in Chinese when the browser prefers it', async () => {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    try {
      await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
      await page.evaluateOnNewDocument(() => Object.defineProperty(navigator, 'languages', { get: () => ['zh-CN', 'zh'] }));
      await page.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
      expect(await text(page, 'h1')).toBe('登录 Inkstone');
      await signIn(page, teacherKey);
      const submitted = await s.t.http.post('/v1/essays').set('authorization', `Bearer ${teacherKey}`).send({ studentRef: '赵六', text: generateEssay(61, 'zh').text }).expect(202);
      const [essay] = await waitForEssays(s.t.app, teacherKey, [submitted.body.id]);
      for (const hash of ['#/assignments', `#/essays/${essay.id}`]) {
        await page.goto(`${base}/console/${hash}`, { waitUntil: 'networkidle0' });
        await page.waitForSelector('main h1');
        const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: innerWidth }));
        expect({ hash, ...fit }).toEqual({ hash, scroll: fit.width, width: fit.width });
        const unlabelled = await page.$$eval('input, select, textarea', (els) =>
          els.filter((el) => !(el as HTMLInputElement).labels?.length && !el.getAttribute('aria-label')).map((el) => el.outerHTML.slice(0, 80)),
        );
        expect(unlabelled).toEqual([]);
      }
      expect(await text(page, 'nav a')).toBe('作文任务');
      // tapping an annotation shows its suggestion
      await page.tap('[data-test=essay-text] mark');
      expect(await page.$eval('[data-test=essay-text] mark .tip', (tip) => getComputedStyle(tip).display)).toBe('block');
      await screenshot(page, 'phone-essay');
      // the language can be switched, and stays switched
      await page.select('header select', 'en');
      await page.waitForFunction(() => document.querySelector('nav a')?.textContent === 'Assignments');
      await page.reload({ waitUntil: 'networkidle0' });
      await page.waitForFunction(() => document.querySelector('nav a')?.textContent === 'Assignments');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('a tab open since before a sign-in in another tab still saves (its CSRF token read again), not "not allowed"; a tab of another key signed in there asks to sign in', async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.evaluate(() => (location.hash = '#/assignments'));
      await page.waitForSelector('#new-assignment select[name=rubric] option');
      // Another tab of the same browser signs out and in again (the same key): the cookie is a new session's.
      const other = await ctx.newPage();
      await other.setExtraHTTPHeaders({ 'accept-language': 'en-US,en' });
      await other.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
      await other.waitForSelector('[data-test=who]');
      await other.click('header button.link');
      await signIn(other, teacherKey);
      // The first tab, never reloaded, makes an assignment.
      await page.bringToFront();
      await page.type('input[name=title]', '两个标签页');
      await page.type('textarea[name=prompt]', '写一篇记叙文。');
      await page.select('select[name=language]', 'zh');
      await Promise.all([
        page.waitForFunction(() => location.hash.startsWith('#/assignments/'), { timeout: 15_000 }).catch(async (err) => {
          throw new Error(`${err}: the form says ${await page.evaluate(() => (document.querySelector("#new-assignment") as HTMLElement).innerText)}; problems: ${problems.join(" / ")}`);
        }),
        page.click('#new-assignment button[type=submit]'),
      ]);
      const made = await page.evaluate(() => location.hash.split('/')[2]);
      expect((await api(teacherKey).get(`/v1/assignments/${made}`).expect(200)).body.title).toBe('两个标签页');
      // The other tab signs in with another key (an admin of the school): the first tab's next change asks to sign in.
      await other.bringToFront();
      await other.click('header button.link');
      await signIn(other, tenant.adminKey);
      await page.bringToFront();
      await page.evaluate(() => (location.hash = '#/assignments'));
      await page.waitForSelector('#new-assignment input[name=title]');
      await page.type('#new-assignment input[name=title]', '不该保存');
      await page.type('#new-assignment textarea[name=prompt]', '写一篇记叙文。');
      await page.click('#new-assignment button[type=submit]');
      await page.waitForSelector('[data-test=session-ended], input[name=key]', { timeout: 10_000 }).catch(async (err) => {
        throw new Error(`${err}: the page says ${await page.evaluate(() => document.body.innerText.slice(0, 600))}`);
      });
      const titles = ((await api(teacherKey).get('/v1/assignments').expect(200)).body.data as Array<{ title: string }>).map((a) => a.title);
      expect(titles).not.toContain('不该保存');
      expect(problems.filter((p) => !/403|Forbidden/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('lists under the text the annotations that overlap a marked passage: a typo inside a sentence marked whole is not lost', async () => {
    const id = (await s.t.http.post('/v1/essays').set('authorization', `Bearer ${teacherKey}`).send({ text: generateEssay(188, 'zh').text, studentRef: '重叠' }).expect(202)).body.id as string;
    const [graded] = await waitForEssays(s.t.app, teacherKey, [id]);
    // The grade as a model may give it: a sentence marked for its structure, and a word inside it.
    const sentenceEnd = graded.text.indexOf('。') + 1;
    const annotations = [
      { start: 0, end: sentenceEnd, quote: graded.text.slice(0, sentenceEnd), category: 'structure', suggestion: '开头可以更直接', explanation: '' },
      { start: 2, end: 4, quote: graded.text.slice(2, 4), category: 'typo', suggestion: '改成正确的字', explanation: '错别字' },
    ];
    await s.t.dataSource.query(`UPDATE essays SET grade = jsonb_set(grade, '{annotations}', $3::jsonb) WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id, JSON.stringify(annotations)]);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/essays/${id}`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=essay-text] mark');
      expect(await page.$$eval('[data-test=essay-text] mark', (ms) => ms.map((m) => m.getAttribute('data-category')))).toEqual(['structure']);
      expect(await text(page, '[data-test=more-notes] li[data-category=typo]')).toContain(`“${graded.text.slice(2, 4)}” Suggestion: 改成正确的字 — 错别字`);
      expect(await page.$$eval('[data-test=more-notes] li', (ls) => ls.length)).toBe(1);
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it("an admin sees on the dashboard that the month's budget is used up, and what happens to new essays, in both languages", async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    await s.t.http.put('/v1/budget').set('authorization', `Bearer ${school.adminKey}`).send({ monthlyCap: '0.00', whenExhausted: 'reject' }).expect(200);
    expect((await api(school.adminKey).get('/v1/budget').expect(200)).body.remaining).toMatch(/^0(\.0+)?$/);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, school.adminKey);
      await page.goto(`${base}/console/#/admin`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=budget-used-up]');
      expect(await text(page, '[data-test=budget-used-up] h2')).toBe("This month's budget is used up");
      expect(await text(page, '[data-test=budget-used-up]')).toContain('new essays and deep reviews are refused');
      expect(await page.$eval('[data-test=budget-used-up] a', (a) => a.getAttribute('href'))).toBe('#/admin/settings');
      await screenshot(page, 'admin-budget-used-up');
      await page.select('label.lang select', 'zh');
      await page.waitForFunction(() => document.querySelector('[data-test=budget-used-up] h2')?.textContent === '本月预算已用完');
      expect(await text(page, '[data-test=budget-used-up]')).toContain('新作文和精批订单都将被拒绝');
      await screenshot(page, 'admin-budget-used-up-zh');
      await page.select('label.lang select', 'en');
      // A cap of a fraction of a yuan shows as set (SPEC: "0.012940"), and what is left of it to its
      // first significant digits, not rounded to the fen (¥0.01).
      await s.t.http.put('/v1/budget').set('authorization', `Bearer ${school.adminKey}`).send({ monthlyCap: '0.012940', whenExhausted: 'reject' }).expect(200);
      await page.reload({ waitUntil: 'networkidle0' });
      await page.waitForSelector('[data-test=cap]');
      expect(await text(page, '[data-test=cap]')).toBe('¥0.01294');
      expect(await text(page, '[data-test=remaining]')).toContain('¥0.0129');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('deep reviews: no order button where they are not on sale, and the price on the confirm step where it is known', async () => {
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const teacher = (await s.f.newKey(school, 'teacher')).key;
    const http = s.t.http;
    const id = (await http.post('/v1/essays').set('authorization', `Bearer ${teacher}`).send({ text: generateEssay(97, 'zh').text, studentRef: '周九' }).expect(202)).body.id as string;
    await waitForEssays(s.t.app, teacher, [id]);
    // Not on sale: a teacher is told so in words (GET /v1/billing/offer), with nothing to order.
    const t = await openConsole();
    try {
      await signIn(t.page, teacher);
      await t.page.goto(`${base}/console/#/essays/${id}`, { waitUntil: 'networkidle0' });
      await t.page.waitForSelector('[data-test=deep-not-on-sale]');
      expect(await text(t.page, '[data-test=deep-not-on-sale]')).toBe("Deep reviews are not on sale at your school: ask your school's admin.");
      expect(await t.page.$('[data-test=deep-order]')).toBeNull();
      expect(await text(t.page, '#deep-review')).not.toMatch(/CONFLICT|NOT_ON_SALE|Not possible/);
      expect(t.problems).toEqual([]);
    } finally {
      await t.ctx.close();
    }
    const admin = await openConsole();
    try {
      await signIn(admin.page, school.adminKey);
      // No price set: the admin is told so (and where to set one), and there is nothing to order.
      await admin.page.goto(`${base}/console/#/essays/${id}`, { waitUntil: 'networkidle0' });
      await admin.page.waitForSelector('[data-test=deep-not-on-sale]');
      expect(await text(admin.page, '[data-test=deep-not-on-sale]')).toContain('Deep reviews are not on sale at your school yet');
      expect(await admin.page.$('[data-test=deep-order]')).toBeNull();
      await screenshot(admin.page, 'admin-deep-not-on-sale');
      // On sale: the confirm step says what the order costs, to its last digit.
      await http.put('/v1/billing/settings').set('authorization', `Bearer ${school.adminKey}`).send({ deepReviewPrice: '12.345', paymentMode: 'invoice' }).expect(200);
      await admin.page.reload({ waitUntil: 'networkidle0' });
      await admin.page.waitForSelector('[data-test=deep-order]');
      await admin.page.click('[data-test=deep-order]');
      await admin.page.waitForSelector('[data-test=deep-confirm]');
      expect(await text(admin.page, '[data-test=deep-price]')).toContain(`This order costs ${cnyExact('12.345')}.`);
      expect(await text(admin.page, '[data-test=deep-confirm]')).toContain('¥12.345');
      await screenshot(admin.page, 'admin-deep-price');
      // Cancelled: nothing ordered.
      await admin.page.click('#deep-review button.secondary');
      expect((await api(school.adminKey).get(`/v1/essays/${id}`).expect(200)).body.deepReview).toBeNull();
      expect(admin.problems).toEqual([]);
    } finally {
      await admin.ctx.close();
    }
    // A teacher sees the same price before ordering.
    const again = await openConsole();
    try {
      await signIn(again.page, teacher);
      // While the offer cannot be read (the network fails that one request), there is nothing to
      // order: an order is offered only at a price the page has shown.
      await again.page.setRequestInterception(true);
      const blockOffer = (req: HTTPRequest) => void (req.url().includes('/v1/billing/offer') ? req.abort() : req.continue());
      again.page.on('request', blockOffer);
      await again.page.goto(`${base}/console/#/essays/${id}`, { waitUntil: 'networkidle0' });
      await again.page.waitForSelector('#deep-review .error[role=alert]');
      expect(await again.page.$('[data-test=deep-order]')).toBeNull();
      again.page.off('request', blockOffer);
      await again.page.setRequestInterception(false);
      again.problems.length = 0; // (the blocked request's own console line)
      await again.page.reload({ waitUntil: 'networkidle0' });
      await again.page.waitForSelector('[data-test=deep-order]');
      await again.page.click('[data-test=deep-order]');
      await again.page.waitForSelector('[data-test=deep-confirm]');
      expect(await text(again.page, '[data-test=deep-price]')).toContain(`This order costs ${cnyExact('12.345')}.`);
      await again.page.click('#deep-review button.secondary');
      expect((await api(teacher).get(`/v1/essays/${id}`).expect(200)).body.deepReview).toBeNull();
      // The admin raises the price while the teacher's confirm step shows the old one: the order is
      // refused, nothing is ordered, and the step shows the new price to be confirmed again.
      await again.page.click('[data-test=deep-order]');
      await again.page.waitForSelector('[data-test=deep-confirm]');
      await http.put('/v1/billing/settings').set('authorization', `Bearer ${school.adminKey}`).send({ deepReviewPrice: '15.00', paymentMode: 'invoice' }).expect(200);
      await again.page.click('[data-test=deep-confirm]');
      await again.page.waitForFunction(() => /15\.00/.test(document.querySelector('[data-test=deep-confirm]')?.textContent ?? ''));
      expect(await text(again.page, '#deep-review [role=alert]')).toBe(
        `The price changed to ${cnyExact('15.00')} since this page was opened. Nothing was ordered: confirm again to order at the new price.`,
      );
      expect(await text(again.page, '[data-test=deep-price]')).toContain(`This order costs ${cnyExact('15.00')}.`);
      expect((await api(teacher).get(`/v1/essays/${id}`).expect(200)).body.deepReview).toBeNull();
      await screenshot(again.page, 'teacher-deep-price-changed');
      await again.page.click('[data-test=deep-confirm]');
      await again.page.waitForSelector('[data-test=deep-state]');
      expect((await api(teacher).get(`/v1/essays/${id}`).expect(200)).body.deepReview).toMatchObject({ price: '15.00' });
      // The browser logs the refused order's 409, and nothing else.
      expect(again.problems).toEqual([expect.stringMatching(/status of 409/)]);
    } finally {
      await again.ctx.close();
    }
  }, 90_000);

  /**
   * A new school whose teacher sends a class of `n` essays (students `${name}0`…) to a new assignment,
   * after `slow` makes the model answer slowly; `limits`, the school's own limits, set first.
   */
  const classBeingGraded = async (name: string, seed: number, n: number, slow: () => void, limits?: Record<string, number>) => {
    const http = s.t.http;
    const school = await s.f.newTenant({ monthlyBudget: '50.00' });
    const teacher = (await s.f.newKey(school, 'teacher')).key;
    if (limits) await http.put(`/v1/tenants/${school.tenantId}/limits`).set('authorization', `Bearer ${OPERATOR_TOKEN}`).send(limits).expect(200);
    const assignmentId = (await http.post('/v1/assignments').set('authorization', `Bearer ${teacher}`).send({ title: `${name}的单元`, prompt: `以“${name}”为题`, rubric: 'zh-gaokao-60' }).expect(201)).body.id as string;
    slow();
    const essays = Array.from({ length: n }, (_, i) => ({ studentRef: `${name}${i}`, text: generateEssay(seed + i, 'zh').text }));
    const ids: string[] = (await http.post('/v1/essays/batch').set('authorization', `Bearer ${teacher}`).send({ assignmentId, essays }).expect(202)).body.ids;
    return { teacher, assignmentId, ids };
  };

  it("a class being graded holds at most two of the browser's connections with live streams: the page's other requests are answered meanwhile", async () => {
    // Each grading's model call answers slowly (its headers at once, the body after 3.5 s), so the page opens while the class is graded.
    const { teacher: teacherKey, assignmentId, ids } = await classBeingGraded('风', 9400, 8, () => s.fake.enqueue('deepseek', Array.from({ length: 8 }, () => ({ kind: 'ok' as const, latencyMs: 3_500, blankLinesBefore: 3 }))));
    const { ctx, page, problems } = await openConsole();
    let open = 0;
    let mostOpen = 0;
    const streaming = new Set<unknown>();
    page.on('request', (r) => {
      if (!/\/v1\/essays\/[0-9a-f-]{36}\/events$/.test(new URL(r.url()).pathname)) return;
      streaming.add(r);
      mostOpen = Math.max(mostOpen, ++open);
    });
    const closed = (r: unknown) => streaming.delete(r) && open--;
    page.on('requestfinished', closed);
    page.on('requestfailed', closed);
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/assignments/${assignmentId}`);
      await page.waitForSelector(`tr[data-essay="${ids[0]}"]`);
      // A request of the page's own, made while the class is still being graded, is answered before the grading ends.
      const answered = await page.evaluate(async () => (await fetch('/v1/console/session')).status);
      expect(answered).toBe(200);
      const stillGrading = (await api(teacherKey).get(`/v1/essays?assignmentId=${assignmentId}&limit=100`).expect(200)).body.data.filter((e: { status: string }) => !['graded', 'needs_review', 'failed'].includes(e.status));
      expect(stillGrading.length).toBeGreaterThan(0);
      await page.waitForFunction((n) => document.querySelectorAll('tr[data-essay][data-status=graded], tr[data-essay][data-status=needs_review]').length === n, { timeout: 60_000 }, ids.length);
      expect(mostOpen).toBeGreaterThan(0);
      expect(mostOpen).toBeLessThanOrEqual(2);
      expect(problems.filter((p) => !/EventSource/i.test(p))).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 120_000);

  it("an assignment's essays without a stream (past the school's cap on open streams) are read from its list, not one request an essay, and show their grades", async () => {
    // The model answers slowly, so the page opens while the class is still being graded.
    const { teacher, assignmentId, ids } = await classBeingGraded('雨', 9300, 6, () => s.fake.setLatency(4_000), { eventStreams: 1 });
    const { ctx, page, problems } = await openConsole();
    const single: string[] = [];
    const lists: string[] = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (/^\/v1\/essays\/[0-9a-f-]{36}$/.test(u.pathname)) single.push(u.pathname);
      if (u.pathname === '/v1/essays') lists.push(u.search);
    });
    try {
      await signIn(page, teacher);
      await page.goto(`${base}/console/#/assignments/${assignmentId}`);
      await page.waitForSelector(`tr[data-essay="${ids[0]}"]`);
      // Every row reaches its final status on the page without a reload.
      await page.waitForFunction((n) => document.querySelectorAll('tr[data-essay][data-status=graded], tr[data-essay][data-status=needs_review]').length === n, { timeout: 45_000 }, ids.length);
      const views = await waitForEssays(s.t.app, teacher, ids);
      for (const v of views) {
        expect(await page.$eval(`tr[data-essay="${v.id}"] td.num`, (el) => el.textContent)).toBe(`${v.grade.score} / ${v.grade.maxScore}`);
      }
      expect(single).toEqual([]); // no essay was read on its own
      expect(lists.length).toBeGreaterThan(1); // the first read, then the polls of the list
      expect(problems.filter((p) => !/429|Too Many Requests|EventSource/i.test(p))).toEqual([]);
    } finally {
      s.fake.setLatency(0);
      await ctx.close();
    }
  }, 90_000);

  it("an assignment's page shows essays submitted elsewhere and a regrade's grades without a reload; a saved override leaves no comment in its box", async () => {
    const http = (method: 'post' | 'patch', url: string, body: object) => s.t.http[method](url).set('authorization', `Bearer ${teacherKey}`).send(body);
    const assignmentId = (await http('post', '/v1/assignments', { title: '窗外', prompt: '以“窗外”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id as string;
    const submitted = async (seed: number, studentRef: string) => (await http('post', '/v1/essays', { assignmentId, text: generateEssay(seed, 'zh').text, studentRef }).expect(202)).body.id as string;
    const [first] = await waitForEssays(s.t.app, teacherKey, [await submitted(120, '郑一')]);
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/assignments/${assignmentId}`);
      await page.waitForSelector(`[data-test=essay-list] tr[data-essay="${first.id}"]`);
      await page.evaluate(() => ((window as unknown as { __samePage: boolean }).__samePage = true));
      // Another teacher (or the school's system) submits through the API: the page shows it, graded.
      const second = await submitted(121, '郑二');
      await page.waitForSelector(`[data-test=essay-list] tr[data-essay="${second}"][data-status=graded]`, { timeout: 30_000 });
      await page.waitForFunction(() => /Essays: 2 · Graded: 2/.test(document.querySelector('#distribution')?.textContent ?? ''), { timeout: 10_000 });
      // A class set of 150 at once (more than one page of the list): every one of them is shown.
      await s.t.dataSource.query(
        `INSERT INTO essays (id, tenant_id, assignment_id, rubric_key, rubric_version, language, tier, text, status, failure_code, failure_reason, created_at)
         SELECT gen_random_uuid(), $1, $2, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'failed', 'GRADING_FAILED', 'test', now() + make_interval(secs => n / 1000.0)
           FROM generate_series(1, 150) AS n`,
        [tenant.tenantId, assignmentId],
      );
      await page.waitForFunction(() => document.querySelectorAll('[data-test=essay-list] tbody tr').length === 152, { timeout: 15_000 });
      await page.waitForFunction(() => /Essays: 152 · Graded: 2/.test(document.querySelector('#distribution')?.textContent ?? ''), { timeout: 10_000 });
      // The teacher checks the grades against a pass mark on the first essay's score and regrades: the
      // list shows it held for review at once.
      await http('patch', `/v1/assignments/${assignmentId}`, { escalate: 'flag', passMark: first.grade.score }).expect(200);
      await page.click('[data-test=regrade]');
      await page.waitForSelector(`[data-test=essay-list] tr[data-essay="${first.id}"][data-status=needs_review]`, { timeout: 10_000 });
      expect(await page.evaluate(() => (window as unknown as { __samePage?: boolean }).__samePage)).toBe(true);
      // An override with a comment: saved, its box is empty again.
      await page.goto(`${base}/console/#/essays/${second}`);
      await page.waitForSelector('[data-test=override] textarea[name=comment]');
      await page.type('[data-test=override] input[name=total]', '30');
      await page.type('[data-test=override] textarea[name=comment]', '结尾再点题。');
      await page.click('[data-test=override] button[type=submit]');
      await page.waitForSelector('[data-test=original-score]');
      await page.waitForFunction(() => (document.querySelector('[data-test=override] textarea[name=comment]') as HTMLTextAreaElement | null)?.value === '', { timeout: 10_000 });
      const saved = (await api(teacherKey).get(`/v1/essays/${second}`).expect(200)).body as { grade: { score: number; source: string } };
      expect(saved.grade).toMatchObject({ score: 30, source: 'teacher' });
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it("says so when an assignment has more essays than its page lists (2,000, the newest)", async () => {
    const assignmentId = (await s.t.http.post('/v1/assignments').set('authorization', `Bearer ${teacherKey}`).send({ title: '全年级', prompt: '以“秋”为题', rubric: 'zh-gaokao-60' }).expect(201)).body.id as string;
    // 2,001 essays (ended: none is followed), written as the service stores them.
    await s.t.dataSource.query(
      `INSERT INTO essays (id, tenant_id, assignment_id, rubric_key, rubric_version, language, tier, text, status, failure_code, failure_reason, created_at)
       SELECT gen_random_uuid(), $1, $2, 'zh-gaokao-60', 1, 'zh', 'standard', '作文', 'failed', 'GRADING_FAILED', 'test', now() - make_interval(secs => n)
         FROM generate_series(1, 2001) AS n`,
      [tenant.tenantId, assignmentId],
    );
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      await page.goto(`${base}/console/#/assignments/${assignmentId}`);
      await page.waitForSelector('[data-test=essays-more]', { timeout: 30_000 });
      expect(await page.$$eval('[data-test=essay-list] tbody tr', (rows) => rows.length)).toBe(2000);
      expect(await text(page, '[data-test=essays-more]')).toBe('The newest 2000 essays are shown here; the older ones are in the CSV export.');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('an essay page opened while the essay is queued follows its grading and shows the grade when it lands, without a reload', async () => {
    const { ctx, page, problems } = await openConsole();
    try {
      await signIn(page, teacherKey);
      // The standard model answers slowly (its headers at once, the body after 3 s), so the page opens before the grade.
      s.fake.enqueue('deepseek', { kind: 'ok', latencyMs: 3000, blankLinesBefore: 3 });
      const id = (await s.t.http.post('/v1/essays').set('authorization', `Bearer ${teacherKey}`).send({ text: generateEssay(98, 'zh').text, studentRef: '吴十' }).expect(202)).body.id as string;
      await page.goto(`${base}/console/#/essays/${id}`);
      await page.waitForSelector('main h1');
      await page.evaluate(() => ((window as unknown as { __samePage: boolean }).__samePage = true));
      const first = await page.$eval('main .status', (el) => el.className);
      expect(first).toMatch(/status-(queued|grading)/);
      expect(await page.$('[data-test=total]')).toBeNull();
      await page.waitForSelector('[data-test=total]', { timeout: 30_000 });
      const view = (await api(teacherKey).get(`/v1/essays/${id}`).expect(200)).body as { status: string; grade: { score: number } };
      expect(await page.$eval('[data-test=total] strong', (el) => Number(el.textContent))).toBe(view.grade.score);
      expect(await page.$eval('main .status', (el) => el.className)).toContain(`status-${view.status}`);
      expect(await page.evaluate(() => (window as unknown as { __samePage?: boolean }).__samePage)).toBe(true);
      await screenshot(page, 'teacher-essay-live');
      expect(problems).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
