/**
 * A class set from files: .txt (UTF-8), .docx (read by mammoth, in the browser) and .csv with the
 * columns studentRef,text (one essay per row). Each file gives essays or a problem that says what
 * was wrong with it; nothing is sent until every file is read.
 */
import type { MessageKey } from './i18n';

export interface UploadEssay {
  /** where it came from: "class.csv, row 3", "张三.docx" */
  source: string;
  studentRef?: string;
  text: string;
}

export interface UploadProblem {
  file: string;
  message: MessageKey;
  vars?: Record<string, string | number>;
}

export interface ReadFiles {
  essays: UploadEssay[];
  problems: UploadProblem[];
}

/** The service's studentRef rule: 1–100 letters, digits or ._:@-/ */
const STUDENT_REF = /^[\p{L}\p{N}._:@\-/]{1,100}$/u;

/** A student reference from a file name: "张三 作文.docx" → "张三-作文" (null when nothing is left). */
export function studentRefFromName(name: string): string | undefined {
  const base = name.replace(/\.[^.]+$/, '');
  const ref = base
    .replace(/[^\p{L}\p{N}._:@\-/]+/gu, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 100);
  return ref && STUDENT_REF.test(ref) ? ref : undefined;
}

/** UTF-8 text without its byte-order mark; null when the bytes are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    return null;
  }
}

/** RFC 4180 CSV: quoted fields with "" escapes, commas and newlines inside quotes, CRLF or LF. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
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
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.some((f) => f.trim() !== ''));
}

/** The essays of a studentRef,text CSV, or the problems of its rows. */
export function essaysFromCsv(file: string, text: string): ReadFiles {
  const rows = parseCsv(text);
  const header = rows[0]?.map((h) => h.trim().toLowerCase());
  if (!header || header.length < 2 || header[0] !== 'studentref' || header[1] !== 'text') {
    return { essays: [], problems: [{ file, message: 'csvHeader' }] };
  }
  const out: ReadFiles = { essays: [], problems: [] };
  rows.slice(1).forEach((r, i) => {
    const line = i + 2;
    const ref = (r[0] ?? '').trim();
    const body = (r[1] ?? '').trim();
    if (!body) out.problems.push({ file, message: 'csvRow', vars: { row: line, message: 'text is empty' } });
    else if (ref && !STUDENT_REF.test(ref)) out.problems.push({ file, message: 'csvRow', vars: { row: line, message: 'studentRef must be 1-100 letters, digits or ._:@-/' } });
    else out.essays.push({ source: `${file}, row ${line}`, studentRef: ref || undefined, text: body });
  });
  return out;
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
export async function readFiles(files: Array<{ name: string; arrayBuffer(): Promise<ArrayBuffer> }>): Promise<ReadFiles> {
  const out: ReadFiles = { essays: [], problems: [] };
  for (const f of files) {
    const ext = f.name.toLowerCase().split('.').pop();
    const buffer = await f.arrayBuffer();
    if (ext === 'txt' || ext === 'csv') {
      const text = decodeUtf8(new Uint8Array(buffer));
      if (text === null) {
        out.problems.push({ file: f.name, message: 'notUtf8' });
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
