import { isIPv6 } from 'node:net';

/**
 * What an IP address is, for deciding whether Inkstone may connect to it on a tenant's behalf.
 * Only public unicast addresses pass; everything else is named (loopback, private, link-local, …)
 * so a refusal can say why. IPv6 forms that carry an IPv4 address (mapped, translated, NAT64, 6to4,
 * Teredo) are judged by the IPv4 address inside them, since that is where the packets go.
 */
export interface AddressVerdict {
  /** The address written canonically (dotted quad, or RFC 5952 IPv6). */
  address: string;
  family: 4 | 6;
  /** null for a public unicast address; otherwise what it is, e.g. "loopback". */
  blocked: string | null;
  /** A cloud metadata endpoint: refused even when private addresses are allowed. */
  metadata: boolean;
}

type Range4 = readonly [base: string, prefix: number, what: string];

/** IANA's IPv4 special-purpose registry, minus what is globally reachable; most specific first. */
const V4_BLOCKS: readonly Range4[] = [
  ['0.0.0.0', 32, 'unspecified'],
  ['0.0.0.0', 8, 'reserved, "this network"'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'CGNAT shared address space'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved for IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved, 6to4 relay anycast'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['255.255.255.255', 32, 'broadcast'],
  ['240.0.0.0', 4, 'reserved'],
];

/** Cloud metadata and platform endpoints: instance credentials live behind them. */
const V4_METADATA = new Map<string, string>([
  ['169.254.169.254', 'cloud metadata'],
  ['169.254.170.2', 'AWS ECS metadata'],
  ['169.254.0.23', 'Tencent Cloud metadata'],
  ['100.100.100.200', 'Alibaba Cloud metadata'],
  ['168.63.129.16', 'Azure platform endpoint'],
]);

type Range6 = readonly [base: string, prefix: number, what: string];

const V6_BLOCKS: readonly Range6[] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['64:ff9b:1::', 48, 'private, local-use NAT64'],
  ['::', 8, 'reserved'],
  ['100::', 64, 'reserved, discard-only'],
  ['2001:db8::', 32, 'documentation'],
  ['2001::', 23, 'reserved for IETF protocol assignments'],
  ['3fff::', 20, 'documentation'],
  ['5f00::', 16, 'reserved for SRv6'],
  ['fc00::', 7, 'unique local, private'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local, deprecated'],
  ['ff00::', 8, 'multicast'],
];

/** IPv6 metadata endpoints (OpenStack's: the link-local counterpart of 169.254.169.254, Neutron's metadata-add-ipv6-support spec). */
const V6_METADATA = new Map<string, string>([
  ['fd00:ec2::254', 'AWS metadata'],
  ['fe80::a9fe:a9fe', 'OpenStack metadata'],
]);

const MASK32 = 0xffffffffn;

/**
 * Classifies an IP address given as text: a dotted quad (also the shorthand, octal and hex forms
 * that URL parsers and inet_aton accept, such as `2130706433` or `0x7f.1`), or IPv6, bracketed or
 * not, with or without a zone. Returns null when the text is not an IP address (a host name).
 */
export function classifyIp(text: string): AddressVerdict | null {
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const v4 = parseIPv4Literal(t);
  if (v4 !== null) return classify4(v4);
  const v6 = parseIPv6(t);
  if (v6 !== null) return classify6(v6);
  return null;
}

function classify4(n: number): AddressVerdict {
  const address = formatIPv4(n);
  const meta = V4_METADATA.get(address);
  if (meta) return { address, family: 4, blocked: meta, metadata: true };
  for (const [base, prefix, what] of V4_BLOCKS) {
    if (inRange4(n, base, prefix)) return { address, family: 4, blocked: what, metadata: false };
  }
  return { address, family: 4, blocked: null, metadata: false };
}

function classify6(n: bigint): AddressVerdict {
  const address = formatIPv6(n);
  const meta = V6_METADATA.get(address);
  if (meta) return { address, family: 6, blocked: meta, metadata: true };
  // Forms that carry an IPv4 address: judged by that address.
  const embedded = embeddedIPv4(n);
  if (embedded) {
    if (embedded.always) return { address, family: 6, blocked: embedded.always, metadata: false };
    for (const [v4, form] of embedded.inner) {
      const inner = classify4(v4);
      if (inner.blocked) return { address, family: 6, blocked: `${form} of ${inner.address}, ${inner.blocked}`, metadata: inner.metadata };
    }
    return { address, family: 6, blocked: null, metadata: false };
  }
  for (const [base, prefix, what] of V6_BLOCKS) {
    if (inRange6(n, base, prefix)) return { address, family: 6, blocked: what, metadata: false };
  }
  // Only 2000::/3 is global unicast; the rest of the space is reserved.
  if (n >> 125n !== 1n) return { address, family: 6, blocked: 'reserved, not global unicast', metadata: false };
  return { address, family: 6, blocked: null, metadata: false };
}

/** The IPv4 addresses an IPv6 address stands for, if it is one of the forms that embed them. */
function embeddedIPv4(n: bigint): { inner: Array<[number, string]>; always?: string } | null {
  const low32 = Number(n & MASK32);
  if (n >> 32n === 0xffffn) return { inner: [[low32, 'IPv4-mapped form']] }; // ::ffff:0:0/96
  if (n >> 32n === 0xffff0000n) return { inner: [[low32, 'IPv4-translated form']] }; // ::ffff:0:0:0/96
  if (n >> 32n === 0x0064ff9b0000000000000000n) return { inner: [[low32, 'NAT64 form']] }; // 64:ff9b::/96
  if (n >> 112n === 0x2002n) return { inner: [[Number((n >> 80n) & MASK32), '6to4 form']] }; // 2002::/16
  if (n >> 96n === 0x20010000n) {
    // Teredo 2001::/32: the server's IPv4 address, and the client's with its bits inverted.
    return { inner: [[Number((n >> 64n) & MASK32), 'Teredo form'], [Number(~n & MASK32) >>> 0, 'Teredo form']] };
  }
  // The deprecated IPv4-compatible ::a.b.c.d (not :: and ::1, which the table names): never used.
  if (n >> 32n === 0n && n > 1n) return { inner: [], always: 'reserved, deprecated IPv4-compatible form' };
  return null;
}

/**
 * An IPv4 address in any form inet_aton and the WHATWG URL parser accept: 1 to 4 parts, each
 * decimal, octal (leading 0) or hex (0x), the last one filling the remaining bytes; one trailing
 * dot allowed. Returns the address as an unsigned 32-bit number, or null.
 */
export function parseIPv4Literal(text: string): number | null {
  let t = text;
  if (t.endsWith('.')) t = t.slice(0, -1);
  if (t === '' || t.length > 64) return null;
  const parts = t.split('.');
  if (parts.length > 4) return null;
  const values: number[] = [];
  for (const p of parts) {
    let v: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) v = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) v = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) v = Number(p);
    else return null;
    if (!Number.isSafeInteger(v)) return null;
    values.push(v);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 255)) return null;
  if (last >= 256 ** (4 - values.length)) return null;
  let n = 0;
  values.forEach((v, i) => (n += v * 256 ** (3 - i)));
  return n + last;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** An IPv6 address (a trailing dotted quad and a zone allowed) as a 128-bit number, or null. */
export function parseIPv6(text: string): bigint | null {
  const t = text.replace(/%[^%]*$/, '');
  if (!isIPv6(t)) return null;
  let head = t;
  let tail: number[] = [];
  const quad = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(t);
  if (quad) {
    const v4 = parseIPv4Literal(quad[1]);
    if (v4 === null) return null;
    tail = [v4 >>> 16, v4 & 0xffff];
    head = t.slice(0, quad.index + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const words = (s: string | undefined) => (s ? s.split(':').filter((w) => w !== '').map((w) => parseInt(w, 16)) : []);
  const l = words(left);
  const r = words(right);
  const fill = 8 - tail.length - l.length - r.length;
  if (fill < 0 || (right === undefined && fill !== 0)) return null;
  const all = [...l, ...Array<number>(right === undefined ? 0 : fill).fill(0), ...r, ...tail];
  if (all.length !== 8) return null;
  return all.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
}

/** RFC 5952: lower case, the longest run of two or more zero words as `::`, IPv4-mapped as a dotted quad. */
export function formatIPv6(n: bigint): string {
  if (n >> 32n === 0xffffn) return `::ffff:${formatIPv4(Number(n & MASK32))}`;
  const words = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(16 * (7 - i))) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

const parsed4 = new Map<string, number>();
function inRange4(n: number, base: string, prefix: number): boolean {
  let b = parsed4.get(base);
  if (b === undefined) parsed4.set(base, (b = parseIPv4Literal(base)!));
  if (prefix === 0) return true;
  const shift = 32 - prefix;
  return Math.floor(n / 2 ** shift) === Math.floor(b / 2 ** shift);
}

const parsed6 = new Map<string, bigint>();
function inRange6(n: bigint, base: string, prefix: number): boolean {
  let b = parsed6.get(base);
  if (b === undefined) parsed6.set(base, (b = parseIPv6(base)!));
  const shift = BigInt(128 - prefix);
  return n >> shift === b >> shift;
}
