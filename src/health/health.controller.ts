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
import { AuthFailures } from '../tenancy/auth-failures';

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
    private readonly failures: AuthFailures,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.operatorTokenHash = hashSecret(config.adminToken);
  }

  /** The database ping anonymous callers are waiting for: one at a time, shared by all of them. */
  private pinging?: Promise<boolean>;

  @Get()
  @Public()
  @ApiOperation({
    summary: 'Readiness: 200 when the database answers (for the operator, the job queue too), 503 when not',
    description:
      "Anyone gets {status}, from one database ping shared by every anonymous call made while it runs; with the operator's token also the checks, latencies, queue depth, workers in flight and catalog warnings.",
  })
  async health(@Req() req: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    // The route is public (load balancers call it without a key), so the hook that checks keys
    // skips it: the details are for the operator's token only, checked here. An anonymous caller
    // gets the status of a ping shared with every other anonymous call made while it runs: a flood
    // of them holds one pooled connection at most, and never counts the queue (before, each ran a
    // ping and a count over every tenant's queued jobs, and a flood took the whole pool).
    const header = req.headers.authorization;
    if (!this.isOperator(header)) {
      // A token that is not the operator's is a failed authentication like any other (the details
      // would tell a right guess from a wrong one): counted against the address, refused past its burst.
      if (header) {
        const refused = this.failures.refusal(req.ip);
        if (refused) throw refused;
        this.failures.failed(req.ip);
      }
      this.pinging ??= this.db.ping().then(
        () => true,
        () => false,
      ).finally(() => (this.pinging = undefined));
      const up = await this.pinging;
      await reply.code(up ? 200 : 503).send({ status: up ? 'ok' : 'unavailable' });
      return;
    }
    const database = await timed(() => this.db.ping());
    let depth: Record<string, number> = {};
    const queue = await timed(async () => {
      depth = await this.queue.depth();
    });
    const checks: Record<string, Check> = { database, queue: { ...queue, ...depth, workersInFlight: this.worker.active } };
    const ok = Object.values(checks).every((c) => c.status === 'up');
    const status = ok ? 'ok' : 'unavailable';
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
