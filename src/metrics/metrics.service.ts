import { PerformanceObserver } from 'node:perf_hooks';
import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { AppConfig, CONFIG } from '../config/app-config';

/** The tenant label of the tenants past METRICS_TENANT_SERIES: their series are one. */
export const OTHER_TENANTS = '_other';

/**
 * One Prometheus registry per app instance (not prom-client's global one), so that several
 * instances in one process, as in the tests, keep separate counts.
 */
@Injectable()
export class MetricsService implements OnModuleDestroy {
  readonly registry = new Registry();

  /** what the process metrics observe (garbage collections), stopped when the app closes */
  private readonly observers: PerformanceObserver[];

  readonly httpDuration = new Histogram({
    name: 'inkstone_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** the tenants with series of their own (METRICS_TENANT_SERIES at most, the first seen) */
  private readonly labelled = new Set<string>();

  constructor(@Inject(CONFIG) private readonly config: AppConfig) {
    this.observers = observersStartedBy(() => collectDefaultMetrics({ register: this.registry, prefix: 'inkstone_' }));
  }

  /**
   * The garbage-collection observer is the process's (Node keeps every observer until it is
   * disconnected): left behind, each closed app's metrics, and everything they reach, stayed in
   * memory for the life of the process (in the tests, each test file's whole module registry).
   */
  onModuleDestroy(): void {
    for (const o of this.observers) o.disconnect();
  }

  /**
   * A tenant's label value for the series labelled by tenant: its id while fewer than
   * METRICS_TENANT_SERIES tenants have their own, else OTHER_TENANTS. A scrape renders every series
   * on the event loop, so their number is bounded whatever the number of tenants.
   */
  tenantLabel(tenantId: string): string {
    if (this.labelled.has(tenantId)) return tenantId;
    if (this.labelled.size >= this.config.metricsTenantSeries) return OTHER_TENANTS;
    this.labelled.add(tenantId);
    return tenantId;
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * The performance observers `start` begins to observe with. prom-client starts one for its
 * garbage-collection histogram and keeps no handle on it; this is the only way to stop it.
 */
function observersStartedBy(start: () => void): PerformanceObserver[] {
  const started: PerformanceObserver[] = [];
  const observe = PerformanceObserver.prototype.observe;
  PerformanceObserver.prototype.observe = function (this: PerformanceObserver, ...args: Parameters<PerformanceObserver['observe']>) {
    started.push(this);
    return observe.apply(this, args);
  };
  try {
    start();
  } finally {
    PerformanceObserver.prototype.observe = observe;
  }
  return started;
}
