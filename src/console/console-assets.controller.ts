import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../common/auth';
import { ApiError } from '../common/errors';
import { ConsoleAsset, CONSOLE_HEADERS, defaultConsoleDir, loadConsoleAssets } from './console-assets';

/**
 * GET /console/: the web console's page and its script and stylesheet, from the build. Public:
 * the page holds no data; everything it shows comes from the API with the session cookie.
 */
@ApiExcludeController()
@Controller('console')
export class ConsoleAssetsController {
  private assets: Map<string, ConsoleAsset> | null = null;
  private readonly dir = process.env.CONSOLE_DIR || defaultConsoleDir();

  private asset(name: string): ConsoleAsset {
    this.assets ??= loadConsoleAssets(this.dir);
    if (!this.assets) throw new ApiError('SERVICE_UNAVAILABLE', 'The console is not built: run npm run build');
    const asset = this.assets.get(name);
    if (!asset) throw new ApiError('NOT_FOUND', 'No such console file');
    return asset;
  }

  private send(reply: FastifyReply, req: FastifyRequest, asset: ConsoleAsset): void {
    void reply.headers({ ...CONSOLE_HEADERS, etag: asset.etag });
    if (req.headers['if-none-match'] === asset.etag) {
      void reply.code(304).send();
      return;
    }
    void reply.type(asset.type).send(asset.body);
  }

  @Get()
  @Public()
  index(@Req() req: FastifyRequest, @Res() reply: FastifyReply): void {
    // The page's assets are relative: /console must be /console/.
    if (!req.url.split('?')[0].endsWith('/')) {
      void reply.code(308).header('location', '/console/').send();
      return;
    }
    this.send(reply, req, this.asset('index.html'));
  }

  @Get(':file')
  @Public()
  file(@Param('file') file: string, @Req() req: FastifyRequest, @Res() reply: FastifyReply): void {
    this.send(reply, req, this.asset(file));
  }
}
