/**
 * An open-loop load: requests sent on a fixed schedule (one every 1/rate s, whether or not earlier
 * ones have answered) over a pool of `connections` keep-alive connections, each request's latency
 * counted from the moment it was due, not from when a connection was free to send it. A closed
 * loop (autocannon's default) measures mostly the queue its own clients build; autocannon's
 * `overallRate` sends each second's quota in a burst at the start of the second and then corrects
 * for coordinated omission with a 1 ms expected interval, which adds synthetic samples to every
 * answer slower than 1 ms. Neither says what a gateway adds at a load it can carry; this does.
 */
import { Pool } from 'undici';

export interface OpenLoopOptions {
  url: string;
  path: string;
  /** the headers of every request, or of the i-th (e.g. the next of many tenants' keys) */
  headers: Record<string, string> | ((i: number) => Record<string, string>);
  /** the body of the i-th request */
  body: (i: number) => string;
  /** requests a second, spread evenly */
  rate: number;
  durationS: number;
  connections: number;
  /** each 2xx answer: when it was due (ms after the run's start) and its latency */
  onAnswer?: (dueMs: number, latencyMs: number) => void;
  /**
   * Seconds of the same load on the same connections before the measured run, not counted (default
   * 0): the run then starts on open keep-alive connections, as a client in steady state would,
   * instead of opening its connections in its first second.
   */
  warmUpS?: number;
}

/**
 * Slow answers (over `overMs`, 20 by default) by 100 ms window of when they were due: a few dense
 * windows are pauses of the server (a collection, a recompile after a quiet spell), slow answers
 * spread evenly are queueing. Pass `onAnswer` to openLoop; `summary()` reads "0.5: 80, 2.7: 12"
 * (seconds after the run's start: count), or "none".
 */
export function slowWindows(overMs = 20): { onAnswer: (dueMs: number, latencyMs: number) => void; summary: () => string } {
  const slow = new Map<number, number>();
  return {
    onAnswer: (dueMs, ms) => {
      if (ms <= overMs) return;
      const w = Math.floor(dueMs / 100);
      slow.set(w, (slow.get(w) ?? 0) + 1);
    },
    summary: () => [...slow].map(([w, n]) => `${(w / 10).toFixed(1)}: ${n}`).join(', ') || 'none',
  };
}

export interface OpenLoopResult {
  sent: number;
  /** answered 2xx within the run and its drain */
  ok: number;
  non2xx: number;
  errors: number;
  /** answered requests a second over the scheduled duration */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * One chat completion from each of `keys` (each its tenant's), `rate` a second at 50 connections: the
 * tenants are then active (budget period, settings, lease), as after bench:peers' warm-up pass.
 */
export async function oneCallFromEach(serviceUrl: string, keys: string[], body: (i: number) => string, rate: number): Promise<void> {
  if (!keys.length) return;
  await openLoop({ url: serviceUrl, path: '/v1/chat/completions', headers: (i) => ({ authorization: `Bearer ${keys[i % keys.length]}` }), body, rate, durationS: keys.length / rate, connections: 50 });
}

function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** A run's figures; with `warmUpS`, the warm-up's own beside them (`warmUp`: the connections opened in it). */
export type OpenLoopRun = OpenLoopResult & { warmUp?: OpenLoopResult };

export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopRun> {
  const pool = new Pool(o.url, { connections: o.connections, pipelining: 1 });
  try {
    if (!o.warmUpS) return await schedule(pool, o);
    const warmUp = await schedule(pool, { ...o, durationS: o.warmUpS, onAnswer: undefined });
    return { ...(await schedule(pool, o)), warmUp };
  } finally {
    await pool.close();
  }
}

async function schedule(pool: Pool, o: OpenLoopOptions): Promise<OpenLoopResult> {
  const total = Math.round(o.rate * o.durationS);
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const inFlight: Array<Promise<void>> = [];
  const send = (i: number, due: number) =>
    pool
      .request({ path: o.path, method: 'POST', headers: { 'content-type': 'application/json', ...(typeof o.headers === 'function' ? o.headers(i) : o.headers) }, body: o.body(i) })
      .then(async (res) => {
        await res.body.dump();
        const ms = performance.now() - due;
        if (res.statusCode >= 200 && res.statusCode < 300) {
          latencies.push(ms);
          o.onAnswer?.(due - start, ms);
        } else non2xx++;
      })
      .catch(() => {
        errors++;
      });
  const start = performance.now() + 5;
  let next = 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      // Every request whose time has come (a late timer sends the overdue ones at once; their
      // latency still counts from when each was due).
      while (next < total && start + (next * 1000) / o.rate <= now) {
        inFlight.push(send(next, start + (next * 1000) / o.rate));
        next++;
      }
      if (next >= total) return done();
      setTimeout(tick, Math.max(0, start + (next * 1000) / o.rate - performance.now()));
    };
    setTimeout(tick, 5);
  });
  await Promise.all(inFlight);
  latencies.sort((a, b) => a - b);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return {
    sent: total,
    ok: latencies.length,
    non2xx,
    errors,
    perSecond: Math.round(latencies.length / o.durationS),
    p50Ms: round(percentile(latencies, 0.5)),
    p99Ms: round(percentile(latencies, 0.99)),
    maxMs: round(latencies[latencies.length - 1] ?? 0),
  };
}
