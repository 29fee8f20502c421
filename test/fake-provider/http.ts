/**
 * Small HTTP and JSON helpers shared by the server, the answer delivery and the Batch API: reading
 * a body with a size limit, sending JSON, and the timers behind every latency, which close() cuts
 * short.
 */
import type * as http from 'node:http';

/** The largest request body the fake provider reads (anything larger gets 413). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** A JSON object: not null, not an array. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The client went away, or the answer was already sent. */
export function gone(res: http.ServerResponse): boolean {
  return res.destroyed || res.writableEnded;
}

/** Sends status and body (a string verbatim, anything else as JSON); extra headers are lower-cased. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  if (gone(res)) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const h: Record<string, string | number> = { 'content-type': 'application/json' };
  for (const [k, v] of Object.entries(headers ?? {})) h[k.toLowerCase()] = v;
  h['content-length'] = Buffer.byteLength(text);
  res.writeHead(status, h);
  res.end(text);
}

/** The body as bytes, or null when it exceeds {@link MAX_BODY_BYTES}. */
export async function readBodyBuffer(req: http.IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      req.resume();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The body as text, or null when it exceeds {@link MAX_BODY_BYTES}. */
export async function readBody(req: http.IncomingMessage): Promise<string | null> {
  const buf = await readBodyBuffer(req);
  return buf === null ? null : buf.toString('utf8');
}

/** The host part of the server's URL for the address it listens on. */
export function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** Waits a request may do (latency, chunk delays); close() wakes them all at once. */
export class Sleeper {
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: (ok: boolean) => void }>();
  private isClosed = false;

  /** close() was called: no more waits, answers in progress stop. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Resolves true after `ms`, or false at once when closed (or on close()). */
  sleep(ms: number): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    if (ms <= 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.sleepers.delete(entry);
          resolve(true);
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(entry);
    });
  }

  /** Wakes every wait with false; later waits return false at once. */
  close(): void {
    this.isClosed = true;
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.wake(false);
    }
    this.sleepers.clear();
  }
}
