import { ConfigError } from './config/app-config';
import { EmbeddedPostgresLockedError } from './db/embedded-postgres';

/**
 * Why the service could not start, as the one line main.ts prints before it exits 1. A
 * configuration problem names the variable; the embedded database held by another process says
 * so; the network's or the database's own refusal (ECONNREFUSED, ENOTFOUND, a database that does
 * not exist, a password refused) is its message and code. Anything else gets its stack.
 */
export function startFailureLine(err: unknown): string {
  if (err instanceof ConfigError) return `inkstone: configuration error: ${err.message}`;
  if (err instanceof EmbeddedPostgresLockedError) return `inkstone: ${err.message}`;
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string') {
    // A host with several addresses (localhost: ::1 and 127.0.0.1) fails with an AggregateError
    // whose own message is empty: each address's is told.
    const inner = err instanceof AggregateError ? err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).filter(Boolean) : [];
    const message = err.message || inner.join('; ') || 'no message';
    return `inkstone: failed to start: ${message} (${(err as NodeJS.ErrnoException).code})`;
  }
  return `inkstone: failed to start: ${(err as Error)?.stack ?? String(err)}`;
}
