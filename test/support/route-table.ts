/**
 * The running app's route table, read from the app itself: Fastify's own router (every route it
 * serves, Nest's and those registered on Fastify directly), joined with who may call each route
 * (the @Auth/@Public metadata of the Nest handler behind it, as the guard reads it) and whether
 * its OpenAPI operation (/docs-json, as the app serves it) takes a request body.
 *
 * Run as a script (`node -r ts-node/register/transpile-only route-table.ts`), it starts the app on
 * a test database of its own and prints the table on one line after ROUTE_TABLE_MARKER: jest
 * declares its tests before any `beforeAll` runs, so a suite generated from the table reads it
 * this way, synchronously, and then checks that its in-process app has the same table.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { AUTH_METADATA, Principal, PUBLIC_ROUTE } from '../../src/common/auth';

export interface RouteInfo {
  method: string;
  /** Fastify's pattern: `/v1/essays/:id/grade`. */
  path: string;
  /** `GET /v1/essays/:id` */
  label: string;
  /** Path parameters in order (`*` for a wildcard). */
  params: string[];
  /** Who may call it: the principals of @Auth, 'public' for @Public, null when no Nest handler serves it. */
  auth: Principal[] | 'public' | null;
  /** Its OpenAPI operation takes a request body. */
  body: boolean;
  /** Fastify answers it with the GET handler (exposeHeadRoutes). */
  autoHead: boolean;
}

export interface RouteTable {
  routes: RouteInfo[];
  /** Every operation of the OpenAPI document, as `METHOD /path/:param`. */
  openApi: string[];
  /** Every route mapped by a Nest controller, as `METHOD /path/:param`. */
  nest: string[];
}

export const ROUTE_TABLE_MARKER = 'ROUTE_TABLE ';

/** `/v1/essays/:id(^\\d+)` → its parameter names; `*` for a wildcard. */
export function pathParams(p: string): string[] {
  return [...p.matchAll(/:([A-Za-z0-9_]+)(\([^)]*\))?|\*/g)].map((m) => m[1] ?? '*');
}

/**
 * Parses `printRoutes({ commonPrefix: false })`: one node per line, four characters of indent per
 * level, the node's path segment, then `(METHODS)` when routes end there.
 */
export function parsePrintedRoutes(printed: string): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  const stack: string[] = [];
  for (const line of printed.split('\n')) {
    if (!line.trim()) continue;
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(.+?)(?: \(([A-Z, -]+)\))?$/.exec(line);
    if (!m) throw new Error(`route table: cannot read Fastify's line ${JSON.stringify(line)}`);
    const depth = m[1].length / 4;
    stack.length = depth;
    stack.push(m[2]);
    const full = stack.join('');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim())) {
      if (/^[A-Z]+$/.test(method)) out.push({ method, path: full });
    }
  }
  return out;
}

function normalisePath(...parts: string[]): string {
  const joined = `/${parts.filter((p) => p && p !== '/').join('/')}`.replace(/\/{2,}/g, '/');
  return joined.length > 1 ? joined.replace(/\/$/, '') : joined;
}

/** `METHOD path` → who may call it, from the controllers' metadata (handler first, then class). */
function nestRoutes(app: NestFastifyApplication): Map<string, Principal[] | 'public' | null> {
  const out = new Map<string, Principal[] | 'public' | null>();
  for (const mod of app.get(ModulesContainer, { strict: false }).values()) {
    for (const wrapper of mod.controllers.values()) {
      const cls = wrapper.metatype as (new (...args: unknown[]) => unknown) | null;
      if (!cls) continue;
      const bases = [Reflect.getMetadata(PATH_METADATA, cls) ?? ''].flat() as string[];
      const classAuth = Reflect.getMetadata(AUTH_METADATA, cls) as Principal[] | typeof PUBLIC_ROUTE | undefined;
      for (let proto = cls.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
        for (const name of Object.getOwnPropertyNames(proto)) {
          const handler = Object.getOwnPropertyDescriptor(proto, name)?.value;
          if (name === 'constructor' || typeof handler !== 'function') continue;
          const paths = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
          if (paths === undefined) continue;
          const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number];
          const own = Reflect.getMetadata(AUTH_METADATA, handler) as Principal[] | typeof PUBLIC_ROUTE | undefined;
          const auth = own ?? classAuth;
          for (const base of bases) {
            for (const p of [paths].flat()) {
              const key = `${method} ${normalisePath(base, p)}`;
              if (!out.has(key)) out.set(key, auth === PUBLIC_ROUTE ? 'public' : (auth ?? null));
            }
          }
        }
      }
    }
  }
  return out;
}

export async function readRouteTable(app: NestFastifyApplication): Promise<RouteTable> {
  const fastify = app.getHttpAdapter().getInstance();
  const served = parsePrintedRoutes(fastify.printRoutes({ commonPrefix: false }));

  const res = await fastify.inject({ method: 'GET', url: '/docs-json' });
  if (res.statusCode !== 200) throw new Error(`route table: /docs-json answered ${res.statusCode}`);
  const doc = res.json() as { paths: Record<string, Record<string, { requestBody?: unknown }>> };
  const withBody = new Set<string>();
  const openApi: string[] = [];
  for (const [p, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const key = `${method.toUpperCase()} ${p.replace(/\{([^}]+)\}/g, ':$1')}`;
      openApi.push(key);
      if (op.requestBody) withBody.add(key);
    }
  }

  const nest = nestRoutes(app);
  const servedKeys = new Set(served.map((r) => `${r.method} ${r.path}`));
  const routes = served.map(({ method, path: p }): RouteInfo => {
    const label = `${method} ${p}`;
    const autoHead = method === 'HEAD' && !nest.has(label) && servedKeys.has(`GET ${p}`) && nest.has(`GET ${p}`);
    const key = autoHead ? `GET ${p}` : label;
    return {
      method,
      path: p,
      label,
      params: pathParams(p),
      auth: nest.has(key) ? nest.get(key)! : null,
      body: withBody.has(label),
      autoHead,
    };
  });
  routes.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  return { routes, openApi: openApi.sort(), nest: [...nest.keys()].sort() };
}

/**
 * The table of a freshly started app, read in a child process (synchronous, for jest's test
 * declarations). The child uses this run's test database template like any test file.
 */
export function routeTableOfAFreshApp(extraEnv: Record<string, string> = {}): RouteTable {
  const out = execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', __filename], {
    env: { ...process.env, ...extraEnv, TS_NODE_PROJECT: path.resolve(__dirname, '../../tsconfig.json') },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 * 1024 * 1024,
    timeout: 120_000,
  }).toString('utf8');
  const line = out.split('\n').find((l) => l.startsWith(ROUTE_TABLE_MARKER));
  if (!line) throw new Error(`route table: the child printed no table:\n${out.slice(0, 2000)}`);
  return JSON.parse(line.slice(ROUTE_TABLE_MARKER.length)) as RouteTable;
}

async function main(): Promise<void> {
  // Imported here so that the jest side of this file does not load the app twice.
  const { createTestApp } = await import('./test-app');
  const t = await createTestApp({ WORKERS_ENABLED: 'false' });
  try {
    process.stdout.write(`\n${ROUTE_TABLE_MARKER}${JSON.stringify(await readRouteTable(t.app))}\n`);
  } finally {
    await t.close();
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`route-table: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
