import { Controller, Get, Injectable, Param, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../common/auth';
import { openAiErrorType } from '../common/error-rendering';
import { ConsoleAsset, CONSOLE_HEADERS, defaultConsoleDir, loadConsoleAssets } from './console-assets';

/** The built console's files, read once, sent with their type, ETag and the console's security headers. */
@Injectable()
export class ConsoleAssets {
  private assets: Map<string, ConsoleAsset> | null = null;
  private readonly dir = defaultConsoleDir();

  /** Sends a file of the console: 404 for a name it does not have, 503 while it is not built. */
  send(name: string, req: FastifyRequest, reply: FastifyReply): void {
    this.assets ??= loadConsoleAssets(this.dir);
    const asset = this.assets?.get(name);
    if (!asset) {
      const [status, code, message] = this.assets ? [404, 'NOT_FOUND', 'No such console file'] : [503, 'SERVICE_UNAVAILABLE', 'The console is not built: run npm run build'];
      void reply.code(status).send({ error: { code, message, type: openAiErrorType(status), param: null, requestId: String(req.id) } });
      return;
    }
    void reply.headers({ ...CONSOLE_HEADERS, etag: asset.etag });
    if (matchesEtag(req.headers['if-none-match'], asset.etag)) {
      void reply.code(304).send();
      return;
    }
    void reply.type(asset.type).send(asset.body);
  }
}

/**
 * Whether an If-None-Match header names the file's ETag (RFC 9110 §13.1.2, the weak comparison): a
 * list, a weak form (a proxy that compresses the file sends `W/"…"` back) or `*`.
 */
function matchesEtag(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value.trim() === '*') return true;
  return value.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/**
 * GET /console (→ /console/) and /console/<file>: the web console's page, script and stylesheet.
 * Public: the page holds no data; everything it shows comes from the API with the session cookie.
 * The page itself, /console/, is routed in app.factory.ts (a route with a trailing slash).
 */
@ApiExcludeController()
@Controller('console')
export class ConsoleAssetsController {
  constructor(private readonly assets: ConsoleAssets) {}

  /** The page's assets are relative to /console/: /console goes there. */
  @Get()
  @Public()
  index(@Res() reply: FastifyReply): void {
    void reply.code(308).header('location', '/console/').send();
  }

  @Get(':file')
  @Public()
  file(@Param('file') file: string, @Req() req: FastifyRequest, @Res() reply: FastifyReply): void {
    this.assets.send(file || 'index.html', req, reply);
  }
}
