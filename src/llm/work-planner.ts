import type { Nanos } from '../common/money';
import type { CatalogModel, Pricing } from './catalog';
import { costOf, priceAt } from './pricing';

/**
 * When work with a deadline runs (SPEC §4 prices by window, issue 14 "off-peak scheduling"): now in
 * real time, now through the provider's Batch API, or later in a cheaper time-of-day window, such
 * that the deadline is always kept:
 *  - a later window is chosen only if it starts at least `marginMs` before the deadline (time for
 *    the call, its retries and a fallback to the next model, in real time);
 *  - the Batch API only if its whole turnaround (`batchTurnaroundMs`, what the provider promises:
 *    24 hours) plus that margin ends before the deadline, so a batch that takes its full time, or
 *    fails and is re-sent in real time, still finishes in time.
 * Among those, the cheapest for this call's expected tokens; on a tie, the one that is sure to
 * finish first (real time now before anything else). Work whose deadline is too close runs now.
 */
export type PlanMode = 'now' | 'batch' | 'off_peak';

export interface WorkPlan {
  mode: PlanMode;
  /** when the work should start (now, or the start of the cheaper window) */
  startAt: Date;
  /** the model the plan priced: the call goes to it first (GatewayRequest.prefer) */
  model: string;
  /** the time-of-day price window the call is expected to run in (null: the model's base price, or batch) */
  window: string | null;
  /** the call's expected cost on this plan, and run in real time now */
  expectedNanos: Nanos;
  nowNanos: Nanos;
  /** the moment the plan was made for */
  plannedAt: Date;
}

export interface PlanInput {
  model: CatalogModel;
  now: Date;
  dueBy: Date;
  /** the call's expected tokens: what the prices are compared on */
  inputTokens: number;
  outputTokens: number;
  batchTurnaroundMs: number;
  marginMs: number;
}

/** Windows are looked for on this grid (whole 5 minutes of the clock) and their exact start found to the minute. */
const STEP_MS = 5 * 60_000;
/** No plan looks further ahead than this (a week holds every weekly window). */
const HORIZON_MS = 8 * 86_400_000;

/**
 * A model's price at a moment is the same for every job that asks: remembered per model and moment
 * (the grid is the clock's, so jobs share it), so a class set's plans cost a map lookup per grid point
 * instead of a time-zone conversion each. Bounded: emptied when it grows past this many moments.
 */
const PRICE_MEMO_MAX = 200_000;
const priceMemo = new Map<string, Pricing>();

function priceOf(model: CatalogModel, t: number): Pricing {
  const key = `${model.key}@${t}`;
  let pricing = priceMemo.get(key);
  if (!pricing) {
    if (priceMemo.size >= PRICE_MEMO_MAX) priceMemo.clear();
    pricing = priceAt(model, new Date(t)).pricing;
    priceMemo.set(key, pricing);
  }
  return pricing;
}

export function planWork(p: PlanInput): WorkPlan {
  const cost = (pricing: Pricing) => costOf({ inputTokens: p.inputTokens, cachedInputTokens: 0, outputTokens: p.outputTokens }, pricing);
  const costAt = (t: number) => cost(priceOf(p.model, t));
  const now = p.now.getTime();
  const nowPrice = priceAt(p.model, p.now);
  const nowNanos = cost(nowPrice.pricing);
  let best: WorkPlan = { mode: 'now', startAt: p.now, model: p.model.key, window: nowPrice.window, expectedNanos: nowNanos, nowNanos, plannedAt: p.now };
  const latestStart = Math.min(p.dueBy.getTime() - p.marginMs, now + HORIZON_MS);
  if (latestStart <= now) return best;

  // A later, cheaper window: walk the grid; where the price drops, find the minute it drops at.
  let previous = now;
  for (let t = (Math.floor(now / STEP_MS) + 1) * STEP_MS; t <= latestStart; previous = t, t += STEP_MS) {
    const c = costAt(t);
    if (c >= best.expectedNanos) continue;
    // The point before cost more (at least the best so far): the drop is in between.
    let lo = previous;
    let hi = t;
    while (hi - lo > 60_000) {
      const mid = lo + Math.max(1, Math.floor((hi - lo) / 120_000)) * 60_000; // a whole minute on at least: it ends
      if (costAt(mid) <= c) hi = mid;
      else lo = mid;
    }
    // Windows open on a whole minute: the first moment of that minute is inside it.
    const minute = Math.floor(hi / 60_000) * 60_000;
    const start = minute > lo && costAt(minute) === c ? minute : hi;
    best = { mode: 'off_peak', startAt: new Date(start), model: p.model.key, window: priceAt(p.model, new Date(start)).window, expectedNanos: c, nowNanos, plannedAt: p.now };
  }

  // The Batch API: its price now, if its whole turnaround fits before the deadline's margin.
  if (p.model.batchPricing && now + p.batchTurnaroundMs <= latestStart) {
    const c = cost(p.model.batchPricing);
    // On a tie with a later window, the batch (sent now) is sure to finish first only if its
    // turnaround ends before that window opens.
    const better = c < best.expectedNanos || (c === best.expectedNanos && best.mode === 'off_peak' && now + p.batchTurnaroundMs <= best.startAt.getTime());
    if (better) best = { mode: 'batch', startAt: p.now, model: p.model.key, window: null, expectedNanos: c, nowNanos, plannedAt: p.now };
  }
  return best;
}
