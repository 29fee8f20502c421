import { cnyProblem, formatCny, isCnyString, MAX_CNY, MAX_NANOS, parseCny, pricePerMillionToNanosPerToken } from './money';

describe('money', () => {
  it.each([
    ['5000', 5_000_000_000_000n, '5000.00'],
    ['5000.00', 5_000_000_000_000n, '5000.00'],
    ['0.012940', 12_940_000n, '0.01294'],
    ['0.000640', 640_000n, '0.00064'],
    ['0.000000001', 1n, '0.000000001'],
    ['0', 0n, '0.00'],
  ])('parses %s exactly and formats it back', (text, nanos, formatted) => {
    expect(parseCny(text)).toBe(nanos);
    expect(formatCny(nanos)).toBe(formatted);
    expect(parseCny(formatCny(nanos))).toBe(nanos);
  });

  it.each(['-1', '1e3', '1.0000000001', '', ' 5', '5.', 'abc', '1,000'])('rejects %p', (text) => {
    expect(() => parseCny(text)).toThrow(/not a decimal amount/);
  });

  it('takes amounts up to what a BIGINT of nano-yuan holds, and refuses anything larger', () => {
    expect(parseCny(MAX_CNY)).toBe(MAX_NANOS);
    expect(MAX_NANOS).toBe(2n ** 63n - 1n);
    expect(formatCny(MAX_NANOS)).toBe(MAX_CNY);
    expect(isCnyString(MAX_CNY)).toBe(true);
    for (const over of ['9223372036.854775808', '9223372037', '999999999999.999999999']) {
      expect(() => parseCny(over)).toThrow(/more than the largest amount, 9223372036.854775807 CNY/);
      expect(isCnyString(over)).toBe(false);
      expect(cnyProblem(over)).toBe('range');
    }
    expect(cnyProblem('abc')).toBe('format');
    expect(cnyProblem(5)).toBe('format');
  });

  it('converts per-million prices to whole nano-yuan per token', () => {
    expect(pricePerMillionToNanosPerToken('2')).toBe(2000n);
    expect(pricePerMillionToNanosPerToken('0.5')).toBe(500n);
    expect(pricePerMillionToNanosPerToken('0.035')).toBe(35n);
    expect(() => pricePerMillionToNanosPerToken('0.0001')).toThrow(/at most 3 decimals/);
  });
});
