import { CachedAnswer, ResponseCache } from './response-cache';

describe('what an answer held in the in-process tier counts against its bound', () => {
  const answer = (content: string): CachedAnswer => ({
    content,
    provider: 'deepseek',
    model: 'deepseek-flash',
    finishReason: 'stop',
    usage: { inputTokens: 1, cachedInputTokens: 0, outputTokens: 1 },
    costNanos: 1n,
  });

  it('counts a string as the heap keeps it: one byte a Latin-1 character, two for any other', () => {
    const latin = ResponseCache.heldBytes(answer('a'.repeat(1_000)));
    expect(ResponseCache.heldBytes(answer('文'.repeat(1_000))) - latin).toBe(1_000);
    expect(ResponseCache.heldBytes(answer(`${'a'.repeat(999)}文`)) - latin).toBe(1_000); // one character outside Latin-1 makes it all two-byte
    expect(ResponseCache.heldBytes(answer('é'.repeat(1_000)))).toBe(latin);
  });

  it("counts a short answer's bookkeeping, which is most of what it takes (bench/probe-memory-cache.js: about 530–600 bytes on the heap)", () => {
    expect(ResponseCache.heldBytes(answer('OK'))).toBeGreaterThanOrEqual(600);
  });
});
