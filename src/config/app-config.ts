import * as path from 'node:path';
import { MoneyFormatError, Nanos, parseCny } from '../common/money';
import { ConfigError, EnvReader } from './env-reader';

export { ConfigError } from './env-reader';

export interface ProviderCredentials {
  apiKey: string;
  baseUrl?: string;
}

/** Everything the service reads from its environment, typed and validated once at start. */
export interface AppConfig {
  nodeEnv: 'development' | 'production' | 'test';
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Unset: the service starts an embedded PostgreSQL under `dataDir`. */
  databaseUrl?: string;
  databasePoolSize: number;
  dataDir: string;
  adminToken: string;
  bodyLimitBytes: number;
  defaultMonthlyBudget: Nanos;
  defaultTimezone: string;
}

export const CONFIG = Symbol('AppConfig');

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Reads and validates the configuration. Throws a ConfigError naming the first bad variable;
 * `main.ts` prints its one-line message and exits.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const e = new EnvReader(env);
  const nodeEnv = e.oneOf('NODE_ENV', ['development', 'production', 'test'] as const, 'development');
  return {
    nodeEnv,
    host: e.string('HOST', { default: '0.0.0.0' }),
    port: e.int('PORT', { min: 0, max: 65535, default: 3000 }),
    logLevel: e.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    databaseUrl: e.url('DATABASE_URL', ['postgres', 'postgresql']),
    databasePoolSize: e.int('DATABASE_POOL_SIZE', { min: 1, max: 200, default: 10 }),
    dataDir: path.resolve(e.string('INKSTONE_DATA_DIR', { default: './.inkstone' })),
    adminToken: e.secret('INKSTONE_ADMIN_TOKEN', 16),
    bodyLimitBytes: e.int('BODY_LIMIT_BYTES', { min: 1024, max: 64 * 1024 * 1024, default: 8 * 1024 * 1024 }),
    defaultMonthlyBudget: readCny(e, 'DEFAULT_MONTHLY_BUDGET', '100.00'),
    defaultTimezone: e.timezone('DEFAULT_TIMEZONE', 'Asia/Shanghai'),
  };
}

function readCny(e: EnvReader, name: string, def: string): Nanos {
  const text = e.string(name, { default: def });
  try {
    return parseCny(text);
  } catch (err) {
    if (err instanceof MoneyFormatError) {
      throw new ConfigError(name, `must be an amount in CNY such as "${def}" (got "${text}")`);
    }
    throw err;
  }
}
