import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { requestLogging, rootLogger } from './logging';
import type { DestinationStream } from 'pino';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppModule } from './app.module';
import { Transform } from 'node:stream';
import { AllExceptionsFilter, sendError } from './common/all-exceptions.filter';
import { ApiError } from './common/errors';
import { jsonShapeProblem } from './common/json-shape';
import { DEFAULT_BODY_LIMIT, DEFAULT_JSON_TOTAL_ITEMS, InkstoneRouteConfig, MAX_JSON_TOTAL_ITEMS } from './common/route-config';
import { RouteMethods } from './common/route-methods';
import { Authenticator } from './tenancy/authenticator';
import { AuthFailures } from './tenancy/auth-failures';
import { LlmModels, resolveLlmModels } from './llm/llm-models';
import { LimitsService } from './tenancy/limits.service';
import { EssayStreamService } from './grading/essay-stream.service';
import { createValidationPipe } from './common/validation';
import { AppConfig } from './config/app-config';
import { MetricsService } from './metrics/metrics.service';
import { ConsoleAssets } from './console/console-assets.controller';
import { DOCS_HEADERS, HSTS } from './console/console-assets';
import { secure, sessionKeyFromQuery } from './tenancy/console-sessions';
import { VIEW_SCHEMAS } from './docs/api-view';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A caller's X-Request-Id when it is sane, otherwise a new UUID. */
function requestId(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

/** Builds the whole application, initialised but not listening. Used by main.ts and by the tests. */
/** JSON deeper than this is not a request any route takes: refused before it is parsed. */
export const MAX_JSON_DEPTH = 32;
/**
 * Most elements in one JSON array or members in one object, and in a whole body. The largest the
 * API takes is a chat's 500 messages or a class set's 200 essays; what is past these is refused
 * before it is parsed (see jsonShapeProblem for why counting matters).
 */
export const MAX_JSON_ITEMS = 5_000;

/** Routes under these prefixes need a key (the guard then checks the route's roles). */
function needsKey(url: string): boolean {
  return url.startsWith('/v1/') || url === '/metrics';
}

/**
 * The view schemas (the answers' types, generated: src/docs/view-schemas.json) join the DTO
 * schemas Nest made from the classes. A DTO's schema is never replaced: a view of the same name
 * is refused here, to be renamed in scripts/view-schemas.ts (RENAMED).
 */
export function addViewSchemas(document: OpenAPIObject): OpenAPIObject {
  const schemas = (document.components ??= {}).schemas ?? {};
  for (const [name, schema] of Object.entries(VIEW_SCHEMAS)) {
    if (schemas[name]) throw new Error(`OpenAPI: the view schema ${name} has the name of a DTO schema; rename it in scripts/view-schemas.ts (RENAMED) and run npm run docs:views`);
    schemas[name] = schema;
  }
  // Every error, whatever the route, has one shape (src/common/error-rendering.ts): each operation
  // says so for its 4xx and 5xx answers, with the codes in the API guide's tables.
  schemas.ApiErrorBody = {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message', 'type', 'param', 'requestId'],
        properties: {
          code: { type: 'string', description: "the error's code (docs/api.md lists each with its status)" },
          message: { type: 'string' },
          type: { type: 'string', enum: ['invalid_request_error', 'authentication_error', 'permission_error', 'insufficient_quota', 'rate_limit_error', 'api_error'], description: "OpenAI's class of the error" },
          param: { type: 'string', nullable: true, description: 'the first field at fault, or null' },
          requestId: { type: 'string', description: 'the x-request-id of the answer: quote it when reporting a problem' },
          details: { description: 'VALIDATION_FAILED: each field at fault and what is wrong with it; some codes carry more (NO_PROVIDER_AVAILABLE: the models tried)' },
        },
      },
    },
  };
  document.components.schemas = schemas;
  const errorAnswer = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiErrorBody' } } } });
  for (const item of Object.values(document.paths)) {
    for (const op of Object.values(item) as Array<{ responses?: Record<string, unknown> }>) {
      if (!op || typeof op !== 'object' || !op.responses) continue;
      op.responses['4XX'] ??= errorAnswer('A refused request: the code says why (docs/api.md, Errors)');
      op.responses['5XX'] ??= errorAnswer('A failure on our side or a provider\'s, or the database busy: see Retry-After when present');
    }
  }
  const bearer = document.components.securitySchemes?.bearer as { bearerFormat?: string } | undefined;
  if (bearer) bearer.bearerFormat = 'a tenant API key (isk_…) or the operator token';
  return document;
}

function tooLarge(limit: number): ApiError {
  return new ApiError('PAYLOAD_TOO_LARGE', `Request body is larger than this route's limit of ${limit} bytes`);
}

export interface CreateAppOptions {
  /** where log lines go instead of stdout (tests read them) */
  logDestination?: DestinationStream;
  /** the models the gateway may call; resolved from the configuration when not given */
  models?: LlmModels;
}

export async function createApp(config: AppConfig, options: CreateAppOptions = {}): Promise<NestFastifyApplication> {
  let errorLogger: Pick<Logger, 'error'> = { error: () => undefined }; // the app's, once it is built
  const adapter = new FastifyAdapter({
    // The router's own errors (a path part over 100 characters, a bad percent-encoding) in the
    // API's error shape, not Fastify's (whose message repeats the whole path).
    frameworkErrors: (err: Error, req: FastifyRequest, reply: FastifyReply) => {
      void reply.header('x-request-id', req.id);
      sendError(reply as never, req as never, err, errorLogger);
    },
    // The largest body any route takes; each route has its own, smaller limit (route-config.ts).
    bodyLimit: config.bodyLimitBytes,
    genReqId: requestId,
    requestIdHeader: false,
    logger: false,
    // A request that arrives while the server is closing is answered 503 by the hook below, in the
    // API's error shape (Fastify's own answer has another).
    return503OnClosing: false,
    // A client has this long to send its whole request (not to receive the answer: streams last).
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
  });
  const root = rootLogger(config, options.logDestination);
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config, options.models ?? resolveLlmModels(config.llm), root), adapter, {
    bufferLogs: true,
    // Nest's own console logger (coloured, not JSON) stays silent: what the modules log while they
    // are built waits in the buffer for ours, and a start that fails is told by main.ts in one line.
    logger: false,
    abortOnError: false,
    // Payment webhooks are verified against the exact bytes that were signed.
    rawBody: true,
  });
  app.useLogger(app.get(Logger));
  // What was logged while the modules were built goes out now, and from here every line goes out
  // when it is logged. Nest would flush only in listen(): an app that is not listening (the tests,
  // a start that fails in init) would keep its log lines in memory and never write them.
  app.flushLogs();
  const logger = app.get(Logger);
  errorLogger = logger;
  const fastifyInstance = app.getHttpAdapter().getInstance();
  // Every route as it is registered (Nest's in init, below): a path with routes of other methods is 405.
  const routeMethods = new RouteMethods();
  fastifyInstance.addHook('onRoute', (route) => routeMethods.add(route.method, route.url));
  // First of the hooks: a request refused by the ones after it is logged too.
  requestLogging(fastifyInstance, root);
  app.useGlobalFilters(new AllExceptionsFilter(routeMethods));
  app.useGlobalPipes(createValidationPipe());
  // The API takes JSON only: Fastify's own text/plain parser would hand a JSON body sent as text to
  // the validation as a string ("text must be a string") where 415 says what is wrong.
  fastifyInstance.removeContentTypeParser('text/plain');
  // JSON bodies: nesting deeper than MAX_JSON_DEPTH, or more items than MAX_JSON_ITEMS in one
  // container or MAX_JSON_TOTAL_ITEMS in all, is refused before JSON.parse sees it.
  // (The whole body at most the route's jsonTotalItems: DEFAULT_JSON_TOTAL_ITEMS unless it names more.)
  const parseJson = fastifyInstance.getDefaultJsonParser('error', 'error');
  const shapeMessages = {
    depth: () => `Request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`,
    items: () => `Request body has an array or object of more than ${MAX_JSON_ITEMS} items`,
    totalItems: (total: number) => `Request body has more than ${total} array elements and object members in all`,
  };
  app.useBodyParser('application/json', { bodyLimit: config.bodyLimitBytes }, (req, body, done) => {
    const totalItems = Math.min(MAX_JSON_TOTAL_ITEMS, ((req as FastifyRequest).routeOptions?.config as InkstoneRouteConfig | undefined)?.jsonTotalItems ?? DEFAULT_JSON_TOTAL_ITEMS);
    const problem = jsonShapeProblem(body, { depth: MAX_JSON_DEPTH, items: Math.min(MAX_JSON_ITEMS, totalItems), totalItems });
    if (problem) {
      done(new ApiError('INVALID_JSON', shapeMessages[problem](totalItems)), undefined);
      return;
    }
    parseJson(req as never, body as unknown as string, done);
  });

  const metrics = app.get(MetricsService);
  const fastify = fastifyInstance;
  fastify.server.headersTimeout = config.http.headersTimeoutMs;
  const authenticator = app.get(Authenticator);
  const authFailures = app.get(AuthFailures);
  const limits = app.get(LimitsService);
  // Stopping: what still arrives on an open connection is sent elsewhere (503, the connection closed
  // after the answer), before any work is done for it; what was already under way finishes.
  let closing = false;
  const essayStreams = app.get(EssayStreamService);
  fastify.addHook('preClose', (done) => {
    closing = true;
    // Open essay event streams end (a retry hint): the close waits for every request under way.
    essayStreams.closing();
    done();
  });
  // Before the body is read: the request id, and the key. A call without a valid key is answered
  // 401 here, so it costs no body parsing (an 8 MiB body without a key is refused at once).
  fastify.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
    // (A route marked AnswersWhileClosing, an essay's event stream, answers itself: a retry hint.
    // The route as the router matched it, not the raw URL: `/v1/essays/x#/events` is the essay.)
    if (closing && !(req.routeOptions?.config as InkstoneRouteConfig | undefined)?.answersWhileClosing) {
      void reply.header('connection', 'close');
      sendError(reply as never, req as never, new ApiError('SERVICE_UNAVAILABLE', 'This server is stopping: send the request again (another instance will take it)', undefined, { 'retry-after': '1' }), logger);
      return reply;
    }
    const route = req.routeOptions;
    if (!route.url) return;
    if (route.url.startsWith('/docs') || route.url.startsWith('/console')) {
      // The browser's pages (the console, the API reference) pin HTTPS once reached over it; the
      // reference gets the console's security headers here (the console's files carry their own).
      if (secure(req)) void reply.header('strict-transport-security', HSTS);
      if (route.url.startsWith('/docs')) void reply.headers(DOCS_HEADERS);
      return;
    }
    if (!needsKey(route.url)) return;
    // A console link's or event stream's key id, carried in its URL (no header of the page's own).
    sessionKeyFromQuery(req);
    // The API's answers are one school's and private (a cookie-signed console request too, which no
    // cache rule for Authorization covers): kept by no browser or shared cache.
    void reply.header('cache-control', 'no-store');
    if ((route.config as InkstoneRouteConfig)?.public) return;
    try {
      // An address that failed authentication too often: only what is known good is checked (AuthFailures).
      const auth = await authFailures.guard(req.ip, () => authenticator.knownGood(req), () => authenticator.identify(req));
      req.auth = auth;
      if (auth.kind === 'tenant') {
        // Requests per second per key and per tenant: token buckets; their state goes on every answer.
        const taken = await limits.admitRequest(auth.keyId, auth.tenantId);
        void reply.headers({ ...taken.headers });
        if (taken.refused) throw taken.refused;
      }
    } catch (err) {
      sendError(reply as never, req as never, err, logger);
      return reply;
    }
  });
  // Each route's own body limit: a declared length over it is refused before reading; a body
  // without one is counted as it arrives and cut off at the limit.
  fastify.addHook('preParsing', async (req, _reply, payload) => {
    const limit = (req.routeOptions.config as InkstoneRouteConfig)?.bodyLimit ?? DEFAULT_BODY_LIMIT;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) throw tooLarge(limit);
    // A declared length within the limit is the body's length (Node's parser reads that many bytes
    // and refuses a request that also says chunked): nothing to count. A chunked body is counted.
    if (req.headers['content-length'] !== undefined && req.headers['transfer-encoding'] === undefined) return payload;
    let seen = 0;
    return payload.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, next) {
          seen += chunk.length;
          next(seen > limit ? tooLarge(limit) : null, chunk);
        },
      }),
    );
  });
  // The console's page (Nest's routes carry no trailing slash; its assets are under /console/).
  const consoleAssets = app.get(ConsoleAssets);
  fastify.get('/console/', (req, reply) => consoleAssets.send('index.html', req, reply));
  fastify.addHook('onResponse', (req, reply, done) => {
    metrics.observeHttp(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Inkstone API')
      .setDescription('AI essay grading with a cost-capped model gateway. Money is a decimal string in CNY.')
      .setVersion('1')
      .addBearerAuth()
      .build(),
  );
  addViewSchemas(document);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });

  await app.init();
  return app;
}
