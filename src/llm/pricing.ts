import type { Nanos } from '../common/money';
import type { Pricing } from './catalog';
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
