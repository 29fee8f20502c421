import { decodeUtf8, essaysFromCsv, parseCsv, readFiles, studentRefFromName } from './upload';

const file = (name: string, content: string | Uint8Array) => ({
  name,
  arrayBuffer: async () => {
    const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  },
});

describe('class-set upload', () => {
  it('parses RFC 4180 CSV: quotes, escaped quotes, commas and newlines in fields, CRLF', () => {
    expect(parseCsv('studentRef,text\r\ns1,"他说：""你好,世界""\n第二段"\r\ns2,plain\r\n')).toEqual([
      ['studentRef', 'text'],
      ['s1', '他说："你好,世界"\n第二段'],
      ['s2', 'plain'],
    ]);
  });

  it('reads a studentRef,text CSV and says which rows are wrong', () => {
    const out = essaysFromCsv('class.csv', 'studentRef,text\ns1,第一篇\ns 2,bad ref\ns3,\n');
    expect(out.essays).toEqual([{ source: 'class.csv, row 2', studentRef: 's1', text: '第一篇' }]);
    expect(out.problems).toEqual([
      { file: 'class.csv', message: 'csvRow', vars: { row: 3, message: expect.stringContaining('studentRef') } },
      { file: 'class.csv', message: 'csvRow', vars: { row: 4, message: 'text is empty' } },
    ]);
    expect(essaysFromCsv('x.csv', 'name,essay\na,b').problems).toEqual([{ file: 'x.csv', message: 'csvHeader' }]);
  });

  it('takes the student from the file name and refuses what it cannot read', async () => {
    expect(studentRefFromName('张三 作文.docx')).toBe('张三-作文');
    expect(studentRefFromName('  .txt')).toBeUndefined();
    expect(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]))).toBe('a');
    expect(decodeUtf8(new Uint8Array([0xff, 0xfe, 0x00]))).toBeNull();
    const out = await readFiles([file('李四.txt', '  春天来了。 '), file('empty.txt', '  \n'), file('gbk.txt', new Uint8Array([0xb4, 0xba, 0xcc])), file('photo.png', 'x'), file('broken.docx', 'not a zip')]);
    expect(out.essays).toEqual([{ source: '李四.txt', studentRef: '李四', text: '春天来了。' }]);
    expect(out.problems.map((p) => [p.file, p.message])).toEqual([
      ['empty.txt', 'emptyFile'],
      ['gbk.txt', 'notUtf8'],
      ['photo.png', 'unsupportedFile'],
      ['broken.docx', 'docxUnreadable'],
    ]);
  });
  // A real .docx is read in the browser (mammoth's browser build) by test/console.e2e-spec.ts.
});
