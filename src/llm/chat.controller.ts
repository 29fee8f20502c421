import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Auth, TenantAuth, TenantCaller } from '../common/auth';
import { lazyClientGoneSignal } from '../common/client-gone';
import { renderError } from '../common/error-rendering';
import { ApiError } from '../common/errors';
import { formatCny } from '../common/money';
import { writeOrWait } from '../common/write-or-wait';
import { MAX_JSON_TOTAL_ITEMS, MiB, RouteLimits } from '../common/route-config';
import { AppConfig, CONFIG } from '../config/app-config';
import { Authenticator } from '../tenancy/authenticator';
import { LimitsService } from '../tenancy/limits.service';
import { refuseDirectPremium } from '../tenancy/premium-access';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { ChatService, ChatStreamHandle } from './chat.service';
import { ModelEntry, ModelsView, ModelsService } from './models.service';
import { ApiView } from '../docs/api-view';

/** How often a chat stream's caller is identified again (ChatController.pipe). */
const REIDENTIFY_EVERY_MS = 1_000;

/** OpenAI-compatible endpoints; the official `openai` client works against them unchanged. */
@ApiTags('gateway')
@ApiBearerAuth()
@Controller('v1')
@Auth('admin', 'teacher')
export class ChatController {
  constructor(
    private readonly chat: ChatService,
    private readonly models: ModelsService,
    private readonly limits: LimitsService,
    private readonly tenants: TenantsRepository,
    private readonly authenticator: Authenticator,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  @Get('models')
  @ApiOperation({ summary: 'Models and tier aliases, in OpenAI list shape, with Inkstone pricing in CNY per million tokens' })
  @ApiView('ModelsView')
  list(): ModelsView {
    return this.models.list();
  }

  @Get('models/:id')
  @ApiOperation({ summary: 'One model or tier alias, by its listed id or its provider:id key (OpenAI retrieve shape)' })
  @ApiView('ModelEntry')
  retrieve(@Param('id') id: string): ModelEntry {
    return this.models.retrieve(id);
  }

  @Post('chat/completions')
  @RouteLimits({ bodyLimit: 8 * MiB, jsonTotalItems: MAX_JSON_TOTAL_ITEMS })
  @HttpCode(200)
  @ApiOperation({ summary: "Chat completion (streaming or not) under the tenant's budget, cache, routing and ledger" })
  @ApiBody({ schema: { $ref: '#/components/schemas/ChatCompletionBody' } })
  @ApiView('ChatCompletion', { description: 'the completion; with stream: true, Server-Sent Events of chat.completion.chunk objects ending with data: [DONE]' })
  async complete(
    @TenantCaller() auth: TenantAuth,
    @Body() body: Record<string, unknown>,
    @Req() req: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<unknown> {
    const noCache = /\bno-cache\b/i.test(String(req.headers['cache-control'] ?? ''));
    const parsed = this.chat.parse(body);
    // The premium tier is reached as for essays: directly only by an admin who allowed it.
    if (this.models.isPremium(parsed.target)) await refuseDirectPremium(auth, this.tenants, `calling "${String(body.model)}" here`);
    // One of the tenant's chat calls in flight on this instance, or 429 before anything is spent.
    const release = await this.limits.acquire(auth.tenantId, 'chatInFlight');
    try {
      if (!parsed.stream) {
        const { result, response } = await this.chat.complete(auth, parsed, { noCache, requestId: String(req.id), clientGone: lazyClientGoneSignal(reply) });
        void reply.headers({
          'x-inkstone-provider': result.provider,
          'x-inkstone-model': result.model,
          'x-inkstone-cache': result.cache,
          'x-inkstone-cost': formatCny(result.costNanos),
        });
        return response;
      }
      const handle = this.chat.stream(auth, parsed, { noCache, requestId: String(req.id) });
      await this.pipe(handle, req, reply);
      return undefined;
    } finally {
      release();
    }
  }

  /** Writes the stream as Server-Sent Events; a failure before the first token is a normal JSON error. */
  private async pipe(handle: ChatStreamHandle, req: FastifyRequest, reply: FastifyReply): Promise<void> {
    // What the request's hooks set on the reply (the key's RateLimit-* headers, say) goes out with
    // the stream's own headers: a hijacked reply writes only what it is given.
    const set = Object.fromEntries(Object.entries(reply.getHeaders()).filter((e): e is [string, string | number | string[]] => e[1] !== undefined));
    reply.hijack();
    const raw = reply.raw;
    raw.on('close', () => {
      if (!raw.writableFinished) handle.abort();
    });
    let started = false;
    // A stream outlives its request's check: its caller is identified again about every second
    // (from the key cache, which a revocation clears on every instance), and a key revoked or a
    // console session ended meanwhile cuts it, as a client leaving does (the call is cancelled and
    // billed for what it produced), with an error event saying why. The check runs beside the
    // stream (a slow key read does not hold the tokens back) and is acted on at a later token. Not
    // for an answer already whole when it starts (JSON mode, a cache hit): it is paid for, or free.
    let checkedAt = Date.now();
    let checking = false;
    let refused: ApiError | null = null;
    const recheck = () => {
      if (checking || Date.now() - checkedAt < REIDENTIFY_EVERY_MS) return;
      checking = true;
      void this.authenticator.refusalNow(req).then((r) => {
        refused = r;
        checking = false;
        checkedAt = Date.now();
      });
    };
    // Written as fast as the client takes it: when the connection's buffer is full, the next event
    // (and the provider's stream behind it) waits until it drains. A client that takes nothing for
    // HTTP_STREAM_STALL_MS is cut off and its provider call cancelled. (Before, every event was
    // written at once, so a client that never read held the whole answer in the process.)
    const stallMs = this.config.http.streamStallMs;
    const write = async (text: string): Promise<void> => {
      if (await writeOrWait(raw, text, stallMs)) return;
      handle.abort();
      raw.destroy();
    };
    try {
      for await (const ev of handle.events) {
        if (ev.type === 'start') {
          started = true;
          raw.writeHead(200, {
            ...set,
            'content-type': 'text/event-stream; charset=utf-8',
            'cache-control': 'no-store',
            connection: 'keep-alive',
            'x-request-id': String(req.id),
            'x-inkstone-provider': ev.provider,
            'x-inkstone-model': ev.model,
            'x-inkstone-cache': ev.cache,
          });
        }
        if (ev.type === 'delta' && !handle.whole && ev.cache === 'miss') recheck();
        if (refused && ev.type === 'delta') {
          handle.abort();
          raw.end(`data: ${JSON.stringify(renderError(refused, String(req.id)).body)}\n\n`);
          break;
        }
        for (const chunk of ev.sse) await write(`data: ${chunk}\n\n`);
        if (ev.type === 'end') await write('data: [DONE]\n\n');
        if (raw.destroyed) break; // the client left, or was cut off: the loop's end cancels the rest
      }
      raw.end();
    } catch (err) {
      const rendered = renderError(handle.toApiError(err), String(req.id));
      if (!started) {
        raw.writeHead(rendered.status, { ...set, ...rendered.headers, 'content-type': 'application/json; charset=utf-8', 'x-request-id': String(req.id) });
        raw.end(JSON.stringify(rendered.body));
      } else {
        // Tokens were sent already: end with an error event, never a silent success.
        raw.end(`data: ${JSON.stringify(rendered.body)}\n\n`);
      }
    }
  }
}
