import { Injectable } from '@nestjs/common';
import { Counter } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';
import type { CatalogModel } from './catalog';
import type { Usage } from './types';

/** The gateway's Prometheus series: spend, tokens, cache hits and provider errors by class. */
@Injectable()
export class GatewayMetrics {
  private readonly errors: Counter<'provider' | 'class' | 'reason'>;
  private readonly hits: Counter<'purpose'>;
  private readonly spendNanos: Counter<'tenant' | 'provider' | 'model'>;
  private readonly tokens: Counter<'provider' | 'model' | 'kind'>;

  constructor(private readonly metrics: MetricsService) {
    const registers = [metrics.registry];
    this.errors = new Counter({ name: 'inkstone_llm_provider_errors_total', help: 'Failed model calls by provider and error class', labelNames: ['provider', 'class', 'reason'], registers });
    this.hits = new Counter({ name: 'inkstone_llm_cache_hits_total', help: 'Answers served from the exact cache', labelNames: ['purpose'], registers });
    this.spendNanos = new Counter({ name: 'inkstone_llm_spend_nanoyuan_total', help: 'Model spend in 1e-9 CNY', labelNames: ['tenant', 'provider', 'model'], registers });
    this.tokens = new Counter({ name: 'inkstone_llm_tokens_total', help: 'Tokens billed by kind (input, cached_input, output)', labelNames: ['provider', 'model', 'kind'], registers });
  }

  providerError(provider: string, errorClass: string, reason: string): void {
    this.errors.inc({ provider, class: errorClass, reason });
  }

  cacheHit(purpose: string): void {
    this.hits.inc({ purpose });
  }

  spend(tenant: string, model: CatalogModel, nanos: bigint, usage: Usage): void {
    const labels = { provider: model.provider, model: model.id };
    if (nanos > 0n) this.spendNanos.inc({ tenant: this.metrics.tenantLabel(tenant), ...labels }, Number(nanos));
    this.tokens.inc({ ...labels, kind: 'input' }, usage.inputTokens - usage.cachedInputTokens);
    this.tokens.inc({ ...labels, kind: 'cached_input' }, usage.cachedInputTokens);
    this.tokens.inc({ ...labels, kind: 'output' }, usage.outputTokens);
  }
}
