import { Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';
import type { CatalogModel } from './catalog';
import { ProviderUploadsRepository } from './provider-uploads.repository';
import type { Usage } from './types';

/** The gateway's Prometheus series: spend, tokens, cache hits, provider errors by class and batch hand-overs. */
@Injectable()
export class GatewayMetrics {
  private readonly errors: Counter<'provider' | 'class' | 'reason'>;
  private readonly hits: Counter<'purpose'>;
  private readonly spendNanos: Counter<'tenant' | 'provider' | 'model'>;
  private readonly tokens: Counter<'provider' | 'model' | 'kind'>;
  private readonly handovers: Counter<'event'>;

  constructor(
    private readonly metrics: MetricsService,
    uploads: ProviderUploadsRepository,
  ) {
    const registers = [metrics.registry];
    new Gauge({
      name: 'inkstone_llm_provider_uploads',
      help: 'Uploads to providers\' Batch APIs not yet deleted there (all instances): state="written" every one, state="failing" those the sweep has tried three times or more',
      labelNames: ['state'],
      registers,
      async collect() {
        const n = await uploads.counts().catch(() => null);
        if (!n) return;
        this.set({ state: 'written' }, n.written);
        this.set({ state: 'failing' }, n.failing);
      },
    });
    this.errors = new Counter({ name: 'inkstone_llm_provider_errors_total', help: 'Failed model calls by provider and error class', labelNames: ['provider', 'class', 'reason'], registers });
    this.hits = new Counter({ name: 'inkstone_llm_cache_hits_total', help: 'Answers served from the exact cache', labelNames: ['purpose'], registers });
    this.spendNanos = new Counter({ name: 'inkstone_llm_spend_nanoyuan_total', help: 'Model spend in 1e-9 CNY', labelNames: ['tenant', 'provider', 'model'], registers });
    this.tokens = new Counter({ name: 'inkstone_llm_tokens_total', help: 'Tokens billed by kind (input, cached_input, output)', labelNames: ['provider', 'model', 'kind'], registers });
    this.handovers = new Counter({
      name: 'inkstone_llm_batch_calls_handed_over_total',
      help: 'Calls waiting in a provider batch left to their jobs\' retries at a stop (event="handed_over"), and taken over by a retry (event="taken_over")',
      labelNames: ['event'],
      registers,
    });
  }

  /** A call waiting in a provider batch: left at a stop for its job's retry, or taken over by one. */
  batchHandover(event: 'handed_over' | 'taken_over'): void {
    this.handovers.inc({ event });
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
