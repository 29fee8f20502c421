import { lookup as dnsLookup, Resolver } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { Client } from 'undici';
import { AddressVerdict, classifyIp } from './ip-address';

/**
 * Requests Inkstone sends to URLs a tenant chose (budget alerts). Such a URL must not become a way
 * into the network Inkstone runs in, so:
 *  - when it is set, it must be https, without credentials, naming a public host (an IP literal is
 *    classified; a name must be fully qualified and not a private or metadata name);
 *  - when it is used, the host name is resolved, every address it resolves to must be public, and
 *    the connection goes to the vetted address only (the lookup undici's socket makes is answered
 *    with it), while TLS SNI, certificate checks and the Host header keep the host name;
 *  - redirects are not followed, a response body is read to at most a few KiB, and the whole
 *    delivery (DNS, connect, answer) has one deadline.
 * `allowPrivate` (ALLOW_PRIVATE_WEBHOOKS) lets http and private addresses through for on-premise
 * installs and tests; cloud metadata addresses stay refused even then.
 */
export interface OutboundPolicy {
  allowPrivate: boolean;
  /** The deadline of one delivery, from DNS to the last byte read. */
  timeoutMs: number;
  /** How much of a response body is read before the connection is dropped. */
  maxResponseBytes: number;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 4096;
const MAX_URL_LENGTH = 2048;

/** Host names that lead to instance credentials. */
const METADATA_HOSTS = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal', 'metadata.tencentyun.com']);
/** Suffixes that never name a public host (RFC 6761, RFC 8375, ICANN's private-use .internal, mDNS). */
const PRIVATE_SUFFIXES = ['localhost', 'local', 'internal', 'home.arpa', 'lan'];

export interface CheckedUrl {
  url: URL;
  /** The host name without brackets or a trailing dot. */
  host: string;
  /** Set when the URL names an IP address instead of a host name. */
  literal?: AddressVerdict;
}

export type UrlCheck = ({ ok: true } & CheckedUrl) | { ok: false; problem: string };

/** The address and what it is, e.g. "127.0.0.1 (loopback)", when the policy refuses it; null when it may be reached. */
export function addressProblem(v: AddressVerdict, allowPrivate: boolean): string | null {
  if (v.metadata || (v.blocked && !allowPrivate)) return `${v.address} (${v.blocked})`;
  return null;
}

/**
 * Checks a webhook URL without resolving it. `problem` completes the sentence "the URL …" so that
 * callers can name their field: `alertWebhookUrl must use https://`.
 */
export function checkWebhookUrl(text: string, allowPrivate: boolean): UrlCheck {
  if (text.length > MAX_URL_LENGTH) return { ok: false, problem: `must be at most ${MAX_URL_LENGTH} characters long` };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, problem: 'must be an absolute URL such as https://hooks.example.com/inkstone' };
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:')) {
    return { ok: false, problem: allowPrivate ? 'must use https:// or http://' : 'must use https://' };
  }
  if (url.username || url.password) return { ok: false, problem: 'must not contain a user name or password' };
  let host = url.hostname.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (!host) return { ok: false, problem: 'must name a host' };
  const literal = classifyIp(host);
  if (literal) {
    const why = addressProblem(literal, allowPrivate);
    if (why) return { ok: false, problem: `must point to a public address, not ${why}` };
    return { ok: true, url, host, literal };
  }
  if (METADATA_HOSTS.has(host)) return { ok: false, problem: `must not point to a cloud metadata service (${host})` };
  if (!allowPrivate) {
    if (!host.includes('.')) return { ok: false, problem: `must name a fully qualified public host (got "${host}")` };
    const suffix = PRIVATE_SUFFIXES.find((s) => host === s || host.endsWith(`.${s}`));
    if (suffix) return { ok: false, problem: `must name a public host (.${suffix} names are private)` };
  }
  return { ok: true, url, host };
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type LookupFn = (host: string) => Promise<ResolvedAddress[]>;

/** How long one DNS question of a webhook's host waits for a server, and how often it is asked. */
const DNS_TIMEOUT_MS = 1_500;
const DNS_TRIES = 2;

/**
 * The DNS lookups of outbound webhooks, in one replaceable place: tests (and installs with a DNS of
 * their own) set `lookup`. The default asks the DNS servers of the system (or `servers`) for the
 * name's A and AAAA records, IPv4 first, over the event loop's own sockets (c-ares): never the
 * system resolver, whose getaddrinfo holds one of the few threads of libuv's pool until the system
 * gives up — a tenant's URL on a name server that never answers held two for 20 s a check, and
 * every other lookup of the process (new connections to providers and to the database) queued
 * behind them. With ALLOW_PRIVATE_WEBHOOKS (on-premise, tests) a name DNS does not know is looked up
 * in the system's way too (/etc/hosts).
 */
export class HostResolver {
  private readonly dns = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES });

  /** `systemFallback`: ALLOW_PRIVATE_WEBHOOKS (BillingModule provides it so). */
  constructor(private readonly systemFallback = false) {}

  /** Asks these DNS servers ('127.0.0.1:5353') instead of the system's. */
  useServers(servers: string[]): this {
    this.dns.setServers(servers);
    return this;
  }

  lookup: LookupFn = async (host) => {
    const [v4, v6] = await Promise.allSettled([this.dns.resolve4(host), this.dns.resolve6(host)]);
    const found: ResolvedAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 as const })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 as const })) : []),
    ];
    if (found.length > 0) return found;
    // Not after a server that never answered (ETIMEOUT): getaddrinfo would hold a pool thread for
    // as long again. After an unknown name, or no reachable server (/etc/hosts only), it is asked.
    const timedOut = [v4, v6].some((r) => r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code === 'ETIMEOUT');
    if (this.systemFallback && !timedOut) {
      const all = await dnsLookup(host, { all: true, verbatim: true });
      return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
    }
    // (both failed, or the name has no address: the IPv4 question's answer says which)
    if (v4.status === 'rejected') throw v4.reason;
    return [];
  };
}

/** A destination refused by the policy: nothing was sent, and trying again will not help. */
export class DestinationRefusedError extends Error {
  readonly code = 'DESTINATION_REFUSED';

  constructor(message: string) {
    super(message);
    this.name = 'DestinationRefusedError';
  }
}

/**
 * A delivery that did not get a 2xx: a transport error, a timeout or another status. `code` says
 * which, for the log: the socket's own code (ECONNREFUSED, UND_ERR_…), HTTP_<status>, TIMEOUT, DNS.
 */
export class DeliveryFailedError extends Error {
  readonly code: string;

  constructor(
    message: string,
    readonly status?: number,
    code?: string,
  ) {
    super(message);
    this.name = 'DeliveryFailedError';
    this.code = code ?? (status !== undefined ? `HTTP_${status}` : 'DELIVERY_FAILED');
  }
}

export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * Resolves and vets the destination of a webhook (every address), then POSTs to the first vetted
 * address with the host name kept for SNI and Host. Resolves with the status of a 2xx answer;
 * rejects with DestinationRefusedError (nothing was sent) or DeliveryFailedError.
 */
export async function postWebhook(req: WebhookRequest, policy: OutboundPolicy, resolver: Pick<HostResolver, 'lookup'>): Promise<number> {
  const deadline = AbortSignal.timeout(policy.timeoutMs);
  const checked = checkWebhookUrl(req.url, policy.allowPrivate);
  if (!checked.ok) throw new DestinationRefusedError(`the URL ${checked.problem}`);
  const target = checked.literal ? { address: checked.literal.address, family: checked.literal.family } : await vetHost(checked.host, policy.allowPrivate, resolver, deadline);

  const client = new Client(checked.url.origin, {
    connect: { lookup: pinnedLookup(target), timeout: policy.timeoutMs },
    headersTimeout: policy.timeoutMs,
    bodyTimeout: policy.timeoutMs,
    pipelining: 0,
  });
  try {
    const res = await client.request({
      path: `${checked.url.pathname}${checked.url.search}`,
      method: 'POST',
      headers: { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) },
      body: req.body,
      signal: deadline,
    });
    // The status decides. Read a little of the answer (a receiver may stream without end, or
    // stall) within the deadline, then drop the connection.
    let read = 0;
    try {
      for await (const chunk of res.body) {
        read += (chunk as Buffer).length;
        if (read >= policy.maxResponseBytes) break;
      }
    } catch {
      /* a body cut short or stalled: the status is what counts */
    } finally {
      res.body.destroy();
    }
    const status = res.statusCode;
    if (status >= 300 && status < 400) throw new DeliveryFailedError(`HTTP ${status} (redirects are not followed)`, status);
    if (status < 200 || status >= 300) throw new DeliveryFailedError(`HTTP ${status}`, status);
    return status;
  } catch (err) {
    if (err instanceof DeliveryFailedError) throw err;
    if (deadline.aborted) throw new DeliveryFailedError(`no answer within ${policy.timeoutMs} ms`, undefined, 'TIMEOUT');
    const e = err as NodeJS.ErrnoException;
    throw new DeliveryFailedError(`${e.code ? `${e.code}: ` : ''}${e.message}`.slice(0, 300), undefined, e.code);
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

/**
 * Resolves a host name and checks every address it has; returns the first one. Rejects with
 * DestinationRefusedError when any address is refused, DeliveryFailedError when it cannot be
 * resolved before the deadline.
 */
export async function vetHost(host: string, allowPrivate: boolean, resolver: Pick<HostResolver, 'lookup'>, deadline: AbortSignal): Promise<ResolvedAddress> {
  let addresses: ResolvedAddress[];
  try {
    addresses = await abortable(resolver.lookup(host), deadline);
  } catch (err) {
    if (deadline.aborted) throw new DeliveryFailedError(`could not resolve ${host} in time`, undefined, 'TIMEOUT');
    throw new DeliveryFailedError(`could not resolve ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, undefined, 'DNS');
  }
  if (addresses.length === 0) throw new DeliveryFailedError(`${host} has no address`, undefined, 'DNS');
  let first: ResolvedAddress | undefined;
  for (const a of addresses) {
    const v = classifyIp(a.address);
    if (!v) throw new DestinationRefusedError(`${host} resolved to something that is not an IP address`);
    const why = addressProblem(v, allowPrivate);
    if (why) throw new DestinationRefusedError(`${host} resolved to ${why}, which is not a public address`);
    first ??= { address: v.address, family: v.family };
  }
  return first!;
}

/** A `lookup` for net/tls.connect that answers every question with the one vetted address. */
export function pinnedLookup(target: ResolvedAddress): LookupFunction {
  return (_host, opts, cb) => {
    if (opts?.all) (cb as unknown as (err: null, all: LookupAddress[]) => void)(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  };
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
