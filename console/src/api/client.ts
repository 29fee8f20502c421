/**
 * The console's API client: typed by `schema.d.ts`, which `npm run console:api` generates from the
 * service's OpenAPI document (docs/openapi.json), so a route, parameter or field the API does not
 * have is a compile error here. Calls carry the session cookie; changes carry the CSRF token.
 */
import createClient, { type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema';
import { describeError } from '../errors';
import type { Locale } from '../i18n';

export type Schemas = components['schemas'];

let csrfToken = '';
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when the session is gone (signed out elsewhere, expired, key revoked). */
let onUnauthenticated: () => void = () => undefined;
export function whenUnauthenticated(handler: () => void): void {
  onUnauthenticated = handler;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** A read refused for the moment (429: the school's reads at once, or its rate) is sent again this many times. */
const READ_RETRIES = 3;

/**
 * A read answered 429 is sent again after the answer's Retry-After (at most 5 s, with jitter so a
 * school's teachers do not all come back at once): many teachers of one school opening pages
 * together meet its bound on reads at once, and should see their page, a moment later, not an error.
 */
async function readAgain(request: Request, response: Response): Promise<Response> {
  let res = response;
  for (let i = 0; i < READ_RETRIES && res.status === 429; i++) {
    const wait = Math.min(5, Number(res.headers.get('retry-after')) || 1);
    await new Promise((r) => setTimeout(r, wait * 1000 * (0.5 + Math.random())));
    res = await fetch(request.url, { method: request.method, headers: request.headers, credentials: 'same-origin' });
  }
  return res;
}

const session: Middleware = {
  onRequest({ request }) {
    if (!SAFE.has(request.method)) request.headers.set('x-csrf-token', csrfToken);
    return request;
  },
  async onResponse({ response, request }) {
    const res = response.status === 429 && SAFE.has(request.method) ? await readAgain(request, response) : response;
    if (res.status === 401 && !request.url.endsWith('/v1/console/session')) onUnauthenticated();
    return res;
  },
};

export const api = createClient<paths>({ baseUrl: globalThis.location?.origin ?? 'http://localhost', credentials: 'same-origin' });
api.use(session);

/** An API error as the service reports it: its code, message and field problems. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    /** the request's id, to report an INTERNAL error */
    readonly requestId?: string,
  ) {
    super(message);
  }
}

interface ErrorBody {
  error?: { code?: string; message?: string; details?: unknown; requestId?: string };
}

/** The data of a call, or an ApiFailure with the service's own message. */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (response.ok) return data as T;
  const body = (error ?? {}) as ErrorBody;
  throw new ApiFailure(response.status, body.error?.code ?? `HTTP_${response.status}`, body.error?.message ?? response.statusText, body.error?.details, body.error?.requestId);
}

/** The language errors are told in: the console's, set by the app when it changes. */
let errorLocale: Locale = 'en';
export function setErrorLocale(locale: Locale): void {
  errorLocale = locale;
}

/** The time zone a date in an error is told in: the school's, set by the app once signed in. */
let errorTimeZone = 'UTC';
export function setErrorTimeZone(timeZone: string): void {
  errorTimeZone = timeZone;
}

/**
 * An error in words, in the console's language (src/errors.ts): the common API codes translated
 * (the service's message kept beside them when it is specific), a VALIDATION_FAILED answer as each
 * field by its label and what is wrong with it.
 */
export function problems(err: unknown, locale: Locale = errorLocale): string {
  return describeError(locale, err, (e): e is ApiFailure => e instanceof ApiFailure, errorTimeZone);
}
