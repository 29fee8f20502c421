/**
 * Measures the margin of the token upper bound (src/llm/tokens.ts: UTF-8 bytes) against real tokenizers: for each tokenizer
 * family in the catalog, the ratio of real tokens to the estimate on generated Chinese and
 * English essays. The estimate must never be below the real count (ratio ≤ 1); the closer to 1
 * the less budget a reservation holds back.
 *
 *   npx ts-node --transpile-only bench/calibrate-tokens.ts
 */
import { getEncoding } from 'js-tiktoken';
import { Catalog } from '../src/llm/catalog';
import { estimatePromptTokens } from '../src/llm/tokens';
import { generateEssay } from '../test/support/essays';

const catalog = Catalog.load();
const encodings = { cl100k_base: getEncoding('cl100k_base'), o200k_base: getEncoding('o200k_base') };
const profiles = [...new Set([...catalog.models.values()].map((m) => m.tokenizer))];

const rows: Array<Record<string, string | number>> = [];
for (const lang of ['zh', 'en'] as const) {
  const essays = Array.from({ length: 300 }, (_, i) => generateEssay(1000 + i * 31, lang).text);
  for (const [encName, enc] of Object.entries(encodings)) {
    const real = essays.map((t) => enc.encode(t).length + 4 + 3); // one user message, OpenAI's framing
    for (const p of profiles) {
      const est = essays.map((t) => estimatePromptTokens([{ role: 'user', content: t }], p));
      const ratios = real.map((r, i) => r / est[i]);
      rows.push({
        lang,
        tokenizer: encName,
        profile: p.name,
        meanRealTokens: Math.round(real.reduce((a, b) => a + b, 0) / real.length),
        maxRatio: Math.max(...ratios).toFixed(3),
        meanRatio: (ratios.reduce((a, b) => a + b, 0) / ratios.length).toFixed(3),
        underestimates: ratios.filter((r) => r > 1).length,
      });
    }
  }
}
console.table(rows);
