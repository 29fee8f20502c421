import { attachment, CSV_BOM, csvCell, csvTable } from './csv';

describe('csv', () => {
  it('names a download after a title: UTF-8 for browsers, ASCII for old clients, nothing a file system or a header refuses', () => {
    expect(attachment('Unit 3 grades.csv', 'grades.csv')).toBe(`attachment; filename="Unit 3 grades.csv"; filename*=UTF-8''Unit%203%20grades.csv`);
    expect(attachment('九年级/作文 grades.csv', 'grades.csv')).toBe(`attachment; filename="grades.csv"; filename*=UTF-8''${encodeURIComponent('九年级 作文 grades.csv')}`);
    // Quotes, control characters and line breaks (a header injection) are dropped.
    expect(attachment('a"b\r\nSet-Cookie: x\u0000 grades.csv', 'grades.csv')).toBe(`attachment; filename="a b Set-Cookie x grades.csv"; filename*=UTF-8''a%20b%20Set-Cookie%20x%20grades.csv`);
    expect(attachment('\u200b\u200b', 'grades.csv')).toBe(`attachment; filename="grades.csv"; filename*=UTF-8''grades.csv`);
  });

  it('cuts a long title at 80 without splitting a character in two (an emoji at the cut threw, a 500 for the export)', () => {
    const name = 'a'.repeat(79) + '😀 grades';
    expect(attachment(name, 'grades.csv')).toBe(`attachment; filename="${'a'.repeat(79)}"; filename*=UTF-8''${'a'.repeat(79)}`);
    expect(attachment('a'.repeat(78) + '😀 grades', 'grades.csv')).toBe(`attachment; filename="grades.csv"; filename*=UTF-8''${'a'.repeat(78)}${encodeURIComponent('😀')}`);
  });

  it('starts with a BOM and ends lines with CRLF, so Excel reads UTF-8 Chinese', () => {
    const t = csvTable(['学生', '分数'], [['张伟', 48]]);
    expect(t.startsWith(CSV_BOM)).toBe(true);
    expect(t).toBe('\uFEFF学生,分数\r\n张伟,48\r\n');
  });

  it('quotes commas, quotes and line breaks, and doubles quotes', () => {
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('他说"好"')).toBe('"他说""好"""');
    expect(csvCell('line\nbreak')).toBe('"line\nbreak"');
    expect(csvCell(' padded')).toBe('" padded"');
  });

  it('keeps a formula as text', () => {
    expect(csvCell('=HYPERLINK("http://x","y")')).toBe(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(csvCell('+1')).toBe("'+1");
    expect(csvCell('-2+3+cmd|\' /C calc\'!A0')).toBe("'-2+3+cmd|' /C calc'!A0");
    expect(csvCell('-1e5')).toBe("'-1e5");
    // A plain decimal (a negative margin in the month report) is a number Excel can sum, not a formula.
    expect(csvCell('-2')).toBe('-2');
    expect(csvCell('-2.445')).toBe('-2.445');
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    // After leading spaces too (a program that trims them on import would read a formula).
    expect(csvCell(' =HYPERLINK("http://x")')).toBe(`"' =HYPERLINK(""http://x"")"`);
    expect(csvCell('\u3000\u3000+1+1')).toBe("'\u3000\u3000+1+1");
    expect(csvCell(' plain')).toBe('" plain"');
    expect(csvCell('\u00a0@SUM(A1)')).toBe("'\u00a0@SUM(A1)");
    expect(csvCell('\t\u00a0=1')).toBe("'\t\u00a0=1");
    expect(csvCell(-2)).toBe('-2'); // a number is a number
  });

  it('writes nothing for missing values', () => {
    expect(csvCell(null)).toBe('');
    expect(csvCell(undefined)).toBe('');
    expect(csvCell(Number.NaN)).toBe('');
  });
});
