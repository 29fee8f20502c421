import { Writable } from 'node:stream';
import { writeOrWait } from './write-or-wait';

/** A connection whose client takes nothing until told to (each write is acknowledged only by `take`). */
function slowClient() {
  const pending: Array<() => void> = [];
  const out = new Writable({
    highWaterMark: 8,
    write(_chunk, _enc, done) {
      pending.push(done);
    },
  });
  return { out, take: () => pending.splice(0).forEach((done) => done()) };
}

describe('writeOrWait: a stream sent as fast as its client takes it', () => {
  it('returns at once while the buffer has room', async () => {
    const { out } = slowClient();
    expect(await writeOrWait(out, 'abc', 1_000)).toBe(true);
  });

  it('waits while the buffer is full, and goes on once the client takes what was written', async () => {
    const { out, take } = slowClient();
    let done = false;
    const written = writeOrWait(out, 'more than eight bytes', 5_000).then((ok) => ((done = true), ok));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false); // the next event would wait here, and the provider's stream behind it
    take();
    expect(await written).toBe(true);
  });

  it('gives up when the client takes nothing for stallMs, and when the connection closes it does not wait', async () => {
    const stalled = slowClient();
    expect(await writeOrWait(stalled.out, 'more than eight bytes', 100)).toBe(false);
    const closing = slowClient();
    const written = writeOrWait(closing.out, 'more than eight bytes', 5_000);
    closing.out.destroy();
    expect(await written).toBe(true);
  });
});
