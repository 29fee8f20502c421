import { formatCny, Nanos } from '../common/money';
import type { CatalogModel } from '../llm/catalog';

/**
 * The monthly cost estimate: per model, and for the tier mix (standard for most calls, the premium
 * model for the deep share), with the exact cache answering its share for nothing and provider
 * prefix caches pricing part of the input as cached. Money is exact: rates become basis points.
 */
export interface CostAssumptions {
  dailyCalls: number;
  inputTokens: number;
  outputTokens: number;
  /** share of calls answered by Inkstone's exact cache (cost 0) */
  cacheHitRate: number;
  /** share of calls that are deep reviews on the premium model */
  deepShare: number;
  /** share of input tokens served by the provider's prefix cache */
  cachedInputShare: number;
}

export interface Projection {
  perCall: string;
  daily: string;
  monthly: string;
  yearly: string;
}

const BP = 10_000n;
const bp = (rate: number) => BigInt(Math.round(Math.min(1, Math.max(0, rate)) * 10_000));

/**
 * The cost of one call that reaches the model, in nano-yuan, with the cached share of its input.
 * A model with time-of-day prices is estimated at its highest (DeepSeek's peak): an estimate for a
 * budget should not count on every call landing off-peak.
 */
export function callCost(m: CatalogModel, a: CostAssumptions): Nanos {
  const input = BigInt(a.inputTokens);
  const cached = (input * bp(a.cachedInputShare)) / BP;
  const p = m.ceiling;
  return (input - cached) * p.input + cached * p.cachedInput + BigInt(a.outputTokens) * p.output;
}

/** Daily cost from a per-call cost: calls × (1 − cache hit rate) reach the model. */
function daily(perCall: Nanos, a: CostAssumptions, share: bigint = BP): Nanos {
  return (BigInt(a.dailyCalls) * perCall * share * (BP - bp(a.cacheHitRate))) / (BP * BP);
}

function project(perCall: Nanos, perDay: Nanos): Projection {
  return { perCall: formatCny(perCall), daily: formatCny(perDay), monthly: formatCny(perDay * 30n), yearly: formatCny(perDay * 365n) };
}

/** The estimate: each model on its own, the tier mix (standard, with `deepShare` on the premium model), and the naive all-premium pipeline. */
export interface CostEstimates {
  models: Array<Projection & { model: string; tiers: string[] }>;
  mix: Projection & { standardModel: string; deepModel: string };
  naive: Projection & { model: string };
}

export function estimateCosts(models: Array<{ model: CatalogModel; tiers: string[] }>, standard: CatalogModel, premium: CatalogModel, a: CostAssumptions): CostEstimates {
  const perModel = models.map(({ model, tiers }) => {
    const perCall = callCost(model, a);
    return { model: model.key, tiers, ...project(perCall, daily(perCall, a)) };
  });
  const deepBp = bp(a.deepShare);
  const stdCall = callCost(standard, a);
  const deepCall = callCost(premium, a);
  const mixDaily = daily(stdCall, a, BP - deepBp) + daily(deepCall, a, deepBp);
  const mixPerCall = (stdCall * (BP - deepBp) + deepCall * deepBp) / BP;
  // The naive pipeline: every call on the premium model, no cache, no prefix caching.
  const naive = { ...a, cacheHitRate: 0, cachedInputShare: 0 };
  const naiveCall = callCost(premium, naive);
  return {
    models: perModel,
    mix: { standardModel: standard.key, deepModel: premium.key, ...project(mixPerCall, mixDaily) },
    naive: { model: premium.key, ...project(naiveCall, daily(naiveCall, naive)) },
  };
}
