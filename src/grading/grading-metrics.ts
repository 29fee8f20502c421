import { Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';
import { JobQueue } from '../jobs/job-queue';

/** Grades by outcome, and the job queue's depth (read from PostgreSQL at each scrape). */
@Injectable()
export class GradingMetrics {
  private readonly grades: Counter<'outcome' | 'source'>;

  constructor(metrics: MetricsService, queue: JobQueue) {
    const registers = [metrics.registry];
    this.grades = new Counter({ name: 'inkstone_grades_total', help: 'Essays finished, by outcome and by what graded them', labelNames: ['outcome', 'source'], registers });
    new Gauge({
      name: 'inkstone_queue_jobs',
      help: 'Jobs in the durable queue by status (all instances)',
      labelNames: ['status'],
      registers,
      async collect() {
        const depth = await queue.depth().catch(() => null);
        if (!depth) return;
        this.set({ status: 'queued' }, depth.queued);
        this.set({ status: 'running' }, depth.running);
      },
    });
  }

  graded(outcome: string, source: string): void {
    this.grades.inc({ outcome, source });
  }
}
