import { jsonShapeProblem } from './json-shape';

const limits = { depth: 4, items: 3, totalItems: 6 };
const check = (text: string) => jsonShapeProblem(Buffer.from(text), limits);

describe('jsonShapeProblem', () => {
  it('takes what is within every limit, whatever the strings hold', () => {
    for (const ok of ['{}', '[]', '"x"', '42', '[1, 2, 3]', '{"a": 1, "b": [1, 2], "c": {}}', '[[[[]]]]', '["a,b,c,d,e", "[[[[[[", "\\",,,"]', ' [ 1 ,\n 2 ] ']) {
      expect([ok, check(ok)]).toEqual([ok, null]);
    }
  });

  it('refuses nesting past the depth', () => {
    expect(check('[[[[[]]]]]')).toBe('depth');
    expect(check('{"a": {"b": {"c": {"d": {}}}}}')).toBe('depth');
  });

  it('refuses an array or object with more items than one container may hold', () => {
    expect(check('[1, 2, 3, 4]')).toBe('items');
    expect(check('[{}, {}, {}, {}]')).toBe('items');
    expect(check('{"a": 1, "b": 2, "c": 3, "d": 4}')).toBe('items');
    expect(check('[[], [], [], []]')).toBe('items');
  });

  it('refuses more items in all than a body may hold, spread over containers', () => {
    expect(check('[[1, 2, 3], [4, 5]]')).toBe('totalItems'); // 2 + 5 = 7 items
    expect(check('[[1, 2], [3, 4]]')).toBeNull(); // 2 + 4 = 6
  });

  it('stops early on a huge body: linear, whatever its shape', () => {
    const huge = Buffer.from(`[${'{},'.repeat(3_000_000)}{}]`);
    expect(jsonShapeProblem(huge, { depth: 32, items: 5_000, totalItems: 50_000 })).toBe('items');
  });
});
