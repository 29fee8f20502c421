import type { Nanos } from '../common/money';
import type { CatalogModel, Pricing } from './catalog';
import { inSchedule } from './price-schedule';
import type { Usage } from './types';

/**
 * The exact cost of a call from its usage: uncached input, cached input and output, each at its
 * own catalog price. Integer nano-yuan, no rounding.
 */
export function costOf(usage: Usage, pricing: Pricing): Nanos {
  const cached = BigInt(Math.min(usage.cachedInputTokens, usage.inputTokens));
  const uncached = BigInt(usage.inputTokens) - cached;
  return uncached * pricing.input + cached * pricing.cachedInput + BigInt(usage.outputTokens) * pricing.output;
}

/** The most a call can cost: every input token uncached, and the full output allowance used. */
export function worstCaseCost(estimatedInputTokens: number, maxOutputTokens: number, pricing: Pricing): Nanos {
  return BigInt(estimatedInputTokens) * pricing.input + BigInt(maxOutputTokens) * pricing.output;
}

export interface PriceAt {
  pricing: Pricing;
  /** the time-of-day window the price came from; null for the model's base (or batch) price */
  window: string | null;
}

/**
 * The price of a call that starts at `at`: the batch price for a call through the Batch API,
 * else the first window whose schedule holds, else the base price. A call is priced by the
 * window in which it was sent.
 */
export function priceAt(model: CatalogModel, at: Date, batch = false): PriceAt {
  if (batch && model.batchPricing) return { pricing: model.batchPricing, window: null };
  for (const w of model.windows) {
    if (inSchedule(w.schedule, at)) return { pricing: w.pricing, window: w.name };
  }
  return { pricing: model.pricing, window: null };
}
