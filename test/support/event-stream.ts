import type { Test } from 'supertest';

/** The whole body of a Server-Sent Events response (the request given), once the server ends the stream. */
export function streamBody(request: Test): Promise<string> {
  return request
    .buffer(true)
    .parse((r, cb) => {
      let data = '';
      r.on('data', (c: Buffer) => (data += c.toString()));
      r.on('end', () => cb(null, data));
    })
    .then((r) => r.body as string);
}
