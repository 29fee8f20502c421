import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full garbage collection now, once, when the service has started: the start leaves much
 * garbage behind at once (the embedded database's, PGlite, about 200 MB of dead ArrayBuffers), and
 * `npm start` keeps V8's first old-generation limit at its cap (`--initial-old-space-size`, README:
 * Deployment) with the idle collections off (`--no-memory-reducer`), so nothing would collect it
 * until the heap filled under load: a new instance on the embedded default stood at about 750 MB
 * resident, and at about 430 MB after this.
 * V8's `gc()` is exposed for this call only, in a context of its own (the service's globals never
 * see it), and hidden again. Whether it ran is returned; where it cannot run, nothing fails.
 */
export function collectGarbage(setFlags: (flags: string) => void = setFlagsFromString): boolean {
  setFlags('--expose-gc');
  try {
    const gc = runInNewContext('typeof gc === "function" ? gc : undefined') as (() => void) | undefined;
    if (!gc) return false; // (a Node that does not expose it so: the start goes on, the garbage waits)
    gc();
    return true;
  } finally {
    setFlags('--no-expose-gc');
  }
}
