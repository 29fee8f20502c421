import { ConfigError, loadConfig } from './app-config';

const base = { INKSTONE_ADMIN_TOKEN: 'a-long-enough-operator-token' };

function problemWith(env: Record<string, string>): ConfigError {
  try {
    loadConfig({ ...base, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c.port).toBe(3000);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir).toMatch(/\.inkstone$/);
    expect(c.databasePoolSize).toBe(10);
    expect(c.defaultTimezone).toBe('Asia/Shanghai');
    expect(c.defaultMonthlyBudget).toBe(100_000_000_000n);
    expect(c.metricsTenantSeries).toBe(1_000);
    expect(c.llm.leaseIdleMs).toBe(15_000);
  });

  it('reads typed values', () => {
    const c = loadConfig({ ...base, PORT: '8080', DATABASE_URL: 'postgres://u@h:5432/db', INKSTONE_SECRET_KEY: '11'.repeat(32), DEFAULT_MONTHLY_BUDGET: '0.012940' });
    expect(c.port).toBe(8080);
    expect(c.databaseUrl).toBe('postgres://u@h:5432/db');
    expect(c.defaultMonthlyBudget).toBe(12_940_000n);
  });

  it('listens on an IP address or a host name', () => {
    for (const host of ['0.0.0.0', '::', '127.0.0.1', '::ffff:10.0.0.1', 'localhost', 'inkstone-1.internal', 'inkstone_app', 'localhost.']) expect(loadConfig({ ...base, HOST: host }).host).toBe(host);
    expect(loadConfig(base).host).toBe('0.0.0.0');
  });

  it('names a missing required variable', () => {
    const err = problemWith({ INKSTONE_ADMIN_TOKEN: '' });
    expect(err.variable).toBe('INKSTONE_ADMIN_TOKEN');
    expect(err.message).toBe('INKSTONE_ADMIN_TOKEN is required but not set');
  });

  it.each([
    ['PORT', 'abc', 'PORT must be an integer (got "abc")'],
    ['PORT', '70000', 'PORT must be an integer from 0 to 65535 (got "70000")'],
    ...['0.0.0.0:3000', 'http://localhost', 'local host', '-bad.example', '[::1]', 'a..b', '.'].map((v) => ['HOST', v, `HOST must be an IP address or a host name, without a port (such as 0.0.0.0, :: or localhost; got "${v}")`]),
    ['DATABASE_URL', 'mysql://x/y', 'DATABASE_URL must start with postgres:// or postgresql:// (got mysql://)'],
    ['DATABASE_URL', 'not a url', 'DATABASE_URL must be a URL starting with postgres:// or postgresql://'],
    ['DATABASE_URL', 'postgres://u:secret@127.0.0.1:notaport/x', 'DATABASE_URL is not a valid URL (scheme://user:password@host:port/name: a port is a number; a password with @, :, / or % must be percent-encoded)'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
    ['DEFAULT_TIMEZONE', 'Mars/Base', 'DEFAULT_TIMEZONE must be an IANA time zone such as Asia/Shanghai (got "Mars/Base")'],
    ['DEFAULT_MONTHLY_BUDGET', '-5', 'DEFAULT_MONTHLY_BUDGET must be an amount in CNY such as "100.00" (got "-5")'],
    ['DATABASE_POOL_SIZE', '0', 'DATABASE_POOL_SIZE must be an integer from 1 to 200 (got "0")'],
    ['METRICS_TENANT_SERIES', '-1', 'METRICS_TENANT_SERIES must be an integer from 0 to 1000000 (got "-1")'],
    ['BUDGET_LEASE_IDLE_MS', '50', 'BUDGET_LEASE_IDLE_MS must be an integer from 100 to 3600000 (got "50")'],
  ])('rejects %s=%s with one clear line', (name, value, message) => {
    const err = problemWith({ [name]: value });
    expect(err.variable).toBe(name);
    expect(err.message).toBe(message);
    expect(err.message).not.toContain('\n');
  });

  it('never echoes a secret it rejects', () => {
    const err = problemWith({ INKSTONE_ADMIN_TOKEN: 'short-secret' });
    expect(err.message).toBe('INKSTONE_ADMIN_TOKEN must be at least 16 characters long (got 12)');
    // Sent as a Bearer token: a space, a non-ASCII character or a length past the header's bound never matched a request.
    for (const token of ['inkstone operator pass phrase 2026', 'operator-token-密码-0123456789']) {
      expect(problemWith({ INKSTONE_ADMIN_TOKEN: token }).message).toBe('INKSTONE_ADMIN_TOKEN must be visible ASCII characters without spaces (it is sent as a Bearer token)');
    }
    expect(problemWith({ INKSTONE_ADMIN_TOKEN: 'x'.repeat(506) }).message).toBe('INKSTONE_ADMIN_TOKEN must be at most 505 characters long, to fit the Authorization header (got 506)');
    expect(loadConfig({ ...base, INKSTONE_ADMIN_TOKEN: 'x'.repeat(505) }).adminToken).toHaveLength(505);
    expect(err.message).not.toContain('short-secret');
  });
});
