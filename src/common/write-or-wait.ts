import type { Writable } from 'node:stream';

/**
 * Writes `text` to a client's connection and, when its buffer is full, waits until it drains: a
 * stream is sent as fast as its client takes it, and what the client does not take is not piled up
 * in the process. Resolves true once written and taken in (or the connection closed: there is no
 * one to wait for); false when nothing drained for `stallMs` — the caller ends the stream.
 */
export async function writeOrWait(out: Writable, text: string, stallMs: number): Promise<boolean> {
  if (out.write(text) || out.destroyed) return true;
  return new Promise<boolean>((resolve) => {
    const settle = (ok: boolean) => () => {
      clearTimeout(timer);
      out.off('drain', onDrain);
      out.off('close', onClose);
      resolve(ok);
    };
    const onDrain = settle(true);
    const onClose = settle(true);
    const timer = setTimeout(settle(false), stallMs);
    out.once('drain', onDrain);
    out.once('close', onClose);
  });
}
