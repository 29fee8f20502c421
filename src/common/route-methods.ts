/**
 * Which methods each route path takes, learnt as the routes are registered (Fastify's `onRoute`),
 * so that a request for a path that exists with another method is answered 405 with `Allow`, not
 * 404 ("no such route"). Fastify's router knows this but says only "not found".
 */
export class RouteMethods {
  private readonly routes = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  /** A route as Fastify declares it: `/v1/essays/:id/grade`, a wildcard `*` at the end. */
  add(methods: string | string[], url: string): void {
    const entry = this.routes.get(url) ?? { pattern: toPattern(url), methods: new Set<string>() };
    for (const m of Array.isArray(methods) ? methods : [methods]) entry.methods.add(m.toUpperCase());
    this.routes.set(url, entry);
  }

  /** The methods some route of this path takes, sorted; empty when no route has the path. */
  allowed(path: string): string[] {
    const clean = path.split('?')[0];
    const out = new Set<string>();
    for (const { pattern, methods } of this.routes.values()) if (pattern.test(clean)) for (const m of methods) out.add(m);
    return [...out].sort();
  }
}

function toPattern(url: string): RegExp {
  const parts = url.split('/').map((seg) => {
    if (seg === '*') return '.*';
    // A parameter (`:id`, `:id(regex)` taken as any one segment) matches one whole segment.
    if (seg.startsWith(':')) return '[^/]+';
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  // (Exactly the path: Fastify does not route `/v1/essays/` to `/v1/essays`, so neither is it a 405.)
  return new RegExp(`^${parts.join('/')}$`);
}
