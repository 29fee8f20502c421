import { cnyProblem, formatCny, isCnyString, MAX_CNY, MAX_NANOS, MoneyFormatError, parseCny, pricePerMillionToNanosPerToken } from './money';

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

  it('says why an amount is refused: too large however many digits, too many decimals, or not an amount at all', () => {
    // Over 12 digits before the point (beyond the pattern): still "range", not "format".
    for (const over of ['99999999999999999999999.99', '1' + '0'.repeat(40), '00012345678901.5']) {
      expect(cnyProblem(over)).toBe('range');
      expect(() => parseCny(over)).toThrow(MoneyFormatError);
    }
    for (const fine of ['0.0000000001', '5.1234567890', '9223372036.8547758070']) expect(cnyProblem(fine)).toBe('precision');
    // Leading zeros are not size: 13 digits that are 5 CNY, and the signs, exponents and blanks, are "format".
    for (const bad of ['0000000000005.00', '-1.00', '+1', '1e400', '1.', '.5', ' 1', '1 ', '１２']) expect(cnyProblem(bad)).toBe('format');
    expect(cnyProblem('000000000005.00')).toBeNull(); // (12 digits: the pattern takes it)
  });

  it('converts per-million prices to whole nano-yuan per token', () => {
    expect(pricePerMillionToNanosPerToken('2')).toBe(2000n);
    expect(pricePerMillionToNanosPerToken('0.5')).toBe(500n);
    expect(pricePerMillionToNanosPerToken('0.035')).toBe(35n);
    expect(() => pricePerMillionToNanosPerToken('0.0001')).toThrow(/at most 3 decimals/);
  });
});
