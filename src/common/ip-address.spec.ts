import { classifyIp, formatIPv6, parseIPv4Literal, parseIPv6 } from './ip-address';

describe('IP address classification (which addresses a webhook may reach)', () => {
  it.each([
    // IPv4, every special-purpose block
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'reserved, "this network"'],
    ['10.1.2.3', 'private'],
    ['100.64.0.1', 'CGNAT shared address space'],
    ['100.127.255.254', 'CGNAT shared address space'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['169.254.1.1', 'link-local'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.0.0.8', 'reserved for IETF protocol assignments'],
    ['192.0.2.1', 'documentation'],
    ['192.88.99.1', 'reserved, 6to4 relay anycast'],
    ['192.168.1.1', 'private'],
    ['198.18.0.1', 'benchmarking'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'broadcast'],
    // IPv4 literals in the shorthand, octal and hex forms URL parsers and inet_aton accept
    ['2130706433', 'loopback'],
    ['0x7f.1', 'loopback'],
    ['0x7f000001', 'loopback'],
    ['017700000001', 'loopback'],
    ['0177.0.0.1', 'loopback'],
    ['127.1', 'loopback'],
    ['127.0.1', 'loopback'],
    ['0xa9.0xfe.0xa9.0xfe', 'cloud metadata'],
    ['2852039166', 'cloud metadata'],
    ['10.0.0.1.', 'private'],
    ['0x', 'unspecified'], // an empty hex part is 0, as in URLs
    // cloud metadata and platform endpoints
    ['169.254.169.254', 'cloud metadata'],
    ['169.254.170.2', 'AWS ECS metadata'],
    ['100.100.100.200', 'Alibaba Cloud metadata'],
    ['168.63.129.16', 'Azure platform endpoint'],
    ['fd00:ec2::254', 'AWS metadata'],
    ['[fd00:ec2::254]', 'AWS metadata'],
    ['fe80::a9fe:a9fe', 'OpenStack metadata'],
    ['[fe80::a9fe:a9fe%eth0]', 'OpenStack metadata'],
    // IPv6
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fec0::1', 'site-local, deprecated'],
    ['fc00::1', 'unique local, private'],
    ['fd12:3456:789a::1', 'unique local, private'],
    ['ff02::1', 'multicast'],
    ['ff05::1:3', 'multicast'],
    ['2001:db8::1', 'documentation'],
    ['3fff::1', 'documentation'],
    ['100::1', 'reserved, discard-only'],
    ['2001:2::1', 'reserved for IETF protocol assignments'],
    ['5f00::1', 'reserved for SRv6'],
    ['64:ff9b:1::a00:1', 'private, local-use NAT64'],
    ['4000::1', 'reserved, not global unicast'],
    ['::2', 'reserved, deprecated IPv4-compatible form'],
    ['::8.8.8.8', 'reserved, deprecated IPv4-compatible form'],
    // IPv6 forms that carry an IPv4 address: judged by it
    ['::ffff:127.0.0.1', 'IPv4-mapped form of 127.0.0.1, loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped form of 127.0.0.1, loopback'],
    ['[::ffff:10.0.0.1]', 'IPv4-mapped form of 10.0.0.1, private'],
    ['::ffff:169.254.169.254', 'IPv4-mapped form of 169.254.169.254, cloud metadata'],
    ['::ffff:0:192.168.0.1', 'IPv4-translated form of 192.168.0.1, private'],
    ['64:ff9b::127.0.0.1', 'NAT64 form of 127.0.0.1, loopback'],
    ['64:ff9b::a9fe:a9fe', 'NAT64 form of 169.254.169.254, cloud metadata'],
    ['2002:7f00:1::', '6to4 form of 127.0.0.1, loopback'],
    ['2002:c0a8:101::1', '6to4 form of 192.168.1.1, private'],
    ['2001:0:4136:e378:8000:63bf:f5ff:fffe', 'Teredo form of 10.0.0.1, private'], // client 10.0.0.1, bits inverted
    ['2001:0:a00:1::', 'Teredo form of 10.0.0.1, private'], // server 10.0.0.1
  ])('%s is %s', (text, blocked) => {
    expect(classifyIp(text)?.blocked).toBe(blocked);
  });

  it.each([
    ['8.8.8.8', '8.8.8.8'],
    ['1.1.1.1', '1.1.1.1'],
    ['100.63.255.255', '100.63.255.255'],
    ['100.128.0.1', '100.128.0.1'],
    ['172.32.0.1', '172.32.0.1'],
    ['93.184.215.14', '93.184.215.14'],
    ['134744072', '8.8.8.8'],
    ['0x08.0x08.0x08.0x08', '8.8.8.8'],
    ['2606:4700:4700::1111', '2606:4700:4700::1111'],
    ['[2400:3200::1]', '2400:3200::1'],
    ['::ffff:8.8.8.8', '::ffff:8.8.8.8'],
    ['64:ff9b::808:808', '64:ff9b::808:808'],
    ['2002:808:808::1', '2002:808:808::1'],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', '2001:0:4136:e378:8000:63bf:f7f7:f7f7'], // Teredo, client 8.8.8.8
  ])('%s is public (%s)', (text, address) => {
    expect(classifyIp(text)).toEqual({ address, family: expect.any(Number), blocked: null, metadata: false });
  });

  it('marks metadata addresses, in every form, so that they stay refused when private ones are allowed', () => {
    for (const a of ['169.254.169.254', '0xa9fea9fe', '::ffff:a9fe:a9fe', '64:ff9b::169.254.169.254', 'fd00:ec2::254', 'fe80::a9fe:a9fe', 'fe80:0:0:0:0:0:a9fe:a9fe', '100.100.100.200']) {
      expect(classifyIp(a)?.metadata).toBe(true);
    }
    expect(classifyIp('10.0.0.1')?.metadata).toBe(false);
  });

  it.each(['hooks.example.com', 'localhost', '', '1.2.3.4.5', '256.1.1.1', '1.2.3.256', '1.16777216', '08.1.1.1', '1..1', '::g', '1:2:3:4:5:6:7:8:9', '12345::', 'example.123'])(
    '%p is not an IP address',
    (text) => {
      expect(classifyIp(text)).toBeNull();
    },
  );

  it('parses and writes addresses canonically', () => {
    expect(parseIPv4Literal('0x7f.1')).toBe(0x7f000001);
    expect(parseIPv4Literal('1.2.3')).toBe(0x01020003);
    expect(parseIPv4Literal('4294967295')).toBe(0xffffffff);
    expect(parseIPv4Literal('4294967296')).toBeNull();
    expect(formatIPv6(parseIPv6('2001:DB8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1');
    expect(formatIPv6(parseIPv6('0:0:0:0:0:ffff:7f00:1')!)).toBe('::ffff:127.0.0.1');
    expect(formatIPv6(parseIPv6('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(formatIPv6(parseIPv6('1:2:3:4:5:6:7:8')!)).toBe('1:2:3:4:5:6:7:8');
    expect(classifyIp('0x7f.1')?.address).toBe('127.0.0.1');
  });
});
