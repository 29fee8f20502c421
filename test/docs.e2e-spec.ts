import * as fs from 'node:fs';
import * as path from 'node:path';
import { BILLING_ERRORS } from '../src/billing/billing-errors';
import { HTTP_ERRORS } from '../src/common/errors';
import { LIMIT_NAMES, loadConfig } from '../src/config/app-config';
import { OpenApiLike, renderApiGuide } from '../src/docs/api-guide';
import { LLM_ERRORS } from '../src/llm/llm-errors';
import { LIMIT_MEANINGS, LIMIT_SCOPES } from '../src/tenancy/limits.service';
import { TENANCY_ERRORS } from '../src/tenancy/tenancy-errors';
import { QUALITY_ERRORS } from '../src/quality/quality-errors';
import { readRouteTable } from './support/route-table';
import { createTestApp, TestApp } from './support/test-app';

const GUIDE = path.resolve(__dirname, '../docs/api.md');

/**
 * docs/api.md is generated from the app (`npm run docs` sets UPDATE_DOCS=1 and writes it); this
 * test regenerates it and fails when the committed file differs, so the guide cannot drift.
 */
describe('the API guide (docs/api.md)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
  });
  afterAll(() => t.close());

  it('is what the code says: every route with who may call it, every error code, every limit', async () => {
    const table = await readRouteTable(t.app);
    const openApi = (await t.http.get('/docs-json').expect(200)).body as OpenApiLike;
    const defaults = loadConfig({ INKSTONE_ADMIN_TOKEN: 'x'.repeat(32) }).limits; // the environment's defaults, not this test app's
    const guide = renderApiGuide({
      openApi,
      routes: table.routes.filter((r) => !r.autoHead),
      errors: [
        { module: 'HTTP (any route)', table: HTTP_ERRORS },
        { module: 'tenancy', table: TENANCY_ERRORS },
        { module: 'billing', table: BILLING_ERRORS },
        { module: 'model gateway', table: LLM_ERRORS },
        { module: 'quality', table: QUALITY_ERRORS },
      ],
      limits: LIMIT_NAMES.map((name) => ({
        name,
        env: `LIMIT_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`,
        default: defaults[name],
        meaning: LIMIT_MEANINGS[name],
        scope: LIMIT_SCOPES[name],
      })),
    });
    // Every operation of the document is in the guide, with who may call it.
    for (const op of table.openApi) expect(guide).toContain(`| ${op.split(' ')[0]} | \`${op.split(' ')[1]}\` |`);
    expect(guide).not.toContain('| nobody |');
    if (process.env.UPDATE_DOCS === '1') {
      fs.mkdirSync(path.dirname(GUIDE), { recursive: true });
      fs.writeFileSync(GUIDE, guide);
    }
    expect(fs.existsSync(GUIDE) ? fs.readFileSync(GUIDE, 'utf8') : '(docs/api.md is missing: run npm run docs)').toBe(guide);
  });
});
