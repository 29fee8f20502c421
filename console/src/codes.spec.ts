import { translate, translateCode } from './i18n';

describe('the API codes the console shows, in words', () => {
  it("names a grade's source, a tier and the offline 'model' in both languages", () => {
    expect(translate('zh', 'gradedBy', { source: translateCode('zh', 'source', 'offline') })).toBe('评分来源：离线估分');
    expect(['model', 'offline', 'teacher', 'reused'].map((s) => translateCode('zh', 'source', s))).toEqual(['模型', '离线估分', '教师', '沿用分数']);
    expect(['model', 'offline', 'teacher', 'reused'].map((s) => translateCode('en', 'source', s))).toEqual(['model', 'offline estimate', 'teacher', 'reused grade']);
    expect(translateCode('zh', 'tier', 'standard')).toBe('标准');
    expect(translateCode('zh', 'tier', 'deep')).toBe('高级（精批）');
    expect(translateCode('zh', 'model', 'offline')).toBe('离线（未使用模型）');
    expect(translateCode('zh', 'model', 'deepseek:deepseek-chat')).toBe('deepseek:deepseek-chat');
  });

  it('reads the remaining budget naturally, and labels without the other language', () => {
    expect(translate('zh', 'remainingSpent', { remaining: '¥500.00', pct: '0.0%' })).toBe('¥500.00（已花费 0.0%）');
    expect(translate('en', 'remainingSpent', { remaining: '¥500.00', pct: '0.0%' })).toBe('¥500.00 (0.0% spent)');
    expect(translate('en', 'prompt')).toBe('Essay prompt');
    expect(translate('zh', 'navMain')).not.toBe('main');
  });
});
