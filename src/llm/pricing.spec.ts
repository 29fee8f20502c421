import { formatCny } from '../common/money';
import { Catalog } from './catalog';
import { costOf, worstCaseCost } from './pricing';

const catalog = Catalog.load();

describe('pricing', () => {
  const deepseek = catalog.models.get('deepseek:deepseek-chat')!.pricing; // 2 / 0.2 / 3 CNY per million

  it('prices uncached input, cached input and output each at its own rate, exactly', () => {
    // 1,000 uncached × 2e-6 + 200 cached × 0.2e-6 + 300 output × 3e-6 = 0.002 + 0.00004 + 0.0009
    expect(formatCny(costOf({ inputTokens: 1200, cachedInputTokens: 200, outputTokens: 300 }, deepseek))).toBe('0.00294');
    expect(costOf({ inputTokens: 1, cachedInputTokens: 1, outputTokens: 0 }, deepseek)).toBe(200n); // 0.2 CNY/M = 200 nano-yuan a token
  });

  it('never counts more cached tokens than input tokens', () => {
    expect(costOf({ inputTokens: 10, cachedInputTokens: 50, outputTokens: 0 }, deepseek)).toBe(10n * 200n);
  });

  it('adds up without drift over many calls (integers, not floats)', () => {
    const qwen = catalog.models.get('dashscope:qwen-turbo')!.pricing; // 0.3 / 0.06 / 0.6
    let total = 0n;
    for (let i = 0; i < 100_000; i++) total += costOf({ inputTokens: 7, cachedInputTokens: 3, outputTokens: 1 }, qwen);
    // per call: 4×300 + 3×60 + 1×600 = 1980 nano-yuan
    expect(total).toBe(198_000_000n);
    expect(formatCny(total)).toBe('0.198');
  });

  it('takes the worst case as every input token uncached and the whole output allowance', () => {
    expect(worstCaseCost(1000, 500, deepseek)).toBe(1000n * 2000n + 500n * 3000n);
  });
});
