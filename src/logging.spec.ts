import { Writable } from 'node:stream';
import fastify from 'fastify';
import pino from 'pino';
import { ApiError } from './common/errors';
import { loggableError } from './common/error-rendering';
import { loadConfig } from './config/app-config';
import { ProviderError } from './llm/types';
import { loggerOptions, prettyDestination, prettyLine, requestLogging, rootLogger, wantsPretty } from './logging';

/** A logger configured as the app's (its serializers), writing JSON lines into an array. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const opts = loggerOptions(loadConfig({ INKSTONE_ADMIN_TOKEN: 'test-operator-token-0123456789', DATABASE_URL: 'postgres://x/test', INKSTONE_SECRET_KEY: Buffer.alloc(32, 7).toString('base64') }));
  const logger = pino({ level: 'info', serializers: opts.serializers as pino.LoggerOptions['serializers'] }, sink);
  return { logger, lines };
}

describe('logged errors keep their message and code', () => {
  const pgError = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });

  it('writes an Error, a bare message, and what loggableError made, never as {}', () => {
    const { logger, lines } = capture();
    logger.warn({ msg: 'a', err: pgError });
    logger.warn({ msg: 'b', err: 'connect ECONNREFUSED 127.0.0.1:1' });
    logger.warn({ msg: 'c', err: loggableError(new ApiError('CONFLICT', 'already delivered')) });
    logger.warn({ msg: 'd', err: loggableError(new ProviderError('retryable', 'rate_limited', 'HTTP 429 from dashscope')) });
    expect(lines.map((l) => l.err)).toEqual([
      { name: 'Error', message: 'terminating connection due to administrator command', code: '57P01' },
      { message: 'connect ECONNREFUSED 127.0.0.1:1' },
      { name: 'ApiError', message: 'already delivered', code: 'CONFLICT' },
      { name: 'ProviderError', message: 'HTTP 429 from dashscope', code: 'rate_limited' },
    ]);
  });

  it('keeps the stack only when asked (unexpected errors), and survives odd values', () => {
    expect(loggableError(pgError, { stack: true }).stack).toMatch(/^Error: terminating connection/);
    expect(loggableError(pgError).stack).toBeUndefined();
    expect(loggableError(undefined)).toEqual({ message: 'undefined' });
    expect(loggableError({ reason: 'x' })).toEqual({ message: '{"reason":"x"}', code: 'x' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(loggableError(cyclic)).toEqual({ message: '[object Object]' });
  });
});

describe('request logs', () => {
  const config = (level = 'info') =>
    loadConfig({ INKSTONE_ADMIN_TOKEN: 'test-operator-token-0123456789', DATABASE_URL: 'postgres://x/test', INKSTONE_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: level });

  /** A Fastify server with the request hook, over real HTTP, its lines parsed. */
  async function server(level = 'info') {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (chunk: string) => chunk.split('\n').forEach((l) => l && lines.push(JSON.parse(l))) };
    const app = fastify({ genReqId: () => `req-${lines.length}-${Math.random().toString(36).slice(2, 8)}` });
    requestLogging(app, rootLogger(config(level), sink as never));
    app.post('/v1/essays', async (_req, reply) => reply.code(202).send({ ok: true }));
    app.get('/boom', async (_req, reply) => reply.code(503).send({ error: 'x' }));
    app.get('/slow', async () => new Promise((r) => setTimeout(() => r({ late: true }), 600)));
    app.get('/stream', (_req, reply) => {
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      reply.raw.write('data: 1\n\n');
      setTimeout(() => reply.raw.end('data: [DONE]\n\n'), 20);
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { app, url, lines };
  }

  it('write one line a request when it is over: id, method, path (no query), status, time; never its headers or body', async () => {
    const { app, url, lines } = await server();
    try {
      const res = await fetch(`${url}/v1/essays?text=secret-essay-text`, { method: 'POST', headers: { authorization: 'Bearer isk_secret-key', 'content-type': 'application/json' }, body: JSON.stringify({ text: 'secret-essay-text' }) });
      expect(res.status).toBe(202);
      await (await fetch(`${url}/boom`)).text();
      await (await fetch(`${url}/stream`)).text(); // a hijacked reply, logged when it ends
      await new Promise((r) => setTimeout(r, 50));
      expect(lines).toEqual([
        expect.objectContaining({ level: 30, service: 'inkstone', req: { id: expect.any(String), method: 'POST', path: '/v1/essays' }, res: { statusCode: 202 }, responseTime: expect.any(Number), msg: 'request completed' }),
        expect.objectContaining({ level: 50, req: expect.objectContaining({ path: '/boom' }), res: { statusCode: 503 }, msg: 'request completed' }),
        expect.objectContaining({ level: 30, req: expect.objectContaining({ path: '/stream' }), res: { statusCode: 200 }, msg: 'request completed' }),
      ]);
      expect(JSON.stringify(lines)).not.toMatch(/secret|authorization/);
    } finally {
      await app.close();
    }
  });

  it('say when the client went away before its answer, and write nothing under the configured level', async () => {
    const { app, url, lines } = await server();
    try {
      const gone = new AbortController();
      const asked = fetch(`${url}/slow`, { signal: gone.signal }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      gone.abort();
      await asked;
      await new Promise((r) => setTimeout(r, 100));
      expect(lines).toEqual([expect.objectContaining({ level: 40, req: expect.objectContaining({ path: '/slow' }), msg: 'request aborted' })]);
    } finally {
      await app.close();
    }
    const quiet = await server('warn');
    try {
      await (await fetch(`${quiet.url}/v1/essays`, { method: 'POST' })).text();
      await (await fetch(`${quiet.url}/boom`)).text();
      await new Promise((r) => setTimeout(r, 50));
      expect(quiet.lines).toEqual([expect.objectContaining({ level: 50, res: { statusCode: 503 } })]);
    } finally {
      await quiet.app.close();
    }
  });

  it('name the service outside requests too', () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (chunk: string) => chunk.split('\n').forEach((l) => l && lines.push(JSON.parse(l))) };
    rootLogger(config(), sink as never).info({ msg: 'model gateway ready' });
    expect(lines).toEqual([expect.objectContaining({ service: 'inkstone', pid: process.pid, msg: 'model gateway ready' })]);
  });
});

describe('logs for people', () => {
  const line = JSON.stringify({
    level: 40,
    time: Date.UTC(2026, 10, 30, 8, 5, 3, 21),
    pid: 1,
    hostname: 'h',
    service: 'inkstone',
    context: 'GradingWorker',
    msg: 'grading failed, will retry',
    tenantId: 't-1',
    attempt: 2,
    err: { name: 'Error', message: 'upstream 503', code: 'rate_limited' },
  });

  it('writes JSON lines pretty: time, level, component, message, fields, error', () => {
    expect(prettyLine(line)).toBe('08:05:03.021 WARN  [GradingWorker] grading failed, will retry tenantId=t-1 attempt=2 err=upstream 503 (rate_limited)');
    const request = JSON.stringify({ level: 30, time: 0, req: { id: 'r1', method: 'POST', path: '/v1/essays' }, res: { statusCode: 202 }, responseTime: 12, msg: 'request completed' });
    expect(prettyLine(request)).toBe('00:00:00.000 INFO  POST /v1/essays 202 12ms request completed');
    expect(prettyLine('not json')).toBe('not json');
  });

  it('colours only a terminal, and picks pretty for a terminal under auto', () => {
    expect(prettyLine(line, true)).toContain('\u001b[33mWARN \u001b[0m');
    expect(prettyLine(line, false)).not.toContain('\u001b');
    expect(wantsPretty('auto', { isTTY: true })).toBe(true);
    expect(wantsPretty('auto', { isTTY: false })).toBe(false);
    expect(wantsPretty('json', { isTTY: true })).toBe(false);
    expect(wantsPretty('pretty', {})).toBe(true);
  });

  it('joins lines split across writes', () => {
    const out: string[] = [];
    const dest = prettyDestination({ write: (s: string) => out.push(s), isTTY: false } as never);
    dest.write(line.slice(0, 20));
    dest.write(`${line.slice(20)}\n{"level":30,"time":0,"msg":"b"}\n`);
    expect(out).toEqual([`${prettyLine(line)}\n`, '00:00:00.000 INFO  b\n']);
  });
});
