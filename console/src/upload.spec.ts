import { translate } from './i18n';
import JSZip from 'jszip';
import { makeDocx } from '../../test/support/docx';
import { declaredPartsSize, decodeText, decodeUtf8, essaysFromCsv, essaysFromPaste, parseCsv, problemText, readFiles, studentRefFromName } from './upload';

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
    const out = essaysFromCsv('class.csv', 'studentRef,text\ns1,第一篇\ns!2,bad ref\ns3,\n');
    expect(out.essays).toEqual([{ source: 'class.csv, row 2', studentRef: 's1', text: '第一篇' }]);
    expect(out.problems).toEqual([
      { file: 'class.csv', message: 'csvRow', vars: { row: 3 }, detail: 'csvBadStudentRef' },
      { file: 'class.csv', message: 'csvRow', vars: { row: 4 }, detail: 'csvTextEmpty' },
    ]);
    expect(out.problems.map((p) => problemText(p, (k, v) => translate('zh', k, v)))).toEqual(['class.csv：第 3 行：学生须为 1–100 个字母、数字、中间的空格或 ._:@-/#\'·・()（）[]', 'class.csv：第 4 行：正文为空']);
    expect(essaysFromCsv('x.csv', 'name,body\na,b').problems).toEqual([{ file: 'x.csv', message: 'csvHeaderAliases' }]);
  });

  it('takes the student from the file name and refuses what it cannot read', async () => {
    expect(studentRefFromName('张三 作文.docx')).toBe('张三 作文');
    expect(studentRefFromName('阿依古丽·买买提 (二班).docx')).toBe('阿依古丽·买买提 (二班)');
    expect(studentRefFromName('  李四!!  .txt')).toBe('李四');
    expect(studentRefFromName('  .txt')).toBeUndefined();
    expect(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]))).toBe('a');
    expect(decodeUtf8(new Uint8Array([0xff, 0xfe, 0x00]))).toBeNull();
    expect(decodeText(new Uint8Array([0xff, 0xfe, 0x00]))).toBeNull();
    const out = await readFiles([file('李四.txt', '  春天来了。 '), file('empty.txt', '  \n'), file('gbk.txt', new Uint8Array([0xb4, 0xba, 0xcc])), file('photo.png', 'x'), file('broken.docx', 'not a zip')]);
    expect(out.essays).toEqual([{ source: '李四.txt', studentRef: '李四', text: '春天来了。' }]);
    expect(out.problems.map((p) => [p.file, p.message])).toEqual([
      ['empty.txt', 'emptyFile'],
      ['gbk.txt', 'notTextFile'],
      ['photo.png', 'unsupportedFile'],
      ['broken.docx', 'docxUnreadable'],
    ]);
  });
  it('takes the columns by their usual names, in English or Chinese, in any order, with a title', () => {
    const out = essaysFromCsv('class.csv', '\uFEFF 姓名 ,标题, 作文 \n张三,春天,春天来了。\n');
    expect(out).toEqual({ essays: [{ source: 'class.csv, row 2', studentRef: '张三', title: '春天', text: '春天来了。' }], problems: [] });
    // A title cell of nothing visible (a zero-width space pasted in) is no title: the service would refuse it as blank.
    expect(essaysFromCsv('class.csv', '姓名,标题,作文\n张三,\u200b\u2060,春天来了。\n').essays).toEqual([{ source: 'class.csv, row 2', studentRef: '张三', text: '春天来了。' }]);
    for (const [student, text] of [['Student', 'Essay'], ['学号', '正文'], ['学生', '内容'], ['STUDENTREF', 'TEXT']]) {
      expect(essaysFromCsv('c.csv', `${text},${student}\nsome text,s1`).essays).toEqual([{ source: 'c.csv, row 2', studentRef: 's1', text: 'some text' }]);
    }
  });

  it('reads a CSV that Chinese Excel saved as GBK, and says to save as CSV UTF-8 when it is neither', async () => {
    // "学号,作文\r\n张三,春天来了。\r\n" in GBK
    const gbk = new Uint8Array([0xd1, 0xa7, 0xba, 0xc5, 0x2c, 0xd7, 0xf7, 0xce, 0xc4, 0x0d, 0x0a, 0xd5, 0xc5, 0xc8, 0xfd, 0x2c, 0xb4, 0xba, 0xcc, 0xec, 0xc0, 0xb4, 0xc1, 0xcb, 0xa1, 0xa3, 0x0d, 0x0a]);
    expect(decodeUtf8(gbk)).toBeNull();
    const out = await readFiles([file('class.csv', gbk), file('bad.csv', new Uint8Array([0x81, 0x20, 0xff]))]);
    expect(out.essays).toEqual([{ source: 'class.csv, row 2', studentRef: '张三', text: '春天来了。' }]);
    expect(out.problems.map((p) => problemText(p, (k, v) => translate('en', k, v)))).toEqual([expect.stringMatching(/^bad\.csv: .*CSV UTF-8/)]);
  });

  it('says where a quote is never closed, instead of an empty text', () => {
    const out = essaysFromCsv('class.csv', 'studentRef,text\ns1,第一篇\ns2,"他说：你好\n第二段\n');
    expect(out.essays).toEqual([{ source: 'class.csv, row 2', studentRef: 's1', text: '第一篇' }]);
    expect(out.problems).toEqual([{ file: 'class.csv', message: 'csvUnclosedQuote', vars: { line: 3 } }]);
    expect(problemText(out.problems[0], (k, v) => translate('zh', k, v))).toBe('class.csv：第 3 行开始的引号没有闭合');
  });

  it('reads a pasted class: essays between lines ---, each maybe naming its student', () => {
    const name = (n: number) => `pasted essay ${n}`;
    const pasted = '学号：s01\r\n春天来了。\n\n第二段。\n---\nstudentRef: s02\n夏天到了。\n ===\n秋天的故事——落叶。\n---\n学号：s<04>\n冬天。\n---\n学号: s05\n';
    const out = essaysFromPaste(pasted, 'ignored', name);
    expect(out.essays).toEqual([
      { source: 's01', studentRef: 's01', text: '春天来了。\n\n第二段。' },
      { source: 's02', studentRef: 's02', text: '夏天到了。' },
      { source: 'pasted essay 3', studentRef: undefined, text: '秋天的故事——落叶。' },
    ]);
    expect(out.problems).toEqual([
      { file: 'pasted essay 4', message: 'csvBadStudentRef' },
      { file: 'pasted essay 5', message: 'csvTextEmpty' },
    ]);
    // the essay refused for its student line is kept as pasted, to be corrected (an empty one has nothing to keep)
    expect(out.refused).toEqual(['学号：s<04>\n冬天。']);
    expect(essaysFromPaste("春天。\n---\nstudent: O'Brien, Kate\n夏天。", '', name).refused).toEqual(["student: O'Brien, Kate\n夏天。"]);
    // one essay, no separator: as before, the form's student field names it
    expect(essaysFromPaste('  一篇作文。\n-- 不是分隔线\n', ' 张三 ', name).essays).toEqual([{ source: '张三', studentRef: '张三', text: '一篇作文。\n-- 不是分隔线' }]);
    expect(essaysFromPaste(' \n---\n ', '', name)).toEqual({ essays: [], problems: [], refused: [] });
  });

  it('refuses a file larger than it can be before reading it, and a .docx whose text would unzip past 20 MB before inflating it', async () => {
    const zip = new JSZip();
    zip.file('word/document.xml', `<w:document><w:body><w:p><w:r><w:t>${'a'.repeat(21 * 1024 * 1024)}</w:t></w:r></w:p></w:body></w:document>`);
    const bomb = await zip.generateAsync({ type: 'uint8array', compression: 'DEFLATE' });
    expect(bomb.byteLength).toBeLessThan(100_000); // a small file…
    expect(declaredPartsSize(bomb.buffer.slice(bomb.byteOffset, bomb.byteOffset + bomb.byteLength) as ArrayBuffer)).toBeGreaterThan(21 * 1024 * 1024); // …declaring 21 MB of text
    const big = { name: 'huge.txt', size: 2 * 1024 * 1024, arrayBuffer: async () => Promise.reject(new Error('read')) };
    const out = await readFiles([file('bomb.docx', bomb), big, file('long.csv', new Uint8Array(9 * 1024 * 1024))]);
    // Before: the .docx was inflated whole (40 MB of XML took 1.5 s and 300 MB in a test), the rest read whole.
    expect(out.problems).toEqual([
      { file: 'bomb.docx', message: 'fileTooLarge', vars: { max: '20 MB of text' } },
      { file: 'huge.txt', message: 'fileTooLarge', vars: { max: '1 MB' } },
      { file: 'long.csv', message: 'fileTooLarge', vars: { max: '8 MB' } },
    ]);
    expect(out.problems.map((p) => problemText(p, (k, v) => translate('en', k, v)))[1]).toBe('huge.txt: the file is too large to read here (at most 1 MB)');
    // The text in a part of another name (mammoth follows _rels/.rels to it) counts the same.
    const renamed = new JSZip();
    renamed.file('_rels/.rels', '<Relationships><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/main.bin"/></Relationships>');
    renamed.file('word/main.bin', `<w:document><w:body><w:p><w:r><w:t>${'a'.repeat(21 * 1024 * 1024)}</w:t></w:r></w:p></w:body></w:document>`);
    const hidden = await renamed.generateAsync({ type: 'uint8array', compression: 'DEFLATE' });
    expect((await readFiles([file('hidden.docx', hidden)])).problems).toEqual([{ file: 'hidden.docx', message: 'fileTooLarge', vars: { max: '20 MB of text' } }]);
    // Pictures do not count: a document with 9 MB of them (stored) is within the cap.
    const pictures = new JSZip();
    pictures.file('word/document.xml', '<w:document><w:body><w:p><w:r><w:t>春天</w:t></w:r></w:p></w:body></w:document>');
    for (let i = 0; i < 3; i++) pictures.file(`word/media/image${i}.png`, new Uint8Array(3 * 1024 * 1024));
    const withPictures = await pictures.generateAsync({ type: 'uint8array', compression: 'DEFLATE' });
    expect(declaredPartsSize(withPictures.buffer.slice(withPictures.byteOffset, withPictures.byteOffset + withPictures.byteLength) as ArrayBuffer)).toBeLessThan(1_000);
    // An ordinary .docx declares its size and is read.
    const ok = await makeDocx(['春天来了。']);
    expect(declaredPartsSize(ok.buffer.slice(ok.byteOffset, ok.byteOffset + ok.byteLength) as ArrayBuffer)).toBeLessThan(10_000);
    expect(declaredPartsSize(new TextEncoder().encode('not a zip').buffer as ArrayBuffer)).toBeNull();
    // A ZIP64 end of directory (its directory elsewhere) is taken as too large, not as nothing.
    const zip64 = new Uint8Array(22);
    new DataView(zip64.buffer).setUint32(0, 0x06054b50, true);
    new DataView(zip64.buffer).setUint16(10, 0xffff, true);
    new DataView(zip64.buffer).setUint32(16, 0xffffffff, true);
    expect(declaredPartsSize(zip64.buffer)).toBe(Number.POSITIVE_INFINITY);
  });

  // A real .docx is read in the browser (mammoth's browser build) by test/console.e2e-spec.ts.
});
