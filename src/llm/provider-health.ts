import type { CatalogModel } from './catalog';
import { CircuitBreaker } from './circuit-breaker';
import type { ProviderError } from './types';

/** What a failed attempt means for the next step: the same model again, or the next candidate. */
export type AfterFailure = 'may_retry' | 'next' | 'refused';

/**
 * The health of models and providers, as breakers: a model that keeps failing cools down; a
 * provider that is down is taken out until a probe succeeds. The gateway asks before each
 * candidate and reports every outcome here.
 */
export class ProviderHealth {
  models: CircuitBreaker;
  providers: CircuitBreaker;

  constructor(private readonly opts: { breakerFailures: number; breakerCooldownMs: number; providerProbeMs: number }) {
    this.models = new CircuitBreaker(opts.breakerFailures, opts.breakerCooldownMs);
    this.providers = new CircuitBreaker(1, opts.providerProbeMs);
  }

  /** Forgets every breaker's state: all models and providers are in again. */
  reset(): void {
    this.models = new CircuitBreaker(this.opts.breakerFailures, this.opts.breakerCooldownMs);
    this.providers = new CircuitBreaker(1, this.opts.providerProbeMs);
  }

  /** Is the model's provider in and its breaker letting calls (or a probe) through? */
  allow(model: CatalogModel): boolean {
    if (!this.providers.allow(model.provider)) return false;
    if (!this.models.allow(model.key)) {
      this.providers.abandon(model.provider);
      return false;
    }
    return true;
  }

  /** How long until the model may be tried again (its provider's and its own breaker): 0 now. */
  reopensInMs(model: CatalogModel): number {
    return Math.max(this.providers.reopensInMs(model.provider), this.models.reopensInMs(model.key));
  }

  /** The model answered (even an answer that failed validation: the provider works). */
  answered(model: CatalogModel): void {
    this.models.success(model.key);
    this.providers.success(model.provider);
  }

  /** The attempt was not made (no budget, the prompt does not fit): a probe slot is given back. */
  notTried(model: CatalogModel): void {
    this.models.abandon(model.key);
    this.providers.abandon(model.provider);
  }

  /**
   * A stream that broke off after its first token. One cut by LLM_TOTAL_TIMEOUT_MS while its tokens
   * still came is no failure of the model: one tenant's long answers ("write forever", a large
   * max_tokens) ending together opened the model's breaker for every tenant.
   */
  broke(model: CatalogModel, e: ProviderError): void {
    if (e.errorClass === 'retryable' && e.reason !== 'total_timeout') this.models.failure(model.key);
  }

  /**
   * A failed attempt: a retryable error counts against the model (which may be retried while its
   * breaker is closed); a provider that is down is taken out; a refusal (content filter, context,
   * bad request) means the model works and refused this request.
   */
  failed(model: CatalogModel, e: ProviderError): AfterFailure {
    switch (e.errorClass) {
      case 'retryable':
        this.models.failure(model.key);
        this.providers.success(model.provider);
        return this.models.state(model.key) === 'closed' ? 'may_retry' : 'next';
      case 'provider_down':
        this.providers.trip(model.provider);
        this.models.abandon(model.key);
        return 'next';
      default:
        this.answered(model);
        return 'refused';
    }
  }
}
