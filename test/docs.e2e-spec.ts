import * as fs from 'node:fs';
import * as path from 'node:path';
import { RequestMethod } from '@nestjs/common';
import { HTTP_CODE_METADATA, METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { BILLING_ERRORS } from '../src/billing/billing-errors';
import { HTTP_ERRORS } from '../src/common/errors';
import { LIMIT_NAMES, loadConfig } from '../src/config/app-config';
import { OpenApiLike, renderApiGuide } from '../src/docs/api-guide';
import { API_RESPONSE_METADATA } from '../src/docs/api-view';
import { LLM_ERRORS } from '../src/llm/llm-errors';
import { LIMIT_MEANINGS, LIMIT_SCOPES } from '../src/tenancy/limits.service';
import { TENANCY_ERRORS } from '../src/tenancy/tenancy-errors';
import { QUALITY_ERRORS } from '../src/quality/quality-errors';
import { readRouteTable } from './support/route-table';
import { createTestApp, TestApp } from './support/test-app';

const GUIDE = path.resolve(__dirname, '../docs/api.md');
const OPENAPI = path.resolve(__dirname, '../docs/openapi.json');

/** Routes whose answer the document describes (a typed client is generated from it): each has a 2xx JSON schema. */
const TYPED_ANSWERS = [
  'GET /v1/console/session',
  'POST /v1/console/session',
  'GET /v1/assignments',
  'POST /v1/assignments',
  'GET /v1/assignments/{id}',
  'PATCH /v1/assignments/{id}',
  'GET /v1/essays',
  'POST /v1/essays',
  'GET /v1/essays/{id}',
  'POST /v1/essays/batch',
  'PATCH /v1/essays/{id}/grade',
  'POST /v1/essays/{id}/deep-review',
  'GET /v1/orders',
  'GET /v1/orders/{id}',
  'GET /v1/budget',
  'PUT /v1/budget',
  'POST /v1/budget/incidents/{id}/acknowledge',
  'GET /v1/billing/settings',
  'PUT /v1/billing/settings',
  'GET /v1/grading/settings',
  'PUT /v1/grading/settings',
  'GET /v1/usage',
  'GET /v1/stats',
  'GET /v1/reports/month',
  'GET /v1/api-keys',
  'POST /v1/api-keys',
  'GET /v1/rubrics',
  'POST /v1/rubrics',
  'GET /v1/rubrics/{key}',
  'PUT /v1/rubrics/{key}',
  'GET /v1/assignments/{id}/agreement',
  'GET /v1/assignments/{id}/calibration',
  'POST /v1/assignments/{id}/calibration',
  'POST /v1/assignments/{id}/regrade',
  'GET /v1/quality',
  'GET /v1/limits',
  'PUT /v1/tenants/{id}/limits',
  'POST /v1/tenants',
  'POST /v1/payments/webhook/{tenantId}',
  'POST /v1/advisor/business-value',
  'GET /v1/models',
  'GET /v1/models/{id}',
  'POST /v1/advisor/cost-estimate',
  'POST /v1/chat/completions',
];

type Operation = { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> };
type OpenApiDocument = { paths: Record<string, Record<string, Operation>>; components?: { schemas?: Record<string, unknown> } };

/** The status a Nest handler answers with: its @HttpCode, else 201 for POST and 200 for the rest (as Nest does). */
function answeredStatus(handler: object): number {
  return (Reflect.getMetadata(HTTP_CODE_METADATA, handler) as number | undefined) ?? (Reflect.getMetadata(METHOD_METADATA, handler) === RequestMethod.POST ? 201 : 200);
}

/** Every handler that declares its answers (@ApiView, @ApiResponse), as `METHOD path` → [its 2xx statuses, the status it answers with]. */
function declaredAnswers(t: TestApp): Map<string, { declared: string[]; answered: number }> {
  const out = new Map<string, { declared: string[]; answered: number }>();
  for (const mod of t.app.get(ModulesContainer, { strict: false }).values()) {
    for (const wrapper of mod.controllers.values()) {
      const cls = wrapper.metatype as (new (...args: unknown[]) => unknown) | null;
      if (!cls) continue;
      const base = [Reflect.getMetadata(PATH_METADATA, cls) ?? ''].flat()[0] as string;
      for (const name of Object.getOwnPropertyNames(cls.prototype)) {
        const handler = Object.getOwnPropertyDescriptor(cls.prototype, name)?.value as object | undefined;
        const responses = handler && (Reflect.getMetadata(API_RESPONSE_METADATA, handler) as Record<string, unknown> | undefined);
        if (!handler || !responses || Reflect.getMetadata(PATH_METADATA, handler) === undefined) continue;
        const p = `/${[base, Reflect.getMetadata(PATH_METADATA, handler) as string].filter((s) => s && s !== '/').join('/')}`;
        const label = `${RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number]} ${p}`;
        out.set(label, { declared: Object.keys(responses).filter((s) => /^2/.test(s)), answered: answeredStatus(handler) });
      }
    }
  }
  return out;
}

/** Every `$ref` in the document, as its target. */
function refs(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) v.forEach((x) => refs(x, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') out.push(x);
      else refs(x, out);
    }
  }
  return out;
}

/**
 * docs/api.md and docs/openapi.json are generated from the app (`npm run docs` sets UPDATE_DOCS=1
 * and writes them); these tests regenerate them and fail when a committed file differs, so the
 * guide and the document a client is generated from cannot drift.
 */
describe('the API guide (docs/api.md) and the OpenAPI document (docs/openapi.json)', () => {
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

  it('describes the answers: a 2xx JSON schema for each typed route, at the status the route answers with, every $ref resolved', async () => {
    const doc = (await t.http.get('/docs-json').expect(200)).body as OpenApiDocument;
    const untyped = TYPED_ANSWERS.filter((label) => {
      const [method, p] = label.split(' ');
      const responses = doc.paths[p]?.[method.toLowerCase()]?.responses ?? {};
      return !Object.entries(responses).some(([status, r]) => /^2\d\d$/.test(status) && r.content?.['application/json']?.schema);
    });
    expect(untyped).toEqual([]);
    // A declared answer is at the status Nest answers with (an @ApiView status that is not the route's @HttpCode would mislead a client).
    const wrongStatus = [...declaredAnswers(t)].filter(([, a]) => !a.declared.includes(String(a.answered))).map(([label, a]) => `${label}: declared ${a.declared.join(', ')}, answers ${a.answered}`);
    expect(wrongStatus).toEqual([]);
    // Every operation describes its errors: the one error shape, for 4xx and 5xx.
    const errorless = Object.entries(doc.paths).flatMap(([p, item]) =>
      Object.entries(item as Record<string, { responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }>)
        .filter(([, op]) => ['4XX', '5XX'].some((s) => op.responses?.[s]?.content?.['application/json']?.schema?.$ref !== '#/components/schemas/ApiErrorBody'))
        .map(([m]) => `${m.toUpperCase()} ${p}`),
    );
    expect(errorless).toEqual([]);
    const schemas = doc.components?.schemas ?? {};
    const dangling = [...new Set(refs(doc))].filter((r) => !r.startsWith('#/components/schemas/') || !schemas[r.slice('#/components/schemas/'.length)]);
    expect(dangling).toEqual([]);
  });

  it('is docs/openapi.json: the document as /docs-json serves it', async () => {
    const doc = (await t.http.get('/docs-json').expect(200)).body as OpenApiDocument;
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    if (process.env.UPDATE_DOCS === '1') fs.writeFileSync(OPENAPI, text);
    expect(fs.existsSync(OPENAPI) ? fs.readFileSync(OPENAPI, 'utf8') : '(docs/openapi.json is missing: run npm run docs)').toBe(text);
  });
});
