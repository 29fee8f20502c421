import { Controller, Get, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Auth } from '../common/auth';
import { MetricsService } from './metrics.service';

/** Prometheus exposition; scrape it with the operator token as a bearer token. */
@ApiExcludeController()
@ApiBearerAuth()
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @Auth('operator')
  async scrape(@Res() reply: FastifyReply): Promise<void> {
    const { contentType, body } = await this.metrics.render();
    await reply.header('content-type', contentType).send(body);
  }
}
