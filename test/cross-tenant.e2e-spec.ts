/**
 * Cross-tenant denial, generated from the route table (issue 10, item 12).
 *
 * Every route the running app serves is read from the app itself (Fastify's router, the Nest
 * handlers' @Auth metadata, the OpenAPI document: test/support/route-table.ts). Every route whose
 * path takes a parameter becomes a test of its own: tenant A owns a resource of the parameter's
 * kind, tenant B calls the route with A's id (with each of B's keys the route accepts, and a
 * valid body where it takes one), and the answer must be 404, never 403 and never A's data;
 * then A reads its resource back and finds it unchanged. The same call on B's own resource must
 * succeed, so a 404 comes from the tenant check and not from a bad key, body or state.
 *
 * A parameterised route whose parameter is not in RESOURCES, and that is not in EXCLUDED with a
 * reason, fails here with its name: a new route cannot be forgotten.
 */
import { randomUUID } from 'node:crypto';
import { signPayload } from '../src/common/signature';
import { FakeProvider } from './fake-provider/fake-provider';
import { generateEssay } from './support/essays';
import { bearer, Factory, TestTenant } from './support/factories';
import { waitForEssays } from './support/grading';
import { readRouteTable, RouteInfo, routeTableOfAFreshApp } from './support/route-table';
import { OPERATOR_TOKEN, TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';

// ---------------------------------------------------------------------------------------------
// The route table, read before the tests are declared (jest declares them synchronously).

const TABLE = routeTableOfAFreshApp();
const PARAMETERISED = TABLE.routes.filter((r) => r.params.length > 0);
const isTenantRoute = (r: RouteInfo) => Array.isArray(r.auth) && (r.auth.includes('admin') || r.auth.includes('teacher'));
const isOperatorOnly = (r: RouteInfo) => Array.isArray(r.auth) && r.auth.includes('operator') && !isTenantRoute(r);

type ExclusionKind = 'signature' | 'operator' | 'static' | 'asset' | 'catalog';

/**
 * Parameterised routes that are not cross-tenant, each with the reason. Each kind is still tested:
 * `signature` below (another tenant's secret answers exactly like an unknown tenant), `operator`
 * (tenant keys are refused), `static` (not served by any controller), `asset` (a public route of
 * the console's built files: its parameter names a file of the build, never a tenant's record),
 * `catalog` (the model catalog every tenant shares: its parameter names a model, not a record).
 */
const EXCLUDED: Record<string, { kind: ExclusionKind; reason: string }> = {
  // The payment provider calls it without a key; it authenticates by the tenant's webhook
  // signature, and the tenant id in the path only says whose secret to check against.
  'POST /v1/payments/webhook/:tenantId': { kind: 'signature', reason: 'public, authenticated by the tenant webhook signature, not by a key' },
  // Swagger UI's static files (@nestjs/swagger registers them on Fastify): public, the same for everyone.
  'GET /docs/*': { kind: 'static', reason: 'Swagger UI static assets, no tenant data' },
  'HEAD /docs/*': { kind: 'static', reason: 'Swagger UI static assets, no tenant data' },
  'GET /console/:file': { kind: 'asset', reason: "the web console's page, script and stylesheet, no tenant data" },
  'HEAD /console/:file': { kind: 'asset', reason: "the web console's page, script and stylesheet, no tenant data" },
  // Operator-only routes that take an id go here with kind 'operator': the operator may see every
  // tenant, so they are not cross-tenant; the suite checks that a tenant key is refused (401/403).
  'PUT /v1/tenants/:id/limits': { kind: 'operator', reason: "the operator sets any tenant's fair-use limits" },
  'GET /v1/tenants/:id/api-keys': { kind: 'operator', reason: "the operator lists any tenant's keys (a school's way back when its admin key is lost)" },
  'HEAD /v1/tenants/:id/api-keys': { kind: 'operator', reason: "the operator lists any tenant's keys (a school's way back when its admin key is lost)" },
  'POST /v1/tenants/:id/api-keys': { kind: 'operator', reason: 'the operator gives any tenant a new key (a school that lost its admin key)' },
  'DELETE /v1/tenants/:id/api-keys/:keyId': { kind: 'operator', reason: "the operator revokes any tenant's key (a school taken over)" },
  'POST /v1/tenants/:id/api-keys/take-back': { kind: 'operator', reason: 'the operator takes any school back from an intruder (every key revoked, a new admin key)' },
  'GET /v1/models/:id': { kind: 'catalog', reason: 'one entry of the model catalog every tenant shares; the id names a model, not a record' },
  'HEAD /v1/models/:id': { kind: 'catalog', reason: 'one entry of the model catalog every tenant shares; the id names a model, not a record' },
};

// ---------------------------------------------------------------------------------------------
// Tenants, and the resources a path parameter names.

const MARK_A = `tenant-a-private-${randomUUID().slice(0, 8)}`;
const SECRET_A = 'whsec_cross_tenant_a_0123456789';
const SECRET_B = 'whsec_cross_tenant_b_0123456789';

interface Side {
  name: 'A' | 'B';
  tenant: TestTenant;
  teacher: string;
  keys: { admin: string; teacher: string };
  cache: Map<string, string>;
}

let fake: FakeProvider;
let t: TestApp;
let f: Factory;
let A: Side;
let B: Side;

/** One request, its body read as text whatever its type (event streams included). */
async function call(method: string, url: string, key: string | null, body?: unknown) {
  let req = t.http[method.toLowerCase() as 'get'](url)
    .timeout(20_000)
    .buffer(true)
    .parse((res, done) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => done(null, text));
    });
  if (key) req = req.set(bearer(key));
  const res = body === undefined ? await req : await req.send(body as object);
  const text = typeof res.body === 'string' ? res.body : '';
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: res.status, text, json };
}

async function ok(method: string, url: string, key: string, body?: unknown) {
  const res = await call(method, url, key, body);
  if (res.status >= 300) throw new Error(`${method} ${url} answered ${res.status}: ${res.text}`);
  return res.json;
}

async function gradedEssay(side: Side, seed: number): Promise<string> {
  const essay = generateEssay(seed, 'zh');
  const res = await ok('POST', '/v1/essays', side.teacher, { text: essay.text, title: `${side.name} ${MARK_A}`, studentRef: `${side.name}-${seed}` });
  const [view] = await waitForEssays(t.app, side.teacher, [res.id]);
  if (view.status !== 'graded') throw new Error(`${side.name}'s essay ended ${view.status}`);
  return res.id;
}

const rubricBody = (name: string) => ({
  name,
  language: 'zh',
  totalRule: 'sum',
  dimensions: [
    { key: 'content', name: '内容', max: 30, kind: 'content', description: '中心明确' },
    { key: 'language', name: '语言', max: 20, kind: 'language', description: '语言通顺' },
  ],
});

interface Resource {
  what: string;
  /** An id of this kind that `side` owns. */
  make(side: Side): Promise<string>;
  /** The route uses the resource up (a revoked key): each call gets a fresh one. */
  consumable?: boolean;
  /** The resource as its owner reads it back through the API. */
  read(side: Side, id: string): Promise<unknown>;
}

const essayRead = async (side: Side, id: string) => {
  const essay = await ok('GET', `/v1/essays/${id}`, side.keys.admin);
  const orders = (await ok('GET', '/v1/orders', side.keys.admin)).data.filter((o: { essayId: string }) => o.essayId === id);
  return { essay, orders };
};

/**
 * How to obtain a resource for each path parameter, by `<the segment before it>/:<name>` (an
 * `:id` after `essays` is an essay, after `orders` an order).
 */
const RESOURCES: Record<string, Resource> = {
  'essays/:id': { what: 'a graded essay', make: (s) => gradedEssay(s, s.name === 'A' ? 101 : 201), read: essayRead },
  'orders/:id': {
    what: 'a deep-review order awaiting payment',
    make: async (s) => (await ok('POST', `/v1/essays/${await gradedEssay(s, s.name === 'A' ? 102 : 202)}/deep-review`, s.teacher)).orderId,
    read: (s, id) => ok('GET', `/v1/orders/${id}`, s.keys.admin),
  },
  'assignments/:id': {
    what: 'an assignment',
    make: async (s) => (await ok('POST', '/v1/assignments', s.teacher, { title: `${s.name} ${MARK_A}`, prompt: '以“那一刻”为题作文', rubric: 'zh-gaokao-60' })).id,
    read: (s, id) => ok('GET', `/v1/assignments/${id}`, s.keys.admin),
  },
  'api-keys/:id': {
    what: 'a teacher key',
    consumable: true,
    make: async (s) => (await ok('POST', '/v1/api-keys', s.keys.admin, { name: `${s.name} ${MARK_A}`, role: 'teacher' })).id,
    read: async (s, id) => {
      const key = (await ok('GET', '/v1/api-keys', s.keys.admin)).data.find((k: { id: string }) => k.id === id);
      const { lastUsedAt: _used, ...rest } = key ?? {};
      return key ? rest : null;
    },
  },
  'incidents/:id': {
    what: 'a budget incident (a provider that billed past the bound)',
    make: async (s) => {
      // The tier's first model is DeepSeek: its next answer reports forty times the real tokens.
      fake.enqueue('deepseek', { kind: 'ok', inflateUsage: 40 });
      await ok('POST', '/v1/chat/completions', s.keys.admin, { model: 'inkstone-standard', messages: [{ role: 'user', content: `${s.name} ${MARK_A}` }] });
      const budget = await ok('GET', '/v1/budget', s.keys.admin);
      return budget.incidents[0].id;
    },
    read: async (s, id) => (await ok('GET', '/v1/budget', s.keys.admin)).incidents.find((i: { id: string }) => i.id === id) ?? null,
  },
  'rubrics/:key': {
    what: "the tenant's own rubric",
    make: async (s) => (await ok('POST', '/v1/rubrics', s.keys.admin, { key: `ct-${s.name.toLowerCase()}-rubric`, ...rubricBody(`${s.name} ${MARK_A}`) })).key,
    read: (s, key) => ok('GET', `/v1/rubrics/${key}`, s.keys.admin),
  },
};

/**
 * An assignment with a calibration in force: 20 essays graded by the fake provider, each overridden
 * by a teacher 8 points below the grader (a bias that the isotonic map learns), then calibrated.
 */
async function calibratedAssignment(s: Side): Promise<string> {
  const id = (await ok('POST', '/v1/assignments', s.teacher, { title: `${s.name} ${MARK_A}`, prompt: '以“那一刻”为题作文', rubric: 'zh-gaokao-60' })).id;
  const essays = Array.from({ length: 20 }, (_, i) => ({ text: generateEssay(700 + i, 'zh').text }));
  const { ids } = await ok('POST', '/v1/essays/batch', s.teacher, { assignmentId: id, essays });
  for (const view of await waitForEssays(t.app, s.teacher, ids)) {
    await ok('PATCH', `/v1/essays/${view.id}/grade`, s.teacher, { score: Math.max(0, view.grade.score - 8) });
  }
  const fit = await ok('POST', `/v1/assignments/${id}/calibration`, s.teacher);
  if (!fit.active) throw new Error(`${s.name}'s calibration was not switched on: ${JSON.stringify(fit)}`);
  return id;
}

const calibrated: Resource = {
  what: 'an assignment with a calibration in force',
  make: calibratedAssignment,
  read: (s, id) => ok('GET', `/v1/assignments/${id}/calibration`, s.keys.admin),
};

/** Routes whose parameter needs more than its segment says (a calibration needs labelled essays). */
const ROUTE_RESOURCES: Record<string, { key: string; resource: Resource }> = {
  'GET /v1/assignments/:id/calibration': { key: 'calibrated', resource: calibrated },
  'HEAD /v1/assignments/:id/calibration': { key: 'calibrated', resource: calibrated },
  'POST /v1/assignments/:id/calibration': { key: 'calibrated', resource: calibrated },
  'DELETE /v1/assignments/:id/calibration': { key: 'calibrated-consumed', resource: { ...calibrated, consumable: true } },
  // Erasure uses the essay up: B's control call erases one of B's own, made for it.
  'DELETE /v1/essays/:id': { key: 'essays/:id-consumed', resource: { ...RESOURCES['essays/:id'], consumable: true } },
};

/** A valid body for each route whose OpenAPI operation takes one. */
const BODIES: Record<string, unknown> = {
  'PATCH /v1/essays/:id/grade': { score: 30, comment: 'overridden by tenant B' },
  'POST /v1/essays/:id/deep-review': { dueBy: 'tomorrow_morning' },
  'PATCH /v1/assignments/:id': { escalate: 'flag', passMark: 30, expectedLength: { min: 100, max: 200 } },
  'PUT /v1/rubrics/:key': rubricBody('edited by tenant B'),
};

function bindingOf(route: RouteInfo): { key: string; resource: Resource } {
  if (ROUTE_RESOURCES[route.label]) return ROUTE_RESOURCES[route.label];
  if (route.params.length !== 1) {
    throw new Error(`${route.label}: ${route.params.length} path parameters; RESOURCES binds one per route: extend the suite for it, or list it in EXCLUDED with a reason`);
  }
  const segments = route.path.split('/');
  const at = segments.findIndex((s) => s.startsWith(':') || s === '*');
  const key = `${segments[at - 1]}/${segments[at].replace(/\(.*$/, '')}`;
  const resource = RESOURCES[key];
  if (!resource) {
    throw new Error(`${route.label}: its parameter "${key}" is not in RESOURCES and the route is not in EXCLUDED: say how to obtain one, or exclude it with a reason`);
  }
  return { key, resource };
}

async function owned(side: Side, key: string, resource: Resource): Promise<string> {
  if (resource.consumable) return resource.make(side);
  if (!side.cache.has(key)) side.cache.set(key, await resource.make(side));
  return side.cache.get(key)!;
}

const urlFor = (route: RouteInfo, id: string) => route.path.replace(/:[A-Za-z0-9_]+(\([^)]*\))?|\*/, encodeURIComponent(id));

function bodyFor(route: RouteInfo): unknown {
  if (!route.body) return undefined;
  if (!(route.label in BODIES)) throw new Error(`${route.label}: takes a request body and BODIES has none for it: add a valid one`);
  return BODIES[route.label];
}

function rolesFor(route: RouteInfo): Array<'admin' | 'teacher'> {
  return Array.isArray(route.auth) ? (['admin', 'teacher'] as const).filter((r) => (route.auth as string[]).includes(r)) : [];
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  ({ fake, t } = await startAppWithFake({ WORKER_POLL_MS: '50', JOB_RETRY_BASE_MS: '50' }));
  f = new Factory(t.app);
  const side = async (name: 'A' | 'B', secret: string): Promise<Side> => {
    const tenant = await f.newTenant({ name: `${name} ${MARK_A}`, monthlyBudget: '100.00' });
    const teacher = (await f.newKey(tenant, 'teacher')).key;
    // Deep reviews on sale, paid by webhook: an order waits for payment, and nothing runs in the background.
    await ok('PUT', '/v1/billing/settings', tenant.adminKey, { deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: secret });
    return { name, tenant, teacher, keys: { admin: tenant.adminKey, teacher }, cache: new Map() };
  };
  A = await side('A', SECRET_A);
  B = await side('B', SECRET_B);
});

afterAll(async () => {
  await t?.close();
  await fake?.close();
});

describe('the route table', () => {
  it('is read from the app: the same in this process as in a fresh one, and every documented and mapped route is in it', async () => {
    const here = await readRouteTable(t.app);
    expect(here).toEqual(TABLE);
    const served = new Set(TABLE.routes.map((r) => r.label));
    expect(TABLE.openApi.filter((op) => !served.has(op))).toEqual([]);
    expect(TABLE.nest.filter((op) => !served.has(op))).toEqual([]);
    expect(TABLE.openApi.length).toBeGreaterThan(10);
    expect(PARAMETERISED.filter(isTenantRoute).length).toBeGreaterThan(0);
  });

  it('names in EXCLUDED only routes that exist, each of the kind it claims', () => {
    const byLabel = new Map(TABLE.routes.map((r) => [r.label, r]));
    for (const [label, { kind, reason }] of Object.entries(EXCLUDED)) {
      const route = byLabel.get(label);
      if (!route) throw new Error(`EXCLUDED names ${label}, which the app does not serve: remove it`);
      expect(reason.length).toBeGreaterThan(10);
      if (kind === 'signature') expect(route.auth).toBe('public');
      if (kind === 'operator' && !isOperatorOnly(route)) throw new Error(`${label} is excluded as operator-only but tenant keys may call it (${JSON.stringify(route.auth)})`);
      if (kind === 'static') expect(route.auth).toBeNull();
      if (kind === 'asset') expect(route.auth).toBe('public');
      if (kind === 'catalog') expect(route.path.startsWith('/v1/models/') && isTenantRoute(route)).toBe(true);
    }
  });
});

const CROSS = PARAMETERISED.filter((r) => !(r.label in EXCLUDED));

/** describe.each over routes (jest refuses an empty table: one failing test stands in for it). */
const eachRoute = (routes: RouteInfo[]) => describe.each(routes.length ? routes.map((r) => [r.label, r] as const) : [['(no route)', null as unknown as RouteInfo] as const]);

eachRoute(CROSS)('%s', (_label, route) => {
  if (!route) {
    it('finds parameterised tenant routes', () => expect(CROSS).not.toHaveLength(0));
    return;
  }
  const roles = rolesFor(route);
  if (roles.length === 0) {
    it('is a tenant route, or is excluded with a reason', () => {
      throw new Error(
        `${route.label}: takes an id but no tenant key may call it (auth ${JSON.stringify(route.auth)}); ` +
          `an operator-only, public or unmanaged route with an id must be listed in EXCLUDED with a reason`,
      );
    });
    return;
  }
  it.each(roles)("tenant B's %s key with tenant A's id: 404, nothing of A's shown or changed", async (role) => {
    const { key, resource } = bindingOf(route);
    const body = bodyFor(route);
    const theirs = await owned(A, key, resource);
    const before = await resource.read(A, theirs);
    expect(before).toBeTruthy();

    // The same call on B's own resource succeeds (a HEAD is its GET's, checked on the GET).
    if (route.method !== 'HEAD') {
      const mine = await owned(B, key, resource);
      const control = await call(route.method, urlFor(route, mine), B.keys[role], body);
      if (control.status >= 300) throw new Error(`${route.label} on B's own ${resource.what} as B's ${role}: ${control.status} ${control.text}`);
    }

    const res = await call(route.method, urlFor(route, theirs), B.keys[role], body);
    if (res.status !== 404) throw new Error(`${route.label} with A's id (${resource.what}) as B's ${role}: ${res.status} (expected 404) ${res.text.slice(0, 500)}`);
    if (route.method !== 'HEAD') expect(res.json?.error?.code).toBe('NOT_FOUND');
    expect(res.text).not.toContain(MARK_A);
    expect(res.text).not.toContain(A.tenant.tenantId);

    expect(await resource.read(A, theirs)).toEqual(before);
  });
});

describe('the payment webhook (excluded: it authenticates by signature)', () => {
  const event = (orderId: string) => JSON.stringify({ id: `evt_${randomUUID()}`, type: 'payment.succeeded', data: { orderId, amount: '9.90' } });
  const webhook = (tenantId: string, body: string, secret: string) =>
    t.http.post(`/v1/payments/webhook/${tenantId}`).set('Content-Type', 'application/json').set('X-Inkstone-Signature', signPayload(secret, body)).send(body);
  const withoutRequestId = (body: { error: Record<string, unknown> }) => {
    const { requestId: _r, ...rest } = body.error;
    return rest;
  };

  it("answers tenant A's id signed with B's secret with 401, exactly as for an unknown tenant, and pays nothing", async () => {
    const orderId = await owned(A, 'orders/:id', RESOURCES['orders/:id']);
    const before = await RESOURCES['orders/:id'].read(A, orderId);
    const body = event(orderId);

    // A's own secret is accepted (an unknown order then is 404), so the 401 below is the secret's.
    expect((await webhook(A.tenant.tenantId, event(randomUUID()), SECRET_A)).status).toBe(404);

    const cross = await webhook(A.tenant.tenantId, body, SECRET_B);
    const unknown = await webhook(randomUUID(), body, SECRET_B);
    expect(cross.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(withoutRequestId(cross.body)).toEqual(withoutRequestId(unknown.body));
    // Nor does a tenant id that is not a UUID, or a tenant that set no secret, answer differently.
    const noSecret = await f.newTenant();
    for (const other of ['not-a-tenant', noSecret.tenantId]) {
      const res = await webhook(other, body, SECRET_B);
      expect([res.status, withoutRequestId(res.body)]).toEqual([401, withoutRequestId(unknown.body)]);
    }
    // A malformed signature reads the same for a real tenant as for an unknown one.
    const malformed = (tenantId: string) => t.http.post(`/v1/payments/webhook/${tenantId}`).set('Content-Type', 'application/json').set('X-Inkstone-Signature', 't=1,v1=zz').send(body);
    expect(withoutRequestId((await malformed(A.tenant.tenantId).expect(401)).body)).toEqual(withoutRequestId((await malformed(randomUUID()).expect(401)).body));
    expect(await RESOURCES['orders/:id'].read(A, orderId)).toEqual(before);
  });

  it("answers B's own webhook, signed by B, naming A's order with 404, and pays nothing", async () => {
    const orderId = await owned(A, 'orders/:id', RESOURCES['orders/:id']);
    const before = await RESOURCES['orders/:id'].read(A, orderId);
    const res = await webhook(B.tenant.tenantId, event(orderId), SECRET_B);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
    expect(await RESOURCES['orders/:id'].read(A, orderId)).toEqual(before);
  });
});

const OPERATOR_ONLY = TABLE.routes.filter(isOperatorOnly);

eachRoute(OPERATOR_ONLY)('operator-only %s', (_label, route) => {
  if (!route) {
    it('finds the operator routes (POST /v1/tenants at least)', () => expect(OPERATOR_ONLY).not.toHaveLength(0));
    return;
  }
  it('refuses tenant keys (the operator sees every tenant; a tenant key sees none of it)', async () => {
    const url = route.path.replace(/:[A-Za-z0-9_]+(\([^)]*\))?|\*/g, A.tenant.tenantId);
    for (const key of [B.keys.admin, B.keys.teacher, A.keys.admin]) {
      const res = await call(route.method, url, key, route.body ? {} : undefined);
      expect([401, 403]).toContain(res.status);
    }
    const operator = await call(route.method, url, OPERATOR_TOKEN, route.body ? {} : undefined);
    expect([401, 403]).not.toContain(operator.status);
  });
});
