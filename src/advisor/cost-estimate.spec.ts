import { Catalog } from '../llm/catalog';
import { callCost, estimateCosts } from './cost-estimate';

const catalog = Catalog.load();
const qwenTurbo = catalog.models.get('dashscope:qwen-turbo')!; // 0.3 / 0.06 / 0.6
const qwenMax = catalog.models.get('dashscope:qwen-max')!; // 2.4 / 0.48 / 9.6

describe('cost estimate', () => {
  const a = { dailyCalls: 1000, inputTokens: 2000, outputTokens: 500, cacheHitRate: 0, deepShare: 0, cachedInputShare: 0 };

  it('prices a call exactly, with the cached share of the input at the cached price', () => {
    expect(callCost(qwenTurbo, a)).toBe(2000n * 300n + 500n * 600n); // 0.0009 CNY
    expect(callCost(qwenTurbo, { ...a, cachedInputShare: 0.5 })).toBe(1000n * 300n + 1000n * 60n + 500n * 600n);
  });

  it('projects daily, monthly and yearly per model, and lets cache hits cost nothing', () => {
    const r = estimateCosts([{ model: qwenTurbo, tiers: ['standard'] }], qwenTurbo, qwenMax, a);
    expect(r.models[0]).toEqual({ model: 'dashscope:qwen-turbo', tiers: ['standard'], perCall: '0.0009', daily: '0.90', monthly: '27.00', yearly: '328.50' });
    const cached = estimateCosts([{ model: qwenTurbo, tiers: ['standard'] }], qwenTurbo, qwenMax, { ...a, cacheHitRate: 0.45 });
    expect(cached.models[0].daily).toBe('0.495');
  });

  it('mixes the standard model with the premium one for the deep share, against a naive all-premium pipeline', () => {
    const r = estimateCosts([], qwenTurbo, qwenMax, { ...a, deepShare: 0.1, cacheHitRate: 0.45 });
    // per call: 0.9 × 0.0009 + 0.1 × (2000 × 2.4e-6 + 500 × 9.6e-6 = 0.0096) = 0.00081 + 0.00096
    expect(r.mix.perCall).toBe('0.00177');
    // daily: 1000 calls × 0.55 reach a model: 0.55 × (900 × 0.0009 + 100 × 0.0096)… exactly:
    expect(r.mix.daily).toBe('0.9735');
    expect(r.naive).toMatchObject({ model: 'dashscope:qwen-max', perCall: '0.0096', daily: '9.60', monthly: '288.00' });
  });
});
