import { Controller, Get, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '../common/auth';
import { DatabaseConnection } from '../db/database';
import { GradingWorker } from '../grading/grading.worker';
import { JobQueue } from '../grading/job-queue';
import { GatewayService } from '../llm/gateway.service';

type Check = { status: 'up' | 'down'; latencyMs?: number; error?: string; [k: string]: unknown };

@ApiTags('operations')
@Controller('health')
export class HealthController {
  constructor(
    private readonly db: DatabaseConnection,
    private readonly queue: JobQueue,
    private readonly worker: GradingWorker,
    private readonly gateway: GatewayService,
  ) {}

  @Get()
  @Public()
  @ApiOperation({ summary: 'Readiness: 200 when the database and the job queue answer, 503 when not' })
  async health(@Res() reply: FastifyReply): Promise<void> {
    const database = await timed(() => this.db.ping());
    let depth: Record<string, number> = {};
    const queue = await timed(async () => {
      depth = await this.queue.depth();
    });
    const checks: Record<string, Check> = { database, queue: { ...queue, ...depth, workersInFlight: this.worker.active } };
    const ok = Object.values(checks).every((c) => c.status === 'up');
    // Warnings for the operator: they do not make the service unready.
    const warnings = this.gateway.catalogWarnings();
    await reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks, ...(warnings.length ? { warnings } : {}) });
  }
}

async function timed(fn: () => Promise<void>): Promise<Check> {
  const t0 = performance.now();
  try {
    await fn();
    return { status: 'up', latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
  } catch (err) {
    return { status: 'down', error: (err as Error).message };
  }
}
