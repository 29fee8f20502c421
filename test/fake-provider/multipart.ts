/**
 * Parsing `multipart/form-data` bodies (RFC 7578), for the Batch API's `POST /files` uploads:
 * parts with their name, filename, content type and bytes.
 */

export interface MultipartPart {
  name: string;
  /** Present (possibly empty) for a file part. */
  filename?: string;
  contentType?: string;
  data: Buffer;
}

const CRLF = Buffer.from('\r\n');
const HEADERS_END = Buffer.from('\r\n\r\n');

/**
 * The parts of a `multipart/form-data` body (RFC 7578 on RFC 2046): the boundary from the
 * content-type, CRLF line breaks, an optional preamble and epilogue. Null when the content-type is
 * not multipart/form-data or the body is not well formed (no closing delimiter, a part without a
 * content-disposition name).
 */
export function parseMultipart(contentType: string | undefined, body: Buffer): MultipartPart[] | null {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return null;
  const m = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary || boundary.length > 200) return null;
  const delimiter = Buffer.from(`--${boundary}`);
  const nextDelimiter = Buffer.concat([CRLF, delimiter]);

  // The first delimiter opens the body, or follows a preamble and its CRLF.
  let pos: number;
  if (body.subarray(0, delimiter.length).equals(delimiter)) {
    pos = 0;
  } else {
    pos = body.indexOf(nextDelimiter);
    if (pos < 0) return null;
    pos += CRLF.length;
  }
  const parts: MultipartPart[] = [];
  for (;;) {
    let p = pos + delimiter.length;
    if (body[p] === 0x2d && body[p + 1] === 0x2d) return parts; // "--boundary--": the end (an epilogue may follow)
    while (body[p] === 0x20 || body[p] === 0x09) p++; // transport padding
    if (body[p] !== 0x0d || body[p + 1] !== 0x0a) return null;
    p += 2;
    let headersEnd: number;
    let dataStart: number;
    if (body[p] === 0x0d && body[p + 1] === 0x0a) {
      headersEnd = p; // no headers at all
      dataStart = p + 2;
    } else {
      headersEnd = body.indexOf(HEADERS_END, p);
      if (headersEnd < 0) return null;
      dataStart = headersEnd + HEADERS_END.length;
    }
    const dataEnd = body.indexOf(nextDelimiter, dataStart);
    if (dataEnd < 0) return null;

    const headers = new Map<string, string>();
    for (const line of body.subarray(p, headersEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const disposition = headers.get('content-disposition');
    if (!disposition || !/^form-data\s*(;|$)/i.test(disposition)) return null;
    const params = dispositionParams(disposition);
    const name = params.get('name');
    if (name === undefined) return null;
    parts.push({ name, filename: params.get('filename'), contentType: headers.get('content-type'), data: body.subarray(dataStart, dataEnd) });
    pos = dataEnd + CRLF.length;
  }
}

/** The parameters of a Content-Disposition value (names lower-cased; `filename*` wins over `filename`). */
function dispositionParams(value: string): Map<string, string> {
  const plain = new Map<string, string>();
  const extended = new Map<string, string>();
  for (const m of value.matchAll(/;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g)) {
    const key = m[1].toLowerCase();
    const v = m[2] !== undefined ? m[2].replace(/\\(["\\])/g, '$1') : m[3].trim();
    if (key.endsWith('*')) {
      // RFC 8187: charset'language'percent-encoded
      const ext = /^[^']*'[^']*'(.*)$/.exec(v);
      try {
        extended.set(key.slice(0, -1), decodeURIComponent(ext ? ext[1] : v));
      } catch {
        // not valid percent-encoding: keep the plain parameter
      }
    } else if (!plain.has(key)) {
      plain.set(key, v);
    }
  }
  for (const [k, v] of extended) plain.set(k, v);
  return plain;
}
