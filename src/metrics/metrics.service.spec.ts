import { collectGarbage } from '../common/collect-garbage';
import type { AppConfig } from '../config/app-config';
import { MetricsService } from './metrics.service';

/** How many garbage collections the service's histogram has seen, after a full collection now. */
async function collectionsSeenAfterOne(metrics: MetricsService): Promise<number> {
  expect(collectGarbage()).toBe(true); // (gc() exposed for this call only: later test files' globals never see it)
  await new Promise((r) => setTimeout(r, 50)); // observers are told after the collection, asynchronously
  const { values } = await metrics.registry.getSingleMetric('inkstone_nodejs_gc_duration_seconds')!.get();
  return values.filter((v) => (v as { metricName?: string }).metricName?.endsWith('_count')).reduce((n, v) => n + v.value, 0);
}

describe('MetricsService', () => {
  it('stops observing garbage collections when its app closes, so a closed app is not kept alive by them', async () => {
    const metrics = new MetricsService({ metricsTenantSeries: 10 } as AppConfig);
    const seenOpen = await collectionsSeenAfterOne(metrics);
    expect(seenOpen).toBeGreaterThan(0);

    metrics.onModuleDestroy();
    const seenClosed = await collectionsSeenAfterOne(metrics);
    expect(seenClosed).toBe(await collectionsSeenAfterOne(metrics));
    expect(seenClosed).toBeLessThanOrEqual(seenOpen + 1); // at most one reported between the two reads
  });

  it('leaves PerformanceObserver as it was after starting its collectors', () => {
    const observe = (jest.requireActual('node:perf_hooks') as typeof import('node:perf_hooks')).PerformanceObserver.prototype.observe;
    const metrics = new MetricsService({ metricsTenantSeries: 10 } as AppConfig);
    metrics.onModuleDestroy();
    expect((jest.requireActual('node:perf_hooks') as typeof import('node:perf_hooks')).PerformanceObserver.prototype.observe).toBe(observe);
  });
});
