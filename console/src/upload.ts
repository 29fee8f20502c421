/**
 * A class set from files: .txt (UTF-8, or GB18030/GBK as Chinese Windows saves it), .docx (read by
 * mammoth, in the browser) and .csv with a student column and a text column (one essay per row;
 * studentRef/student/学号/姓名/学生 and text/essay/作文/正文/内容, optionally title/标题), or from
 * a paste of one essay or of several separated by a line `---`. Each file gives essays or a problem
 * that says what was wrong with it; nothing is sent until every file is read.
 */
import { isBlank } from '../../src/common/invisible';
import type { MessageKey } from './i18n';

export interface UploadEssay {
  /** where it came from: "class.csv, row 3", "张三.docx" */
  source: string;
  studentRef?: string;
  title?: string;
  text: string;
}

export interface UploadProblem {
  file: string;
  message: MessageKey;
  vars?: Record<string, string | number>;
  /** what was wrong, in words, put in `vars.message` when shown (a CSV row's problem) */
  detail?: MessageKey;
}

/** A problem in words: `t` is the console's translate. */
export function problemText(p: UploadProblem, t: (key: MessageKey, vars?: Record<string, string | number>) => string): string {
  const vars = p.detail ? { ...p.vars, message: t(p.detail) } : p.vars;
  return t('fileError', { file: p.file, message: t(p.message, vars) });
}

export interface ReadFiles {
  essays: UploadEssay[];
  problems: UploadProblem[];
}

/** The service's studentRef rule: 1–100 letters, digits, spaces inside, or ._:@-/#'·・()（）[] (a name as a class list writes it). */
const STUDENT_REF = /^(?=\S)[\p{L}\p{M}\p{N}._:@\-/#'·・()（）[\] ]{1,100}(?<=\S)$/u;

/** A student reference from a file name: "张三 作文.docx" → "张三 作文" (undefined when nothing is left). */
export function studentRefFromName(name: string): string | undefined {
  const base = name.replace(/\.[^.]+$/, '');
  const ref = base
    .replace(/[^\p{L}\p{M}\p{N}._:@\-/#'·・()（）[\] ]+/gu, '-')
    .replace(/\s+/g, ' ')
    .replace(/^[-\s]+|[-\s]+$/g, '')
    .slice(0, 100)
    .trim();
  return ref && STUDENT_REF.test(ref) ? ref : undefined;
}

/** UTF-8 text without its byte-order mark; null when the bytes are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  return decode('utf-8', bytes);
}

function decode(encoding: string, bytes: Uint8Array): string | null {
  try {
    return new TextDecoder(encoding, { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    return null;
  }
}

/**
 * The text of a .txt or .csv: UTF-8, else GB18030 (a superset of GBK, which Chinese Excel and
 * Notepad save by default); null when it is neither.
 */
export function decodeText(bytes: Uint8Array): string | null {
  return decode('utf-8', bytes) ?? decode('gb18030', bytes);
}

export interface ParsedCsv {
  rows: string[][];
  /** the line a quoted field opened on and never closed (its row is left out) */
  unclosedQuoteLine?: number;
}

/** RFC 4180 CSV: quoted fields with "" escapes, commas and newlines inside quotes, CRLF or LF. */
export function parseCsv(text: string): string[][] {
  return parseCsvChecked(text).rows;
}

/** parseCsv, saying where a quote was opened and never closed. */
export function parseCsvChecked(text: string): ParsedCsv {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let quoteLine = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n' || (c === '\r' && text[i + 1] !== '\n')) line++;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') {
      quoted = true;
      quoteLine = line;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (quoted) return { rows: rows.filter((r) => r.some((f) => f.trim() !== '')), unclosedQuoteLine: quoteLine };
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return { rows: rows.filter((r) => r.some((f) => f.trim() !== '')) };
}

/** The names a column may have in the first row (compared trimmed, in lower case). */
const STUDENT_COLUMN = ['studentref', 'student', '学号', '姓名', '学生'];
const TEXT_COLUMN = ['text', 'essay', '作文', '正文', '内容'];
const TITLE_COLUMN = ['title', '标题'];

/** The essays of a CSV with a student and a text column (and maybe a title), or the problems of its rows. */
export function essaysFromCsv(file: string, text: string): ReadFiles {
  const { rows, unclosedQuoteLine } = parseCsvChecked(text);
  const header = rows[0]?.map((h) => h.replace(/^\uFEFF/, '').trim().toLowerCase());
  const column = (names: string[]) => header?.findIndex((h) => names.includes(h)) ?? -1;
  const [student, body, title] = [column(STUDENT_COLUMN), column(TEXT_COLUMN), column(TITLE_COLUMN)];
  if (student < 0 || body < 0) {
    return { essays: [], problems: [{ file, message: 'csvHeaderAliases' }] };
  }
  const out: ReadFiles = { essays: [], problems: [] };
  rows.slice(1).forEach((r, i) => {
    const line = i + 2;
    const ref = (r[student] ?? '').trim();
    const essay = (r[body] ?? '').trim();
    const essayTitle = title >= 0 ? (r[title] ?? '').trim() : '';
    if (!essay) out.problems.push({ file, message: 'csvRow', vars: { row: line }, detail: 'csvTextEmpty' });
    else if (ref && !STUDENT_REF.test(ref)) out.problems.push({ file, message: 'csvRow', vars: { row: line }, detail: 'csvBadStudentRef' });
    else out.essays.push({ source: `${file}, row ${line}`, studentRef: ref || undefined, ...(essayTitle && !isBlank(essayTitle) ? { title: essayTitle.slice(0, 200) } : {}), text: essay });
  });
  if (unclosedQuoteLine !== undefined) out.problems.push({ file, message: 'csvUnclosedQuote', vars: { line: unclosedQuoteLine } });
  return out;
}

/** A line that separates two pasted essays: only --- or === (three or more). */
const SEPARATOR = /^[ \t]*(?:-{3,}|={3,})[ \t]*$/m;
/** An essay's first line naming its student: "学号：12", "studentRef: s-12", "姓名: 张三". */
const STUDENT_LINE = /^[ \t]*(?:studentref|student|学号|姓名|学生)[ \t]*[:：][ \t]*(\S.*?)[ \t]*$/i;

/**
 * Pasted text: one essay, or a whole class separated by lines `---` (or `===`), each maybe starting
 * with a line naming its student. `studentRef` (the form's field) is the student of a single essay
 * that names none. Problems are named "pasted essay 2" (by `name`); `refused` has the pasted parts
 * not sent as they were pasted (a student line the service would refuse), to be kept in the box.
 */
export function essaysFromPaste(text: string, studentRef: string, name: (n: number) => string): ReadFiles & { refused: string[] } {
  const parts = text
    .replace(/\r\n?/g, '\n')
    .split(SEPARATOR)
    .map((p) => p.trim())
    .filter((p) => p !== '');
  const out: ReadFiles & { refused: string[] } = { essays: [], problems: [], refused: [] };
  parts.forEach((part, i) => {
    const source = name(i + 1);
    const lines = part.split('\n');
    const named = STUDENT_LINE.exec(lines[0]);
    const essay = (named ? lines.slice(1).join('\n') : part).trim();
    const ref = named ? named[1] : parts.length === 1 ? studentRef.trim() : '';
    if (!essay) out.problems.push({ file: source, message: 'csvTextEmpty' });
    else if (ref && !STUDENT_REF.test(ref)) {
      out.problems.push({ file: source, message: 'csvBadStudentRef' });
      out.refused.push(part); // as pasted, to be corrected in the box
    } else out.essays.push({ source: ref || source, studentRef: ref || undefined, text: essay });
  });
  return out;
}

const MiB = 1024 * 1024;
/**
 * The largest file read, by kind: an essay is at most 20,000 characters (80 KB of UTF-8), a class
 * set's CSV at most the 8 MiB the service takes in one batch; a .docx holds its styles and images too.
 */
const MAX_FILE_BYTES: Record<string, number> = { txt: 1 * MiB, csv: 8 * MiB, docx: 8 * MiB };
/**
 * The most XML a .docx may declare, all its parts together (a 20,000-character essay with heavy
 * formatting is a few MB): a crafted one of 95 KB unzipped to 40 MB held the tab for seconds and
 * took 300 MB, all for a text the service then refuses.
 */
const MAX_DOCX_XML_BYTES = 20 * MiB;

/**
 * The uncompressed size the parts of a .docx (a zip) other than its pictures (`word/media/`)
 * declare in its central directory, added up, read before anything is inflated: mammoth finds the
 * document through `_rels/.rels`, so a part of any name may hold its text. Null when there is no central directory to be found (mammoth then says
 * what is wrong). A ZIP64 size (0xffffffff) counts as it is: too large.
 */
export function declaredPartsSize(buffer: ArrayBuffer): number | null {
  const v = new DataView(buffer);
  const names = new TextDecoder();
  // The end of the central directory: its signature in the last 22 + 65,535 (comment) bytes.
  for (let i = buffer.byteLength - 22; i >= Math.max(0, buffer.byteLength - 22 - 65_535); i--) {
    if (v.getUint32(i, true) !== 0x06054b50) continue;
    const entries = v.getUint16(i + 10, true);
    let p = v.getUint32(i + 16, true);
    // ZIP64 (its directory found elsewhere): no .docx of a few MB needs it; read as too large.
    if (entries === 0xffff || p === 0xffffffff) return Number.POSITIVE_INFINITY;
    let total = 0;
    for (let n = 0; n < entries && p + 46 <= buffer.byteLength; n++) {
      if (v.getUint32(p, true) !== 0x02014b50) break;
      const nameLength = v.getUint16(p + 28, true);
      if (p + 46 + nameLength > buffer.byteLength) break;
      const name = names.decode(new Uint8Array(buffer, p + 46, nameLength)).toLowerCase();
      // (Every part but the pictures, whatever its name: the document may be any part .rels names.)
      if (!name.startsWith('word/media/')) total += v.getUint32(p + 24, true);
      p += 46 + nameLength + v.getUint16(p + 30, true) + v.getUint16(p + 32, true);
    }
    return total;
  }
  return null;
}

/** Reads .docx text with mammoth (loaded only when a .docx is uploaded). */
async function docxText(buffer: ArrayBuffer): Promise<string> {
  const loaded = await import('mammoth');
  // a CommonJS package: bundled, its exports are the module's default
  const mammoth = loaded.default ?? loaded;
  const result = await mammoth.extractRawText({ arrayBuffer: buffer });
  return result.value;
}

/** Reads every file; the essays found and, per file, what was wrong. */
export async function readFiles(files: Array<{ name: string; size?: number; arrayBuffer(): Promise<ArrayBuffer> }>): Promise<ReadFiles> {
  const out: ReadFiles = { essays: [], problems: [] };
  for (const f of files) {
    const ext = f.name.toLowerCase().split('.').pop() ?? '';
    const max = MAX_FILE_BYTES[ext];
    // (A File says its size before it is read.)
    if (max !== undefined && f.size !== undefined && f.size > max) {
      out.problems.push({ file: f.name, message: 'fileTooLarge', vars: { max: `${max / MiB} MB` } });
      continue;
    }
    const buffer = await f.arrayBuffer();
    if (max !== undefined && buffer.byteLength > max) {
      out.problems.push({ file: f.name, message: 'fileTooLarge', vars: { max: `${max / MiB} MB` } });
      continue;
    }
    if (ext === 'txt' || ext === 'csv') {
      const text = decodeText(new Uint8Array(buffer));
      if (text === null) {
        out.problems.push({ file: f.name, message: 'notTextFile' });
        continue;
      }
      if (ext === 'csv') {
        const csv = essaysFromCsv(f.name, text);
        out.essays.push(...csv.essays);
        out.problems.push(...csv.problems);
        continue;
      }
      if (!text.trim()) out.problems.push({ file: f.name, message: 'emptyFile' });
      else out.essays.push({ source: f.name, studentRef: studentRefFromName(f.name), text: text.trim() });
    } else if (ext === 'docx') {
      const declared = declaredPartsSize(buffer);
      if (declared !== null && declared > MAX_DOCX_XML_BYTES) {
        out.problems.push({ file: f.name, message: 'fileTooLarge', vars: { max: `${MAX_DOCX_XML_BYTES / MiB} MB of text` } });
        continue;
      }
      try {
        const text = (await docxText(buffer)).trim();
        if (!text) out.problems.push({ file: f.name, message: 'emptyFile' });
        else out.essays.push({ source: f.name, studentRef: studentRefFromName(f.name), text });
      } catch (err) {
        out.problems.push({ file: f.name, message: 'docxUnreadable', vars: { message: err instanceof Error ? err.message : String(err) } });
      }
    } else {
      out.problems.push({ file: f.name, message: 'unsupportedFile' });
    }
  }
  return out;
}
