import { checkWebhookUrl } from './outbound-webhook';

describe('webhook URLs, as a tenant sets them', () => {
  it.each([
    ['http://hooks.example.com/x', 'must use https://'],
    ['ftp://hooks.example.com/x', 'must use https://'],
    ['hooks.example.com/x', 'must be an absolute URL such as https://hooks.example.com/inkstone'],
    ['https://user:pw@hooks.example.com/x', 'must not contain a user name or password'],
    ['https://127.0.0.1/x', 'must point to a public address, not 127.0.0.1 (loopback)'],
    ['https://2130706433/', 'must point to a public address, not 127.0.0.1 (loopback)'],
    ['https://0x7f.1/', 'must point to a public address, not 127.0.0.1 (loopback)'],
    ['https://017700000001/', 'must point to a public address, not 127.0.0.1 (loopback)'],
    ['https://0/', 'must point to a public address, not 0.0.0.0 (unspecified)'],
    ['https://10.0.0.7:8443/hook', 'must point to a public address, not 10.0.0.7 (private)'],
    ['https://100.64.1.1/', 'must point to a public address, not 100.64.1.1 (CGNAT shared address space)'],
    ['https://[::1]/', 'must point to a public address, not ::1 (loopback)'],
    ['https://[::ffff:127.0.0.1]/', 'must point to a public address, not ::ffff:127.0.0.1 (IPv4-mapped form of 127.0.0.1, loopback)'],
    ['https://[fe80::1]/', 'must point to a public address, not fe80::1 (link-local)'],
    ['https://[fd12::1]/', 'must point to a public address, not fd12::1 (unique local, private)'],
    ['https://169.254.169.254/latest/meta-data/', 'must point to a public address, not 169.254.169.254 (cloud metadata)'],
    ['https://[fd00:ec2::254]/', 'must point to a public address, not fd00:ec2::254 (AWS metadata)'],
    ['https://metadata.google.internal/computeMetadata/v1/', 'must not point to a cloud metadata service (metadata.google.internal)'],
    ['https://METADATA.google.internal./', 'must not point to a cloud metadata service (metadata.google.internal)'],
    ['https://intranet/hook', 'must name a fully qualified public host (got "intranet")'],
    ['https://localhost/hook', 'must name a fully qualified public host (got "localhost")'],
    ['https://api.localhost/hook', 'must name a public host (.localhost names are private)'],
    ['https://printer.local/hook', 'must name a public host (.local names are private)'],
    ['https://db.corp.internal/hook', 'must name a public host (.internal names are private)'],
    ['https://nas.home.arpa/hook', 'must name a public host (.home.arpa names are private)'],
    [`https://hooks.example.com/${'a'.repeat(2100)}`, 'must be at most 2048 characters long'],
  ])('refuses %s: %s', (url, problem) => {
    expect(checkWebhookUrl(url, false)).toEqual({ ok: false, problem });
  });

  it.each([
    ['https://hooks.example.com/inkstone?token=x', 'hooks.example.com'],
    ['https://HOOKS.example.com./x', 'hooks.example.com'],
    ['https://8.8.8.8:8443/x', '8.8.8.8'],
    ['https://134744072/x', '8.8.8.8'],
    ['https://[2606:4700:4700::1111]/x', '2606:4700:4700::1111'],
  ])('accepts %s', (url, host) => {
    const r = checkWebhookUrl(url, false);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.host).toBe(host);
  });

  it('with private webhooks allowed, takes http and private addresses, but never metadata or credentials', () => {
    for (const url of ['http://127.0.0.1:9000/alerts', 'http://2130706433/', 'https://[::1]/', 'http://intranet/hook', 'http://10.0.0.7/', 'http://svc.local/']) {
      expect(checkWebhookUrl(url, true).ok).toBe(true);
    }
    expect(checkWebhookUrl('http://169.254.169.254/', true)).toEqual({ ok: false, problem: 'must point to a public address, not 169.254.169.254 (cloud metadata)' });
    expect(checkWebhookUrl('http://[::ffff:a9fe:a9fe]/', true).ok).toBe(false);
    expect(checkWebhookUrl('http://metadata.google.internal/', true).ok).toBe(false);
    expect(checkWebhookUrl('http://u:p@127.0.0.1/', true).ok).toBe(false);
    expect(checkWebhookUrl('ftp://127.0.0.1/', true)).toEqual({ ok: false, problem: 'must use https:// or http://' });
  });
});
