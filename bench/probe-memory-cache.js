/**
 * What the in-process answer tier really holds on the heap against what it counts
 * (src/llm/memory-cache.ts, ResponseCache.heldBytes in src/llm/response-cache.ts): N answers of a
 * few shapes (short and long, Latin-1 and Chinese, one tenant and 10,000), each made as the service
 * makes one (parsed from JSON), the heap measured after full collections before and after. A ratio
 * at or under 1 means LLM_CACHE_MEMORY_MB bounds the heap the tier takes (heapOverCountedBefore: the
 * same against the count before 2026-12-01, two bytes a character and 200 more). Needs the build (dist/).
 *
 *   node --expose-gc bench/probe-memory-cache.js
 */
const crypto = require('node:crypto');
const path = require('node:path');
const { MemoryCache } = require(path.join(__dirname, '../dist/src/llm/memory-cache.js'));
const { ResponseCache } = require(path.join(__dirname, '../dist/src/llm/response-cache.js'));

if (typeof global.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}

function measure(name, text, n, tenants) {
  global.gc();
  global.gc();
  const before = process.memoryUsage().heapUsed;
  const cache = new MemoryCache({ maxBytes: 2 ** 40, maxBytesPerTenant: 2 ** 40 });
  const ids = Array.from({ length: tenants }, () => crypto.randomUUID());
  let counted = 0;
  let countedBefore = 0; // the count before 2026-12-01's change: two bytes a character and 200 more

  for (let i = 0; i < n; i++) {
    // As an answer arrives: parsed from the provider's (or the table's) JSON, each string its own.
    const answer = JSON.parse(
      JSON.stringify({ content: `${text} ${i}`, provider: 'deepseek', model: 'deepseek-flash', finishReason: 'stop', usage: { inputTokens: 20 + (i % 7), cachedInputTokens: 0, outputTokens: 30 } }),
    );
    answer.costNanos = BigInt(100_000 + i);
    const bytes = ResponseCache.heldBytes(answer);
    counted += bytes;
    countedBefore += 2 * (answer.content.length + answer.provider.length + answer.model.length + answer.finishReason.length) + 200;
    cache.set(ids[i % tenants], crypto.createHash('sha256').update(`${name}:${i}`).digest('hex'), answer, bytes, 3_600_000);
  }
  global.gc();
  global.gc();
  const held = process.memoryUsage().heapUsed - before;
  console.log(
    JSON.stringify({ shape: name, answers: n, tenants, countedMB: +(counted / 2 ** 20).toFixed(1), heapMB: +(held / 2 ** 20).toFixed(1), heapOverCounted: +(held / counted).toFixed(2), heapOverCountedBefore: +(held / countedBefore).toFixed(2), heapBytesAnAnswer: Math.round(held / n) }),
  );
  return cache; // (kept until measured)
}

const zh = '这篇作文结构清晰，论点明确，但第二段的论据不够充分，建议补充具体事例。';
const en = 'The essay is well organised and its thesis is clear, but the second paragraph needs a concrete example.';
const grading = JSON.stringify({ scores: { content: 8, structure: 7, language: 7 }, comments: zh.repeat(12), annotations: Array.from({ length: 6 }, (_, i) => ({ sentence: i, note: zh })) });
measure('short Latin-1 (a chat answer), one tenant', 'OK, here it is.', 100_000, 1);
measure('short Latin-1, 10,000 tenants', 'OK, here it is.', 100_000, 10_000);
measure('a sentence in Chinese, one tenant', zh, 100_000, 1);
measure('a sentence in English, one tenant', en, 100_000, 1);
measure('a grading (JSON, Chinese), 100 tenants', grading, 20_000, 100);
