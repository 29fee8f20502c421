import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../common/auth';
import { AppConfig, CONFIG } from '../config/app-config';
import { DatabaseConnection } from '../db/database';
import { GradingWorker } from '../grading/grading.worker';
import { JobQueue } from '../jobs/job-queue';
import { GatewayService } from '../llm/gateway.service';
import { hashSecret, secretMatches } from '../tenancy/api-key-secret';

type Check = { status: 'up' | 'down'; latencyMs?: number; error?: string; [k: string]: unknown };

@ApiTags('operations')
@Controller('health')
export class HealthController {
  private readonly operatorTokenHash: Buffer;

  constructor(
    private readonly db: DatabaseConnection,
    private readonly queue: JobQueue,
    private readonly worker: GradingWorker,
    private readonly gateway: GatewayService,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.operatorTokenHash = hashSecret(config.adminToken);
  }

  @Get()
  @Public()
  @ApiOperation({
    summary: 'Readiness: 200 when the database and the job queue answer, 503 when not',
    description: "Anyone gets {status}; with the operator's token also the checks, latencies, queue depth, workers in flight and catalog warnings.",
  })
  async health(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const database = await timed(() => this.db.ping());
    let depth: Record<string, number> = {};
    const queue = await timed(async () => {
      depth = await this.queue.depth();
    });
    const checks: Record<string, Check> = { database, queue: { ...queue, ...depth, workersInFlight: this.worker.active } };
    const ok = Object.values(checks).every((c) => c.status === 'up');
    const status = ok ? 'ok' : 'unavailable';
    // The route is public (load balancers call it without a key), so the hook that checks keys
    // skips it: the details are for the operator's token only, checked here.
    if (!this.isOperator(req.headers.authorization)) {
      await reply.code(ok ? 200 : 503).send({ status });
      return;
    }
    // Warnings for the operator: they do not make the service unready.
    const warnings = this.gateway.catalogWarnings();
    await reply.code(ok ? 200 : 503).send({ status, checks, ...(warnings.length ? { warnings } : {}) });
  }

  /** Constant-time: the presented token is hashed and compared with the operator token's hash. */
  private isOperator(header: string | undefined): boolean {
    if (!header || header.length > 512) return false;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return m !== null && secretMatches(m[1], this.operatorTokenHash);
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
