import { FASTIFY_ROUTE_CONFIG_METADATA } from '@nestjs/platform-fastify/constants';

/**
 * What Fastify knows about a route before Nest runs: set from decorators on the handler, read by
 * the request hooks in app.factory.ts (auth before the body is parsed, the route's body limit).
 */
export interface InkstoneRouteConfig {
  /** no key needed (health, the signed payment webhook) */
  public?: boolean;
  /** the largest request body the route takes, in bytes */
  bodyLimit?: number;
  /** most array elements and object members a JSON body may hold in all (default DEFAULT_JSON_TOTAL_ITEMS) */
  jsonTotalItems?: number;
  /**
   * the route answers itself while the server is closing (an essay's event stream: a retry hint,
   * since an EventSource answered with an error status stops for good); every other route is 503
   */
  answersWhileClosing?: boolean;
}

/** Adds fields to the handler's Fastify route config, keeping the ones other decorators set. */
export function RouteLimits(extra: InkstoneRouteConfig): MethodDecorator {
  return (_target, _key, descriptor: PropertyDescriptor) => {
    const current = (Reflect.getMetadata(FASTIFY_ROUTE_CONFIG_METADATA, descriptor.value) ?? {}) as InkstoneRouteConfig;
    Reflect.defineMetadata(FASTIFY_ROUTE_CONFIG_METADATA, { ...current, ...extra }, descriptor.value);
    return descriptor;
  };
}

/** The route is not answered 503 while the server closes: its handler answers (app.factory.ts). */
export const AnswersWhileClosing = () => RouteLimits({ answersWhileClosing: true });

/** The largest body a route takes; larger ones get 413 before they are read. */
export const BodyLimit = (bytes: number) => RouteLimits({ bodyLimit: bytes });

export const KiB = 1024;
export const MiB = 1024 * KiB;
/** Routes that name no limit of their own. */
export const DEFAULT_BODY_LIMIT = 1 * MiB;

/**
 * Most array elements and object members in all, for a route that names no number of its own: a
 * class set of 200 essays is about 2,000. Every member is validated (an unknown key is an error
 * object: 45,000 of them took 0.4–0.8 s of the event loop, the answer included), so a route takes
 * no more than it has use for; the chat route takes MAX_JSON_TOTAL_ITEMS.
 */
export const DEFAULT_JSON_TOTAL_ITEMS = 5_000;
/** The most any route takes (the chat route: 500 messages of content parts, tools and their schemas). */
export const MAX_JSON_TOTAL_ITEMS = 50_000;
