import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import pinoHttp from 'pino-http';
import { ApiError } from './common/errors';
import { loggableError } from './common/error-rendering';
import { loadConfig } from './config/app-config';
import { ProviderError } from './llm/types';
import { pinoHttpOptions, prettyDestination, prettyLine, wantsPretty } from './logging';

/** A logger configured as the app's (its serializers), writing JSON lines into an array. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const opts = pinoHttpOptions(loadConfig({ INKSTONE_ADMIN_TOKEN: 'test-operator-token-0123456789', DATABASE_URL: 'postgres://x/test', INKSTONE_SECRET_KEY: Buffer.alloc(32, 7).toString('base64') }));
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
  it('name the service and the request (id, method, path), never its headers, query or body', () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (chunk: string) => chunk.split('\n').forEach((l) => l && lines.push(JSON.parse(l))) };
    const config = loadConfig({ INKSTONE_ADMIN_TOKEN: 'test-operator-token-0123456789', DATABASE_URL: 'postgres://x/test', INKSTONE_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'info' });
    const middleware = pinoHttp(pinoHttpOptions(config), sink as never);
    const req = Object.assign(new IncomingMessage(new Socket()), { id: 'req-7', method: 'POST', url: '/v1/essays?text=secret-essay-text' });
    req.headers = { authorization: 'Bearer ink_live_secret-key' };
    const res = new ServerResponse(req);
    middleware(req, res, () => undefined);
    (req as IncomingMessage & { log: pino.Logger }).log.warn({ msg: 'grading failed', essayId: 'e-1' });
    res.writeHead(202).end();
    res.emit('finish');
    expect(lines).toEqual([
      expect.objectContaining({ level: 40, service: 'inkstone', req: { id: 'req-7', method: 'POST', path: '/v1/essays' }, msg: 'grading failed', essayId: 'e-1' }),
      expect.objectContaining({ level: 30, service: 'inkstone', req: { id: 'req-7', method: 'POST', path: '/v1/essays' }, res: { statusCode: 202 }, msg: 'request completed' }),
    ]);
    expect(JSON.stringify(lines)).not.toMatch(/secret|authorization/);
  });

  it('name the service outside requests too', () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (chunk: string) => chunk.split('\n').forEach((l) => l && lines.push(JSON.parse(l))) };
    const config = loadConfig({ INKSTONE_ADMIN_TOKEN: 'test-operator-token-0123456789', DATABASE_URL: 'postgres://x/test', INKSTONE_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'info' });
    pinoHttp(pinoHttpOptions(config), sink as never).logger.info({ msg: 'model gateway ready' });
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
