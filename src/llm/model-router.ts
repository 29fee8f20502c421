import type { Clock } from '../common/clock';
import type { Nanos } from '../common/money';
import { CatalogModel, isRetired, retiredMessage, takesCall, Tier, TierPlan, TokenizerProfile } from './catalog';
import { GatewayError, GatewayTarget } from './gateway-types';
import type { LlmModels } from './llm-models';
import { worstCaseCost } from './pricing';
import { estimatePromptTokens } from './tokens';
import { planWork, WorkPlan } from './work-planner';
import { ADAPTERS } from './providers';
import type { ChatMessage } from './types';

/** A configured model this close to retirement is warned about at start and on /health. */
export const RETIREMENT_WARNING_DAYS = 30;
/** fit(): tokens kept free for what joins the added text to the prompt, and the least room ever answered. */
const FIT_MARGIN_TOKENS = 64;
const FIT_FLOOR_TOKENS = 200;

/**
 * The gateway's routing, token bounds and prices: which models a request may try and in what
 * order, what a prompt could cost at most (quote), and how much text a prompt leaves room for (fit).
 * Nothing outside the gateway computes these.
 */
export class ModelRouter {
  constructor(
    private readonly models: LlmModels,
    private readonly clock: Clock,
    private readonly defaultMaxTokens: number,
  ) {}

  /** Is any provider configured for this tier? (With none, grading uses the offline grader.) */
  hasProviders(tier: Tier): boolean {
    return this.models.tiers[tier].length > 0;
  }

  /** The models a request may try, in the order it will try them (`prefer` first, when it is one). */
  candidates(target: GatewayTarget, exclude: string[] = [], prefer?: string): CatalogModel[] {
    const out = this.groups(target, exclude).flat();
    const i = prefer ? out.findIndex((m) => m.key === prefer) : -1;
    return i > 0 ? [out[i], ...out.slice(0, i), ...out.slice(i + 1)] : out;
  }

  /** The priority groups of a target, each in weighted random order, without `exclude` and retired models. */
  private groups(target: GatewayTarget, exclude: string[] = []): CatalogModel[][] {
    let plan: TierPlan;
    const now = this.clock.now();
    if ('tier' in target) {
      plan = this.models.tiers[target.tier];
    } else {
      const model = this.models.catalog.find(target.model);
      if (model && isRetired(model, now)) throw new GatewayError('MODEL_NOT_FOUND', retiredMessage(model));
      if (!model || !this.models.providers.has(model.provider)) {
        throw new GatewayError('MODEL_NOT_FOUND', `model "${target.model}" is not in the catalog or its provider has no API key`);
      }
      plan = [[{ model, weight: 1 }]];
    }
    const out: CatalogModel[][] = [];
    for (const group of plan) {
      // A model that retired while this process ran is skipped (its start-up check passed).
      const live = group.filter((e) => !isRetired(e.model, now));
      // Weighted random order within a priority group (Efraimidis–Spirakis).
      const keyed = live.map((e) => ({ m: e.model, k: Math.random() ** (1 / e.weight) }));
      keyed.sort((a, b) => b.k - a.k);
      out.push(keyed.map(({ m }) => m).filter((m) => !exclude.includes(m.key)));
    }
    return out;
  }

  /**
   * What a call could cost at most on this target: the smallest worst case (prompt bound plus the
   * full output allowance, at the model's highest price) among the models that could take it,
   * exactly as admission reserves it. Null when no model could (none configured, or the prompt
   * fits no model's window).
   */
  quote(target: GatewayTarget, messages: ChatMessage[], maxTokens: number): Nanos | null {
    let best: Nanos | null = null;
    for (const model of this.candidates(target)) {
      const b = this.bound(model, messages, maxTokens);
      if (!b.fits) continue; // admission would skip it
      const cost = worstCaseCost(b.estimate, b.maxTokens, model.ceiling);
      if (best === null || cost < best) best = cost;
    }
    return best;
  }

  /**
   * How many tokens of text may be added to `messages` (the prompt without its variable part) and
   * still fit a model of the target: the most any candidate takes, in that model's tokenizer, so
   * a text cut to it is cut for the model that will take it (admission skips the smaller ones).
   * Null when no model is configured.
   */
  fit(target: GatewayTarget, messages: ChatMessage[], maxTokens: number): { tokens: number; tokenizer: TokenizerProfile; model: string } | null {
    let best: { tokens: number; tokenizer: TokenizerProfile; model: string } | null = null;
    for (const model of this.candidates(target)) {
      const b = this.bound(model, messages, maxTokens);
      const window = Math.min(model.contextWindow - b.maxTokens, model.maxInputTokens);
      const tokens = Math.max(FIT_FLOOR_TOKENS, window - b.estimate - FIT_MARGIN_TOKENS);
      if (!best || tokens > best.tokens) best = { tokens, tokenizer: model.tokenizer, model: model.key };
    }
    return best;
  }

  /**
   * When work due by `dueBy` should run (see planWork), for this prompt's admission bound: the
   * cheapest plan among the models of the first priority group that can take it and are `usable`
   * (their breakers closed; all of them when none is), which the call is then sent to first
   * (GatewayRequest.prefer). Planned on whichever model came first, a job waited two hours for
   * DeepSeek's discount, then ran on another model at its full price. Null when no model could.
   */
  plan(
    target: GatewayTarget,
    messages: ChatMessage[],
    maxTokens: number,
    dueBy: Date,
    timing: { batchTurnaroundMs: number; marginMs: number },
    usable: (model: CatalogModel) => boolean = () => true,
  ): WorkPlan | null {
    const now = this.clock.now();
    for (const group of this.groups(target)) {
      // (each model's bound estimated once: it tokenizes the whole prompt)
      const fitting = group.map((model) => ({ model, b: this.bound(model, messages, maxTokens) })).filter((f) => f.b.fits);
      if (fitting.length === 0) continue;
      const pool = fitting.some((f) => usable(f.model)) ? fitting.filter((f) => usable(f.model)) : fitting;
      let best: WorkPlan | null = null;
      for (const { model, b } of pool) {
        const p = planWork({ model, now, dueBy, inputTokens: b.estimate, outputTokens: b.maxTokens, ...timing });
        if (!best || cheaperPlan(p, best, timing.batchTurnaroundMs)) best = p;
      }
      return best;
    }
    return null;
  }

  /** The admission bound of a prompt on a model: its token estimate, the output allowance, and whether both fit. */
  bound(model: CatalogModel, messages: ChatMessage[], maxTokens: number | undefined, jsonMode?: boolean): { estimate: number; maxTokens: number; fits: boolean } {
    // On the messages as the provider gets them (an adapter may add to them: DashScope's JSON word).
    const estimate = estimatePromptTokens(ADAPTERS[model.dialect].sentMessages?.(model, messages, jsonMode) ?? messages, model.tokenizer);
    const allowed = Math.min(maxTokens ?? this.defaultMaxTokens, model.maxOutputTokens);
    return { estimate, maxTokens: allowed, fits: takesCall(model, estimate, allowed) };
  }

  /**
   * What an operator should act on in the catalog: configured models that retire within 30 days,
   * holiday calendars that end before today (their schedules then treat holidays as working days),
   * and a tier none of whose models' providers has an API key while some provider has one.
   */
  catalogWarnings(): string[] {
    const llm = this.models;
    const now = this.clock.now();
    const out: string[] = [];
    for (const r of llm.catalog.retirements(now, RETIREMENT_WARNING_DAYS, llm.tiers)) {
      if (r.tiers.length === 0 || r.daysLeft <= 0) continue;
      const instead = r.replacement ? `; replace it with ${r.replacement}` : '';
      out.push(`${r.model} (tier ${r.tiers.join(', ')}) retires on ${r.retiresOn}, in ${r.daysLeft} day${r.daysLeft === 1 ? '' : 's'}${instead}`);
    }
    for (const c of llm.catalog.staleCalendars(now)) {
      out.push(`holiday calendar "${c}" ends before today: add this year's holidays to the catalog (until then, holidays are priced as working days)`);
    }
    // Some provider has a key, but none of a tier's models' (a key forgotten): the service runs,
    // and without this said nowhere, every standard grade was an offline estimate or every deep review failed.
    if (llm.providers.size > 0) {
      for (const tier of ['standard', 'deep'] as const) {
        if (llm.tiers[tier].length > 0) continue;
        const what = tier === 'standard' ? 'every essay is graded offline and standard chat calls answer 503' : 'deep reviews and escalations fail and deep chat calls answer 503';
        out.push(`tier ${tier} has no model whose provider has an API key: ${what}; set the key of one of its models' providers, or name other models`);
      }
    }
    return out;
  }

}

/**
 * Is plan `a` better than `b`: cheaper, or as cheap and done sooner (no wait for no saving; a batch
 * is done a turnaround after it starts)?
 */
export function cheaperPlan(a: WorkPlan, b: WorkPlan, batchTurnaroundMs: number): boolean {
  if (a.expectedNanos !== b.expectedNanos) return a.expectedNanos < b.expectedNanos;
  const done = (p: WorkPlan) => p.startAt.getTime() + (p.mode === 'batch' ? batchTurnaroundMs : 0);
  return done(a) < done(b);
}
