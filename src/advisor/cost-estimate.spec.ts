import { Catalog } from '../llm/catalog';
import { callCost, estimateCosts } from './cost-estimate';

const catalog = Catalog.load();
const qwenFlash = catalog.models.get('dashscope:qwen-flash')!; // 0.15 / 0.03 / 1.5 CNY per million
const qwen3Max = catalog.models.get('dashscope:qwen3-max')!; // 2.5 / 0.5 / 10

describe('cost estimate', () => {
  const a = { dailyCalls: 1000, inputTokens: 2000, outputTokens: 500, cacheHitRate: 0, deepShare: 0, cachedInputShare: 0 };

  it('prices a call exactly, with the cached share of the input at the cached price', () => {
    expect(callCost(qwenFlash, a)).toBe(2000n * 150n + 500n * 1500n); // 0.00105 CNY
    expect(callCost(qwenFlash, { ...a, cachedInputShare: 0.5 })).toBe(1000n * 150n + 1000n * 30n + 500n * 1500n);
  });

  it('estimates a model with time-of-day prices at its highest window (DeepSeek peak)', () => {
    const deepseek = catalog.models.get('deepseek:deepseek-flash')!; // off-peak 1 / 0.02 / 4, peak 2 / 0.04 / 8
    expect(callCost(deepseek, a)).toBe(2000n * 2000n + 500n * 8000n);
  });

  it('projects daily, monthly and yearly per model, and lets cache hits cost nothing', () => {
    const r = estimateCosts([{ model: qwenFlash, tiers: ['standard'] }], qwenFlash, qwen3Max, a);
    expect(r.models[0]).toEqual({ model: 'dashscope:qwen-flash', tiers: ['standard'], perCall: '0.00105', daily: '1.05', monthly: '31.50', yearly: '383.25' });
    const cached = estimateCosts([{ model: qwenFlash, tiers: ['standard'] }], qwenFlash, qwen3Max, { ...a, cacheHitRate: 0.45 });
    expect(cached.models[0].daily).toBe('0.5775');
  });

  it('mixes the standard model with the premium one for the deep share, against a naive all-premium pipeline', () => {
    const r = estimateCosts([], qwenFlash, qwen3Max, { ...a, deepShare: 0.1, cacheHitRate: 0.45 });
    // per call: 0.9 × 0.00105 + 0.1 × (2000 × 2.5e-6 + 500 × 10e-6 = 0.01) = 0.000945 + 0.001
    expect(r.mix.perCall).toBe('0.001945');
    // daily: 1000 calls × 0.55 reach a model: 0.55 × (900 × 0.00105 + 100 × 0.01)
    expect(r.mix.daily).toBe('1.06975');
    expect(r.naive).toMatchObject({ model: 'dashscope:qwen3-max', perCall: '0.01', daily: '10.00', monthly: '300.00' });
  });
});
