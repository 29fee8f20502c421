import { csvTable } from '../common/csv';
import { formatCny, Nanos } from '../common/money';
import { ratio } from '../billing/budget-view';

/** Ledger rows of a month, summed by purpose, tier, model and batch (ReportsRepository.ledgerGroups). */
export interface LedgerGroup {
  purpose: string;
  batch: boolean;
  tier: string | null;
  provider: string | null;
  model: string | null;
  /** answered calls (outcome ok) */
  gradings: number;
  hits: number;
  calls: number;
  cost: Nanos;
  saved: Nanos;
  compressionTokens: number;
  /** what scheduled calls cost less than in real time when their work was submitted (ledger schedule_saved_nanos) */
  scheduleSaved: Nanos;
  /** tokens and cost of the answered calls a provider was paid for (not cache hits) */
  uncachedIn: bigint;
  cachedIn: bigint;
  out: bigint;
  paidCost: Nanos;
}

/** Deep-review orders in the month (ReportsRepository.orders). */
export interface OrdersInMonth {
  ordered: number;
  sold: number;
  delivered: number;
  refunded: number;
  /** the prices of the orders paid in the month */
  sales: Nanos;
  /** what refunds gave back in the month (whenever the orders were paid): whole refunds, less what partial ones gave back before, and partial ones */
  refunds: Nanos;
}

/** A model's lowest real-time prices, nano-yuan per token. */
export interface FloorPrices {
  input: Nanos;
  cachedInput: Nanos;
  output: Nanos;
}

export interface MonthReportInput {
  period: string;
  timezone: string;
  groups: LedgerGroup[];
  orders: OrdersInMonth;
  /** essays graded by the offline grader in the month */
  offline: number;
  /** a model's floor prices by catalog key ("provider:model") */
  floorOf: (key: string) => FloorPrices | undefined;
  /** the deep tier's first model: what routing's savings are measured against */
  premium: { key: string; floor: FloorPrices } | null;
}

export interface MonthReport {
  period: string;
  timezone: string;
  gradings: { total: number; standard: number; deep: number; offline: number; fromCache: number };
  deepReviews: { ordered: number; sold: number; delivered: number; refunded: number };
  modelCost: string;
  modelCostByPurpose: Record<string, string>;
  /** what the month's refunds gave back, partial ones included (orders paid in this month or before) */
  refunds: string;
  /** the month's sales less its refunds: negative when more came back than was sold */
  revenue: string;
  margin: string;
  deepReviewMargin: string;
  costPerGrading: string;
  cacheHitRate: string;
  savedByCache: string;
  savedByCompression: string;
  compressionTokensSaved: number;
  savedByRouting: string;
  routingBaseline: string | null;
  savedByBatch: string;
  /** what work with a deadline saved by running in an off-peak window instead of when it was submitted (batched calls: savedByBatch) */
  savedByScheduling: string;
  ledgerCalls: number;
}

/** The calls that are gradings (counted as such): standard gradings and deep reviews. */
const isGrading = (g: LedgerGroup) => g.purpose === 'grading' || g.purpose === 'deep_review';
/** The calls spent on grading essays: gradings, and the re-gradings and shadow gradings that check them (not counted as gradings). */
const isGradingCost = (g: LedgerGroup) => isGrading(g) || g.purpose === 'escalation' || g.purpose === 'shadow';
const keyOf = (g: LedgerGroup) => (g.provider && g.model ? `${g.provider}:${g.model}` : null);
/** What the paid tokens of a group would have cost at these prices. */
const at = (g: LedgerGroup, p: FloorPrices) => g.uncachedIn * p.input + g.cachedIn * p.cachedInput + g.out * p.output;

/**
 * The month's business from its ledger groups and orders, so every figure adds up to them to the
 * last nano-yuan: gradings by tier, deep reviews sold, model cost, revenue, margin, cost per
 * grading, cache hit rate, and what the cache, compression, routing, batching and scheduling saved.
 * Savings are claimed at each model's lowest real-time price (off-peak where it has windows): never
 * more than was really saved. Scheduling's are the real-time calls that waited for an off-peak
 * window, against the price when their work was submitted; a scheduled call that ran in a provider
 * batch is claimed once, in savedByBatch (against the lowest real-time price, so what waiting saved
 * beyond it is not claimed).
 */
export function monthReport(input: MonthReportInput): MonthReport {
  const { groups, orders, offline, floorOf, premium } = input;
  const sum = (f: (g: LedgerGroup) => bigint, keep: (g: LedgerGroup) => boolean = () => true) => groups.filter(keep).reduce((a, g) => a + f(g), 0n);
  const count = (f: (g: LedgerGroup) => number, keep: (g: LedgerGroup) => boolean = () => true) => groups.filter(keep).reduce((a, g) => a + f(g), 0);
  const floor = (g: LedgerGroup) => {
    const key = keyOf(g);
    return key ? floorOf(key) : undefined;
  };

  const modelCost = sum((g) => g.cost);
  const gradingCost = sum((g) => g.cost, isGradingCost);
  const deepCost = sum((g) => g.cost, (g) => g.purpose === 'deep_review');
  const standard = count((g) => g.gradings, (g) => isGrading(g) && g.tier === 'standard');
  const deep = count((g) => g.gradings, (g) => isGrading(g) && g.tier === 'deep');
  const modelGradings = standard + deep;
  const all = modelGradings + offline;
  const hits = count((g) => g.hits, isGrading);

  // Compression: tokens saved at each model's (uncached) input price.
  const savedByCompression = sum((g) => BigInt(g.compressionTokens) * (floor(g)?.input ?? 0n));
  // Routing: what the standard gradings would have cost on the deep tier's first model, against what
  // they cost on theirs in real time when their work was submitted: a batched grading's batch
  // discount is batching's saving, and a scheduled one's off-peak discount scheduling's, claimed
  // below (measured against what was paid, each was claimed twice: routing and it together more
  // than the premium price less what was paid).
  const realTimeCost = (g: LedgerGroup) => {
    const p = g.batch ? floor(g) : undefined;
    return p ? at(g, p) : g.paidCost + (g.scheduleSaved > 0n ? g.scheduleSaved : 0n);
  };
  const savedByRouting = premium ? sum((g) => at(g, premium.floor) - realTimeCost(g), (g) => isGrading(g) && g.tier === 'standard') : 0n;
  // Batch: what the batched calls would have cost at the model's real-time prices.
  const savedByBatch = sum((g) => {
    const p = floor(g);
    return p ? at(g, p) - g.paidCost : 0n;
  }, (g) => g.batch);
  // Scheduling: the off-peak windows' savings of the calls not batched (a batched call is counted above).
  const savedByScheduling = sum((g) => g.scheduleSaved, (g) => !g.batch);
  const atLeastZero = (n: Nanos) => (n > 0n ? n : 0n);
  const revenue = orders.sales - orders.refunds;

  return {
    period: input.period,
    timezone: input.timezone,
    gradings: { total: all, standard, deep, offline, fromCache: hits },
    deepReviews: { ordered: orders.ordered, sold: orders.sold, delivered: orders.delivered, refunded: orders.refunded },
    modelCost: formatCny(modelCost),
    modelCostByPurpose: Object.fromEntries(['grading', 'deep_review', 'escalation', 'shadow', 'chat'].map((p) => [p, formatCny(sum((g) => g.cost, (g) => g.purpose === p))])),
    refunds: formatCny(orders.refunds),
    revenue: formatCny(revenue),
    margin: formatCny(revenue - modelCost),
    deepReviewMargin: formatCny(revenue - deepCost),
    costPerGrading: all ? formatCny(gradingCost / BigInt(all)) : '0.00',
    cacheHitRate: modelGradings ? ratio(BigInt(hits), BigInt(modelGradings)) : '0.0000',
    savedByCache: formatCny(sum((g) => g.saved)),
    savedByCompression: formatCny(savedByCompression),
    compressionTokensSaved: count((g) => g.compressionTokens),
    savedByRouting: formatCny(atLeastZero(savedByRouting)),
    routingBaseline: premium ? premium.key : null,
    savedByBatch: formatCny(atLeastZero(savedByBatch)),
    savedByScheduling: formatCny(atLeastZero(savedByScheduling)),
    ledgerCalls: count((g) => g.calls),
  };
}

/**
 * The month's report as CSV for Excel (src/common/csv.ts): one row per figure, its dotted name and
 * its value as the API gives it (money as CNY decimal strings, never rounded).
 */
export function monthReportCsv(report: MonthReport): string {
  const rows: Array<[string, string | number | null]> = [];
  const walk = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else rows.push([prefix, value as string | number | null]);
  };
  walk('', report);
  return csvTable(['figure', 'value'], rows);
}
