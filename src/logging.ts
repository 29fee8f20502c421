import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { AppConfig } from './config/app-config';
import { loggableError } from './common/error-rendering';

/**
 * Structured JSON logs. Requests are logged by id, method, path and status only: no headers (API
 * keys), no bodies (students' essays), no query strings. Every line names the service (the root
 * logger's base fields).
 */
export function loggerOptions(config: AppConfig): pino.LoggerOptions {
  return {
    level: config.logLevel,
    base: { pid: process.pid, hostname: hostname(), service: 'inkstone' },
    serializers: {
      // Anything under `err` (an Error, what loggableError made, or a bare message) keeps its
      // name, message and code; a serializer that read only Error fields logged strings as {}.
      err: (err: unknown) => loggableError(err),
    },
  };
}

/**
 * The process's root logger: JSON lines for collectors, pretty lines for a person at a terminal
 * (LOG_FORMAT), or into `destination` (tests read them). Nest's logger (nestjs-pino) and the
 * request lines both write through it.
 */
export function rootLogger(config: AppConfig, destination?: DestinationStream): Logger {
  const out = destination ?? (wantsPretty(config.logFormat, process.stdout) ? prettyDestination(process.stdout) : undefined);
  return out ? pino(loggerOptions(config), out) : pino(loggerOptions(config));
}

/**
 * One line when each request is over, from a Fastify hook that runs before any other (so a request
 * the later hooks refuse is logged too): `req` (id, method, path), `res` (status), `responseTime`
 * in ms; at error for a 5xx, warn for a 4xx or a request the client gave up on before its answer
 * was sent ("request aborted"), info otherwise. Written when the response closes, so a stream
 * (a hijacked reply) is logged when it ends.
 *
 * Neither pino-http nor nestjs-pino's middleware: the first made a child logger (its request
 * serialized) for every request, logged or not; the second also made that logger the ambient one
 * for everything logged while the request ran, through AsyncLocalStorage, which on Node 20 puts an
 * async hook on every promise of the process (measured: 16% of the gateway's CPU a call). Lines the
 * services write name what they are about themselves (tenant, essay, request ids).
 */
export function requestLogging(fastify: FastifyInstance, root: Logger): void {
  fastify.addHook('onRequest', (req, reply, done) => {
    const started = performance.now();
    const res = reply.raw;
    res.once('close', () => {
      const aborted = !res.writableFinished;
      const status = res.statusCode;
      const level = status >= 500 ? 'error' : status >= 400 || aborted ? 'warn' : 'info';
      if (!root.isLevelEnabled(level)) return;
      const q = req.url.indexOf('?');
      root[level](
        {
          req: { id: req.id, method: req.method, path: q < 0 ? req.url : req.url.slice(0, q) },
          res: { statusCode: status },
          responseTime: Math.round(performance.now() - started),
        },
        aborted ? 'request aborted' : 'request completed',
      );
    });
    done();
  });
}

/** Pretty logs for people: on a terminal under LOG_FORMAT=auto, or always under pretty; JSON otherwise. */
export function wantsPretty(format: AppConfig['logFormat'], out: { isTTY?: boolean }): boolean {
  return format === 'pretty' || (format === 'auto' && !!out.isTTY);
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const COLOURS: Record<number, string> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields every line has, or that the line's head already shows. */
const QUIET = new Set(['level', 'time', 'pid', 'hostname', 'service', 'msg', 'context', 'req', 'res', 'responseTime', 'err']);

/**
 * One JSON log line as a person reads it: time, level, the component, the message, then the other
 * fields as key=value; a request's method, path, status and time; an error's message and code.
 * The same fields as the JSON line (nothing more is logged: no essay text, no keys). A line that is
 * not JSON is passed through.
 */
export function prettyLine(line: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line);
  } catch {
    return line;
  }
  if (!o || typeof o !== 'object') return line;
  const level = typeof o.level === 'number' ? o.level : 30;
  const time = typeof o.time === 'number' ? new Date(o.time).toISOString().slice(11, 23) : '';
  const paint = (code: string, text: string) => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  const parts = [paint('90', time), paint(COLOURS[level] ?? '0', LEVELS[level] ?? String(level))];
  if (typeof o.context === 'string') parts.push(paint('36', `[${o.context}]`));
  const req = o.req as { method?: string; path?: string } | undefined;
  const res = o.res as { statusCode?: number } | undefined;
  if (req?.method) parts.push(`${req.method} ${req.path ?? ''}${res?.statusCode ? ` ${res.statusCode}` : ''}${typeof o.responseTime === 'number' ? ` ${o.responseTime}ms` : ''}`);
  if (o.msg !== undefined) parts.push(String(o.msg));
  for (const [k, v] of Object.entries(o)) {
    if (QUIET.has(k) || v === undefined) continue;
    parts.push(`${paint('90', `${k}=`)}${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  const err = o.err as { message?: string; code?: string | number; stack?: string } | undefined;
  if (err?.message) parts.push(paint('31', `err=${err.message}${err.code !== undefined ? ` (${err.code})` : ''}`));
  let out = parts.filter(Boolean).join(' ');
  if (err?.stack) out += `\n${err.stack}`;
  return out;
}

/** A pino destination that writes each line pretty to `out` (a terminal). */
export function prettyDestination(out: Writable & { isTTY?: boolean }): DestinationStream {
  let pending = '';
  return {
    write(chunk: string): void {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line) out.write(`${prettyLine(line, !!out.isTTY)}\n`);
      }
    },
  };
}
