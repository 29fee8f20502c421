import { Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';
import type { CatalogModel } from './catalog';
import { ProviderUploadsRepository } from './provider-uploads.repository';
import type { Usage } from './types';

/** A model's label sets, made once (see GatewayMetrics.labelsOf). */
interface ModelLabels {
  input: { provider: string; model: string; kind: string };
  cachedInput: { provider: string; model: string; kind: string };
  output: { provider: string; model: string; kind: string };
  /** the spend series' labels by tenant label: at most METRICS_TENANT_SERIES and "other" */
  spendOf: Map<string, { tenant: string; provider: string; model: string }>;
}

/** The gateway's Prometheus series: spend, tokens, cache hits, provider errors by class and batch hand-overs. */
@Injectable()
export class GatewayMetrics {
  private readonly errors: Counter<'provider' | 'class' | 'reason'>;
  private readonly hits: Counter<'purpose'>;
  private readonly spendNanos: Counter<'tenant' | 'provider' | 'model'>;
  private readonly tokens: Counter<'provider' | 'model' | 'kind'>;
  private readonly handovers: Counter<'event'>;
  /**
   * Each model's label objects by provider and model id, made the first time and then reused, so a
   * settled call allocates none. prom-client keeps the labels object of each new series; with many
   * tenants enough of the objects made at one place were kept that V8 began to make every object
   * there in the old generation (allocation-site pretenuring), about 0.8 KB a call for mark-compacts
   * to free (bench/probe-alloc.ts, PROBE_TENANTS=10000). Bounded: catalog models × tenant labels.
   */
  private readonly labels = new Map<string, Map<string, ModelLabels>>();

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
    const labels = this.labelsOf(model);
    if (nanos > 0n) {
      const tenantLabel = this.metrics.tenantLabel(tenant);
      let spend = labels.spendOf.get(tenantLabel);
      if (!spend) labels.spendOf.set(tenantLabel, (spend = { tenant: tenantLabel, provider: model.provider, model: model.id }));
      this.spendNanos.inc(spend, Number(nanos));
    }
    this.tokens.inc(labels.input, usage.inputTokens - usage.cachedInputTokens);
    this.tokens.inc(labels.cachedInput, usage.cachedInputTokens);
    this.tokens.inc(labels.output, usage.outputTokens);
  }

  private labelsOf(model: CatalogModel): ModelLabels {
    let ofProvider = this.labels.get(model.provider);
    if (!ofProvider) this.labels.set(model.provider, (ofProvider = new Map()));
    let labels = ofProvider.get(model.id);
    if (!labels) {
      const base = { provider: model.provider, model: model.id };
      labels = { input: { ...base, kind: 'input' }, cachedInput: { ...base, kind: 'cached_input' }, output: { ...base, kind: 'output' }, spendOf: new Map() };
      ofProvider.set(model.id, labels);
    }
    return labels;
  }
}
