import { createSocket, Socket } from 'node:dgram';
import { lookup as systemLookup } from 'node:dns/promises';
import { HostResolver } from './outbound-webhook';

/**
 * A DNS server on loopback UDP: A and AAAA records of the names it is given, NXDOMAIN for others;
 * `silent` answers nothing at all (a name server that never replies).
 */
async function dnsServer(records: Record<string, { a?: string[]; aaaa?: string[] }>, silent = false): Promise<{ address: string; asked: string[]; close(): Promise<void> }> {
  const socket: Socket = createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (msg, from) => {
    // Question: labels from byte 12, then type and class.
    const labels: string[] = [];
    let i = 12;
    while (msg[i] !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]).toString('latin1'));
      i += msg[i] + 1;
    }
    const qtype = msg.readUInt16BE(i + 1);
    const question = msg.subarray(12, i + 5);
    const name = labels.join('.').toLowerCase();
    asked.push(`${name}/${qtype === 28 ? 'AAAA' : qtype === 1 ? 'A' : qtype}`);
    if (silent) return;
    const known = records[name];
    const rdatas = !known ? [] : qtype === 1 ? (known.a ?? []).map(ipv4Bytes) : qtype === 28 ? (known.aaaa ?? []).map(ipv6Bytes) : [];
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // the id
    header.writeUInt16BE(0x8180 | (known ? 0 : 3), 2); // a response, recursion available; NXDOMAIN for an unknown name
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(rdatas.length, 6);
    const answers = rdatas.map((rdata) => {
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([rr, rdata]);
    });
    socket.send(Buffer.concat([header, question, ...answers]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    asked,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

const ipv4Bytes = (ip: string) => Buffer.from(ip.split('.').map(Number));
const ipv6Bytes = (ip: string) => {
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
};

describe('HostResolver (the DNS lookups of outbound webhooks)', () => {
  it('asks the DNS servers itself, over UDP: every A and AAAA record, IPv4 first', async () => {
    const server = await dnsServer({ 'hooks.example.test': { a: ['93.184.216.34', '93.184.216.35'], aaaa: ['2606:2800:220:1::1'] } });
    try {
      const found = await new HostResolver().useServers([server.address]).lookup('hooks.example.test');
      expect(found).toEqual([
        { address: '93.184.216.34', family: 4 },
        { address: '93.184.216.35', family: 4 },
        { address: '2606:2800:220:1::1', family: 6 },
      ]);
      expect(server.asked.sort()).toEqual(['hooks.example.test/A', 'hooks.example.test/AAAA']);
      // A name the server does not know: refused with DNS's answer, not the system's.
      await expect(new HostResolver().useServers([server.address]).lookup('nowhere.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    } finally {
      await server.close();
    }
  });

  it("holds none of libuv's threads while a name server never answers: the process's other lookups go on, and the webhook's fails with a timeout", async () => {
    const server = await dnsServer({}, true);
    try {
      const resolver = new HostResolver().useServers([server.address]);
      const order: string[] = [];
      // More stalled lookups than libuv's pool has threads (4): through getaddrinfo they took them all.
      const stalled = Array.from({ length: 6 }, (_, i) =>
        resolver.lookup(`slow-${i}.example.test`).then(
          () => order.push(`stalled ${i} answered`),
          (err: NodeJS.ErrnoException) => order.push(`stalled ${i} ${err.code}`),
        ),
      );
      await systemLookup('localhost').then(() => order.push('system lookup answered'));
      await Promise.all(stalled);
      expect(order[0]).toBe('system lookup answered');
      expect(order.slice(1).sort()).toEqual(Array.from({ length: 6 }, (_, i) => `stalled ${i} ETIMEOUT`));
      expect(server.asked.length).toBeGreaterThanOrEqual(12); // each name's A and AAAA, asked again after the first timeout
    } finally {
      await server.close();
    }
  }, 30_000);

  it('with ALLOW_PRIVATE_WEBHOOKS, a name DNS does not know is looked up the system way (/etc/hosts); without, it is not', async () => {
    const server = await dnsServer({});
    try {
      const onPremise = new HostResolver(true).useServers([server.address]);
      const found = await onPremise.lookup('localhost');
      expect(found.map((a) => a.address)).toContain('127.0.0.1');
      const cloud = new HostResolver(false).useServers([server.address]);
      await expect(cloud.lookup('localhost')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    } finally {
      await server.close();
    }
    // No DNS server reachable at all (a closed port: refused): an install of /etc/hosts only.
    const closed = await dnsServer({});
    const address = closed.address;
    await closed.close();
    expect((await new HostResolver(true).useServers([address]).lookup('localhost')).map((a) => a.address)).toContain('127.0.0.1');
    // A server that never answers is no "unknown name": no getaddrinfo after the timeout either.
    const silent = await dnsServer({}, true);
    try {
      await expect(new HostResolver(true).useServers([silent.address]).lookup('localhost')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    } finally {
      await silent.close();
    }
  }, 30_000);
});
