import { formatCny, parseCny, pricePerMillionToNanosPerToken } from './money';

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

  it('converts per-million prices to whole nano-yuan per token', () => {
    expect(pricePerMillionToNanosPerToken('2')).toBe(2000n);
    expect(pricePerMillionToNanosPerToken('0.5')).toBe(500n);
    expect(pricePerMillionToNanosPerToken('0.035')).toBe(35n);
    expect(() => pricePerMillionToNanosPerToken('0.0001')).toThrow(/at most 3 decimals/);
  });
});
