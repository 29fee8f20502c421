import { createHash } from 'node:crypto';

/** A UUID as the API's ids are written (any version, either case): an id that is not one is not found. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A UUID that `id` and `purpose` always give the same (SHA-256 of both, written as a version-5-style
 * UUID): the id of something a retry must find again, made from the id of what it belongs to.
 */
export function derivedUuid(purpose: string, id: string): string {
  const h = createHash('sha256').update(`${purpose}\u0000${id}`).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
