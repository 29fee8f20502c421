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
/** The signed-in key: a token read again after a sign-in elsewhere is taken only for the same key. */
let sessionKeyId = '';
export function setCsrfToken(token: string, keyId = ''): void {
  csrfToken = token;
  sessionKeyId = keyId;
  ended = false;
}

/**
 * A URL the browser requests itself (a CSV link, an EventSource), which carries no header of this
 * page's: the signed-in key id goes in its query (`sessionKey`), so that a cookie of another key
 * signed in since in another tab is refused for it, as for the page's other calls.
 */
export function withSessionKey(path: string): string {
  if (!sessionKeyId) return path;
  return `${path}${path.includes('?') ? '&' : '?'}sessionKey=${encodeURIComponent(sessionKeyId)}`;
}

/**
 * The session was refused (a 401): until a sign-in (setCsrfToken), nothing is sent but the
 * session's own requests (read it, sign in), each other call answered 401 here. A page left open
 * under the sign-in dialog keeps its timers (a list of essays still grading, an order awaiting
 * payment); its reads must not go on reaching the service, where each refusal counts against the
 * address the school shares with others behind its proxy.
 */
let ended = false;

/** Called when the session is gone (signed out elsewhere, expired, key revoked). */
let onUnauthenticated: () => void = () => undefined;
export function whenUnauthenticated(handler: () => void): void {
  onUnauthenticated = handler;
}

const isSessionRequest = (request: Request) => new URL(request.url).pathname === '/v1/console/session';

function sessionEnded(): void {
  ended = true;
  onUnauthenticated();
}

/** The answer a call gets without being sent while the session has ended. */
function endedAnswer(): Response {
  const body = { error: { code: 'UNAUTHENTICATED', message: 'The console session has ended: sign in again' } };
  return new Response(JSON.stringify(body), { status: 401, headers: { 'content-type': 'application/json' } });
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

/** A change's body as it was sent (the send reads the request's own): to send it again once with a new CSRF token. */
const bodies = new WeakMap<Request, ArrayBuffer | null>();

/**
 * A change refused for its CSRF token (403 CSRF_TOKEN_INVALID): the browser's session cookie is
 * another session's now — a sign-in in another tab of the school's same key — so the page's token
 * is stale. The session is read again; for the same key, the change is sent once more with its
 * token; for another key (another school or role signed in there), the page asks to sign in.
 */
async function withFreshToken(request: Request, response: Response): Promise<Response> {
  if (!bodies.has(request)) return response;
  const code = await response
    .clone()
    .json()
    .then((b: { error?: { code?: string } }) => b?.error?.code)
    .catch(() => undefined);
  if (code !== 'CSRF_TOKEN_INVALID') return response;
  const now = await fetch(new URL('/v1/console/session', request.url), { credentials: 'same-origin' }).catch(() => null);
  // Not read now (the network, the service busy): the refusal stands, and says to reload; signed
  // out, or another key signed in there: the page asks to sign in.
  if (now?.status === 401) {
    sessionEnded();
    return response;
  }
  const s = now?.ok ? ((await now.json().catch(() => null)) as { keyId?: string; csrfToken?: string } | null) : null;
  if (!s?.csrfToken || !s.keyId) return response;
  if (s.keyId !== sessionKeyId) {
    sessionEnded();
    return response;
  }
  csrfToken = s.csrfToken;
  const headers = new Headers(request.headers);
  headers.set('x-csrf-token', csrfToken);
  return fetch(request.url, { method: request.method, headers, body: bodies.get(request) ?? undefined, credentials: 'same-origin' });
}

const session: Middleware = {
  async onRequest({ request }) {
    if (ended && !isSessionRequest(request)) return endedAnswer();
    // The key this page signed in with: a sign-in with another key in another tab of this browser
    // replaced the cookie, and this page must not read that school's or role's data as its own (401).
    if (sessionKeyId && !isSessionRequest(request)) request.headers.set('x-inkstone-session-key', sessionKeyId);
    if (SAFE.has(request.method)) return request;
    // Sent with its body read whole (not a clone of a stream): the same bytes can be sent again.
    const body = request.body === null ? null : await request.arrayBuffer();
    const sent = new Request(request, { body });
    sent.headers.set('x-csrf-token', csrfToken);
    bodies.set(sent, body);
    return sent;
  },
  async onResponse({ response, request }) {
    let res = response.status === 429 && SAFE.has(request.method) ? await readAgain(request, response) : response;
    if (res.status === 403 && !SAFE.has(request.method)) res = await withFreshToken(request, res);
    if (res.status === 401 && !isSessionRequest(request)) sessionEnded();
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
