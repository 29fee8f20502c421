/**
 * The commercial-value matrix of the article Inkstone started from, exactly as its formula reads:
 *
 *   score = clamp(base[taskType] × tolerance[errorTolerance] × min(frequency / 500, 1.5)
 *                 × (userWillingToPay ? 1.3 : 0.7), 0, 100)
 *
 * The article's printed example scores (86.0, 13.0, 72.8, 37.8) do not follow from this formula;
 * the tests show what the formula gives for the same inputs.
 */
export const TASK_BASE_SCORES: Record<string, number> = {
  content_generation: 80,
  data_extraction: 75,
  code_assistance: 70,
  customer_service: 85,
  data_analysis: 80,
  simple_classification: 60,
  real_time_reasoning: 40,
  high_risk_decision: 20,
  unknown: 50,
};

export const TOLERANCE_FACTORS = { high: 0.5, medium: 1.0, low: 1.3 } as const;
export type ErrorTolerance = keyof typeof TOLERANCE_FACTORS;

export interface BusinessValueInput {
  taskType: string;
  errorTolerance: ErrorTolerance;
  frequency: number;
  userWillingToPay: boolean;
}

export interface BusinessValue {
  task: string;
  score: number;
  suggestion: string;
  details: {
    baseScore: number;
    toleranceFactor: number;
    frequencyFactor: number;
    paymentFactor: number;
    rawScore: number;
    knownTask: boolean;
  };
}

export function suggestionFor(score: number): string {
  if (score >= 70) return 'High commercial value: build it now and charge for it (高价值：优先落地并收费)';
  if (score >= 50) return 'Promising: pilot it with a small group and measure (有潜力：小范围试点并度量)';
  if (score >= 30) return 'Marginal: only with a low-cost model and strong caching (价值一般：仅在低成本模型和强缓存下考虑)';
  return 'Not worth a model call today: use rules or a human (暂不值得：用规则或人工)';
}

export function businessValue(input: BusinessValueInput): BusinessValue {
  // As typed in a form: other case or surrounding spaces name the same task.
  const task = input.taskType.trim().toLowerCase();
  const knownTask = Object.prototype.hasOwnProperty.call(TASK_BASE_SCORES, task);
  const baseScore = knownTask ? TASK_BASE_SCORES[task] : TASK_BASE_SCORES.unknown;
  const toleranceFactor = TOLERANCE_FACTORS[input.errorTolerance];
  const frequencyFactor = Math.min(input.frequency / 500, 1.5);
  const paymentFactor = input.userWillingToPay ? 1.3 : 0.7;
  const rawScore = baseScore * toleranceFactor * frequencyFactor * paymentFactor;
  const score = Math.round(Math.min(100, Math.max(0, rawScore)) * 10) / 10;
  return {
    task: knownTask ? task : 'unknown',
    score,
    suggestion: suggestionFor(score),
    details: {
      baseScore,
      toleranceFactor,
      frequencyFactor: Math.round(frequencyFactor * 10_000) / 10_000,
      paymentFactor,
      rawScore: Math.round(rawScore * 10_000) / 10_000,
      knownTask,
    },
  };
}
