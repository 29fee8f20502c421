import { Controller, Get, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '../common/auth';
import { DatabaseConnection } from '../db/database';

type Check = { status: 'up' | 'down'; latencyMs?: number; error?: string };

@ApiTags('operations')
@Controller('health')
export class HealthController {
  constructor(private readonly db: DatabaseConnection) {}

  @Get()
  @Public()
  @ApiOperation({ summary: 'Liveness and readiness: 200 when the database answers, 503 when not' })
  async health(@Res() reply: FastifyReply): Promise<void> {
    const database = await timed(() => this.db.ping());
    const checks: Record<string, Check> = { database };
    const ok = Object.values(checks).every((c) => c.status === 'up');
    await reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks });
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
