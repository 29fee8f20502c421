import { collectGarbage } from './collect-garbage';

describe('a full garbage collection on request', () => {
  it('frees an unreachable ArrayBuffer at once, and leaves gc() out of the globals', async () => {
    let buffer: ArrayBuffer | undefined = new ArrayBuffer(64 * 1024 * 1024);
    const ref = new WeakRef(buffer);
    buffer = undefined;
    // (a WeakRef keeps its target for the rest of the job that made it)
    await new Promise((r) => setImmediate(r));
    expect(ref.deref()).toBeDefined(); // nothing has collected it yet
    await new Promise((r) => setImmediate(r)); // (nor does deref() keep it past this job)
    expect(collectGarbage()).toBe(true);
    expect(ref.deref()).toBeUndefined();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });

  it('answers false, and throws nothing, where gc() cannot be exposed', () => {
    // (V8's flags left as they are: gc() is not exposed)
    const asked: string[] = [];
    expect(collectGarbage((flags) => asked.push(flags))).toBe(false);
    expect(asked).toEqual(['--expose-gc', '--no-expose-gc']);
  });
});
