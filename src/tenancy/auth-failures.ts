import { Inject, Injectable } from '@nestjs/common';
import { ApiError } from '../common/errors';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG } from '../config/app-config';
import { rateLimited } from './limits.service';

interface Bucket {
  tokens: number;
  at: number;
}

/** At most this many client addresses are remembered (the least recently failing are forgotten first). */
const ADDRESSES_MAX = 100_000;

/**
 * The bucket an address draws from: an IPv4 address (an IPv4-mapped IPv6 one too) is its own, an
 * IPv6 address shares its /64 (one client holds a whole /64, and could change address per request).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!address.includes(':')) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

function bucketKey(address: string, scope?: string): string {
  return scope ? `${scope} ${addressKey(address)}` : addressKey(address);
}

/**
 * Failed authentications by client address, on this instance: each request answered 401 (a key
 * unknown or revoked, a wrong operator token, a forged or ended session, a failed console sign-in)
 * draws one token from its address's bucket (AUTH_FAILURE_BURST, refilled AUTH_FAILURES_PER_MINUTE).
 * While an address's bucket is empty, what it presents is not checked unless it is already known to
 * be good (a key in the auth cache, the operator's token, a session cookie this service signed):
 * the request is answered 429 with Retry-After. So guessing at keys or at the operator's token goes
 * no faster than the refill, and a flood of made-up keys costs the database nothing past the burst,
 * while a caller whose key works is not held back by a neighbour behind the same address. (Before,
 * failures were not counted at all.)
 */
@Injectable()
export class AuthFailures {
  private readonly buckets = new TtlCache<string, Bucket>(60_000, ADDRESSES_MAX);
  private readonly perMs: number;
  private readonly burst: number;

  constructor(@Inject(CONFIG) config: AppConfig) {
    this.perMs = config.authFailures.perMinute / 60_000;
    this.burst = config.authFailures.burst;
  }

  /**
   * The rule in one place: runs `check` (what the request presents, checked) unless the address has
   * no failure left to spend and `knownGood` (no read: a cached key, the operator's token, a cookie
   * this service signed) says no — then the 429. A check that throws UNAUTHENTICATED counts one
   * failure against the address, unless what was presented is known good: a console tab left open
   * on a session since expired or signed out is no guess, and its reads, refused, must not spend the
   * failures of every school behind the same address (a proxy's).
   */
  async guard<T>(address: string, knownGood: () => boolean, check: () => Promise<T>): Promise<T> {
    const refused = this.refusal(address);
    if (refused && !knownGood()) throw refused;
    try {
      return await check();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'UNAUTHENTICATED' && !knownGood()) this.failed(address);
      throw err;
    }
  }

  /**
   * The 429 for the address when it has no failure left to spend (its credentials then go unchecked
   * unless known good); else null. `scope` gives the address a bucket of its own for one kind of
   * request (a school's payment events: a payment provider sends every school's from the same
   * addresses, so one school's wrong secret must not refuse the others').
   */
  refusal(address: string, now = Date.now(), scope?: string): Error | null {
    const b = this.refilled(bucketKey(address, scope), now);
    if (!b || b.tokens >= 1) return null;
    const retryAfterS = Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
    return rateLimited(`Too many failed authentications from this address: try again in ${retryAfterS} s`, retryAfterS, this.burst);
  }

  /** One failed authentication from the address (in `scope`'s bucket, see refusal). */
  failed(address: string, now = Date.now(), scope?: string): void {
    const key = bucketKey(address, scope);
    const b = this.refilled(key, now) ?? { tokens: this.burst, at: now };
    b.tokens = Math.max(0, b.tokens - 1);
    // Kept until it would be full again: a forgotten bucket is the same as a full one.
    this.buckets.set(key, b, Math.ceil((this.burst - b.tokens) / this.perMs) + 1);
  }

  private refilled(address: string, now: number): Bucket | undefined {
    const b = this.buckets.get(address);
    if (!b) return undefined;
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
    b.at = now;
    return b;
  }
}
