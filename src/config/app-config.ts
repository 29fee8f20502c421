import type { TenantLimits } from './tenant-limits';
import * as path from 'node:path';
import { MoneyFormatError, Nanos, parseCny } from '../common/money';
import { ConfigError, EnvReader } from './env-reader';
import { readSecretKeys, SecretKeyConfig } from './secret-key';

export { ConfigError } from './env-reader';

/**
 * The gateway's settings. Which models exist, which providers have keys and the tiers are resolved
 * from `modelEnv` by the llm module (src/llm/llm-models.ts), which knows the catalog.
 */
export interface LlmConfig {
  /** LLM_CATALOG_FILE, LLM_STANDARD_MODELS, LLM_DEEP_MODELS and every *_API_KEY / *_BASE_URL, as given */
  modelEnv: Record<string, string | undefined>;
  connectTimeoutMs: number;
  firstByteTimeoutMs: number;
  totalTimeoutMs: number;
  maxRetries: number;
  retryBaseMs: number;
  maxRetryWaitMs: number;
  breakerFailures: number;
  breakerCooldownMs: number;
  providerProbeMs: number;
  cacheTtlSeconds: number;
  /** The in-process tier of the answer cache: bytes in all, and per tenant. */
  cacheMemoryBytes: number;
  cacheMemoryBytesPerTenant: number;
  /** The answer cache's index (cache-index.ts): how often it reads what other instances stored (0: off), and at most how many keys. */
  cacheIndexPollMs: number;
  cacheIndexMaxKeys: number;
  /** How long a reservation may live before the sweeper returns it (a crashed call). */
  reservationTtlMs: number;
  /** Budget leases (BudgetLeases): on, and how long one lives without renewal. */
  budgetLeases: boolean;
  leaseTtlMs: number;
  /** A lease unused this long goes back at the next housekeeping tick instead of being renewed again. */
  leaseIdleMs: number;
  sweepIntervalMs: number;
  defaultMaxTokens: number;
  /** Batch API: how long requests are collected, how many at most, how often and how long a batch is awaited. */
  batchWindowMs: number;
  batchMaxRequests: number;
  batchPollMs: number;
  /**
   * how long after its first look a call taken over looks again for the batch made from its upload
   * before it concludes none was made (a provider's list of batches may lag behind a creation)
   */
  batchListSettleMs: number;
  batchMaxWaitMs: number;
  /** how long a batch given up on is waited for to end its cancelling (its run lines answered from its output; 0: not waited for) */
  batchCancelWaitMs: number;
  /** scheduled work (a deadline) starts at least this long before its deadline: time for a real-time run and its retries */
  scheduleMarginMs: number;
}

/** Everything the service reads from its environment, typed and validated once at start. */
export interface AppConfig {
  nodeEnv: 'development' | 'production' | 'test';
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `json` (one object a line, for collectors), `pretty` (for people), or `auto`: pretty on a terminal, else JSON */
  logFormat: 'json' | 'pretty' | 'auto';
  /** Unset: the service starts an embedded PostgreSQL under `dataDir`. */
  databaseUrl?: string;
  /** how often the cluster bus checks that its listening connection still hears (BUS_HEARTBEAT_MS; 0: never) */
  busHeartbeatMs: number;
  databasePoolSize: number;
  /**
   * The gateway's settlement (its one statement a group of calls) runs as a named prepared
   * statement, planned once a connection instead of every time. Off for a pooler that does not keep
   * prepared statements (PgBouncer in transaction mode before 1.21); never used with the embedded
   * PostgreSQL, whose one session all connections share.
   */
  databasePreparedStatements: boolean;
  /** how often this instance vacuums and analyzes the database when nothing else does (autovacuum off, or the embedded PostgreSQL); 0: never */
  databaseVacuumIntervalMs: number;
  /**
   * PostgreSQL ends a session of this instance's that has sat this long inside a transaction
   * without sending anything (a frozen or stalled instance), so the rows it locked (a tenant's
   * budget period) are free again for every other instance; 0: never.
   */
  databaseIdleInTransactionTimeoutMs: number;
  /** PostgreSQL cancels any one statement of the app's that runs (or waits for a lock) longer; 0: never. Not migrations nor vacuum. */
  databaseStatementTimeoutMs: number;
  dataDir: string;
  adminToken: string;
  bodyLimitBytes: number;
  /**
   * Prometheus series labelled by tenant: at most this many tenants have their own (the first seen
   * since the start); the others are counted together under tenant="_other". A scrape's cost grows
   * with its series: 10,000 tenants' took 106–231 ms of the service's time.
   */
  metricsTenantSeries: number;
  /**
   * Server timeouts: the whole request must arrive within requestTimeoutMs, its headers within
   * headersTimeoutMs; a streamed answer (a chat stream, an export) whose client takes none of it
   * for streamStallMs is cut off.
   */
  http: { requestTimeoutMs: number; headersTimeoutMs: number; keepAliveTimeoutMs: number; streamStallMs: number; eventsKeepAliveMs: number };
  defaultMonthlyBudget: Nanos;
  defaultTimezone: string;
  /** How long an authenticated key is trusted without asking the database (0: always ask). */
  authCacheTtlMs: number;
  /**
   * Failed authentications a client address may make on an instance: a token bucket of `burst`
   * refilled `perMinute` a minute, drawn from by each 401 (AuthFailures).
   */
  authFailures: { perMinute: number; burst: number };
  llm: LlmConfig;
  grading: GradingConfig;
  /** The key that seals stored webhook secrets (src/config/secret-key.ts). */
  secrets: SecretKeyConfig;
  webhooks: WebhookConfig;
  /** Per-tenant fair-use limits: these defaults, or the operator's per-tenant values. */
  limits: TenantLimits;
}

// The limits' names and shape live in a module with no Node imports, so that the console's tests can
// read them too.
export { LIMIT_NAMES } from './tenant-limits';
export type { TenantLimits } from './tenant-limits';

/** Webhooks Inkstone sends to tenants' URLs (budget alerts). */
export interface WebhookConfig {
  /** Let http and private addresses through (on-premise installs, tests); metadata addresses stay refused. */
  allowPrivate: boolean;
  /** One delivery's deadline, from DNS to the last byte read. */
  timeoutMs: number;
  /** Deliveries in flight at once per instance. */
  concurrency: number;
}

export interface GradingConfig {
  /** Run grading workers in this process (turn off for API-only instances). */
  workersEnabled: boolean;
  /** Essays graded at the same time by this process. */
  concurrency: number;
  /** Deep reviews in progress at the same time (most of them waiting on a provider batch). */
  deepReviewConcurrency: number;
  /** Send paid deep reviews through the provider's Batch API (half price, slower). */
  deepReviewBatch: boolean;
  pollMs: number;
  leaseMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  /** The longest wait before a failed grading is tried again (the backoff doubles up to it). */
  retryMaxMs: number;
  /** How long a stopping process waits for in-flight gradings before returning them to the queue. */
  shutdownGraceMs: number;
  /** How often a worker process erases the essays past their tenant's retention (0: never). */
  retentionSweepMs: number;
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
  const dataDir = path.resolve(e.string('INKSTONE_DATA_DIR', { default: './.inkstone' }));
  return {
    nodeEnv,
    host: e.host('HOST', '0.0.0.0'),
    port: e.int('PORT', { min: 0, max: 65535, default: 3000 }),
    logLevel: e.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    logFormat: e.oneOf('LOG_FORMAT', ['json', 'pretty', 'auto'] as const, 'auto'),
    databaseUrl: e.url('DATABASE_URL', ['postgres', 'postgresql']),
    busHeartbeatMs: e.int('BUS_HEARTBEAT_MS', { min: 0, max: 600_000, default: 15_000 }),
    databasePoolSize: e.int('DATABASE_POOL_SIZE', { min: 1, max: 200, default: 10 }),
    databasePreparedStatements: e.bool('DATABASE_PREPARED_STATEMENTS', true),
    databaseVacuumIntervalMs: e.int('DATABASE_VACUUM_INTERVAL_MS', { min: 0, max: 86_400_000, default: 600_000 }),
    databaseIdleInTransactionTimeoutMs: e.int('DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS', { min: 0, max: 86_400_000, default: 60_000 }),
    databaseStatementTimeoutMs: e.int('DATABASE_STATEMENT_TIMEOUT_MS', { min: 0, max: 86_400_000, default: 120_000 }),
    dataDir,
    adminToken: e.bearerSecret('INKSTONE_ADMIN_TOKEN', 16),
    bodyLimitBytes: e.int('BODY_LIMIT_BYTES', { min: 1024, max: 64 * 1024 * 1024, default: 8 * 1024 * 1024 }),
    metricsTenantSeries: e.int('METRICS_TENANT_SERIES', { min: 0, max: 1_000_000, default: 1_000 }),
    http: readHttpTimeouts(e),
    defaultMonthlyBudget: readCny(e, 'DEFAULT_MONTHLY_BUDGET', '100.00'),
    defaultTimezone: e.timezone('DEFAULT_TIMEZONE', 'Asia/Shanghai'),
    authCacheTtlMs: e.int('AUTH_CACHE_TTL_MS', { min: 0, max: 300_000, default: 60_000 }),
    authFailures: {
      perMinute: e.int('AUTH_FAILURES_PER_MINUTE', { min: 1, max: 1_000_000, default: 300 }),
      burst: e.int('AUTH_FAILURE_BURST', { min: 1, max: 1_000_000, default: 100 }),
    },
    llm: loadLlmConfig(e, env),
    limits: {
      requestsPerSecondPerKey: e.int('LIMIT_REQUESTS_PER_SECOND_PER_KEY', { min: 1, max: 1_000_000, default: 20 }),
      requestBurstPerKey: e.int('LIMIT_REQUEST_BURST_PER_KEY', { min: 1, max: 1_000_000, default: 40 }),
      requestsPerSecondPerTenant: e.int('LIMIT_REQUESTS_PER_SECOND_PER_TENANT', { min: 1, max: 1_000_000, default: 200 }),
      requestBurstPerTenant: e.int('LIMIT_REQUEST_BURST_PER_TENANT', { min: 1, max: 1_000_000, default: 400 }),
      apiKeys: e.int('LIMIT_API_KEYS', { min: 1, max: 1_000_000, default: 2_000 }),
      rubricVersions: e.int('LIMIT_RUBRIC_VERSIONS', { min: 1, max: 1_000_000, default: 5_000 }),
      assignments: e.int('LIMIT_ASSIGNMENTS', { min: 1, max: 10_000_000, default: 20_000 }),
      essaysQueued: e.int('LIMIT_ESSAYS_QUEUED', { min: 1, max: 10_000_000, default: 20_000 }),
      essaysGrading: e.int('LIMIT_ESSAYS_GRADING', { min: 1, max: 100_000, default: 64 }),
      chatInFlight: e.int('LIMIT_CHAT_IN_FLIGHT', { min: 1, max: 100_000, default: 16 }),
      eventStreams: e.int('LIMIT_EVENT_STREAMS', { min: 1, max: 100_000, default: 100 }),
      providerCalls: e.int('LIMIT_PROVIDER_CALLS', { min: 1, max: 100_000, default: 64 }),
      reportsInFlight: e.int('LIMIT_REPORTS_IN_FLIGHT', { min: 1, max: 100_000, default: 3 }),
      readsInFlight: e.int('LIMIT_READS_IN_FLIGHT', { min: 1, max: 100_000, default: 4 }),
    },
    grading: {
      workersEnabled: e.bool('WORKERS_ENABLED', true),
      concurrency: e.int('WORKER_CONCURRENCY', { min: 1, max: 2000, default: 16 }),
      deepReviewConcurrency: e.int('DEEP_REVIEW_CONCURRENCY', { min: 1, max: 20_000, default: 200 }),
      deepReviewBatch: e.bool('DEEP_REVIEW_BATCH', true),
      pollMs: e.int('WORKER_POLL_MS', { min: 10, max: 60_000, default: 500 }),
      leaseMs: e.int('JOB_LEASE_MS', { min: 1_000, max: 3_600_000, default: 60_000 }),
      maxAttempts: e.int('JOB_MAX_ATTEMPTS', { min: 1, max: 50, default: 5 }),
      retryBaseMs: e.int('JOB_RETRY_BASE_MS', { min: 0, max: 3_600_000, default: 5_000 }),
      retryMaxMs: e.int('JOB_RETRY_MAX_MS', { min: 0, max: 86_400_000, default: 600_000 }),
      shutdownGraceMs: e.int('SHUTDOWN_GRACE_MS', { min: 0, max: 600_000, default: 15_000 }),
      retentionSweepMs: e.int('ESSAY_RETENTION_SWEEP_MS', { min: 0, max: 86_400_000, default: 3_600_000 }),
    },
    secrets: readSecretKeys(e, dataDir),
    webhooks: {
      allowPrivate: e.bool('ALLOW_PRIVATE_WEBHOOKS', false),
      timeoutMs: e.int('WEBHOOK_TIMEOUT_MS', { min: 100, max: 120_000, default: 10_000 }),
      concurrency: e.int('WEBHOOK_CONCURRENCY', { min: 1, max: 1000, default: 16 }),
    },
  };
}

/** The variables the llm module reads when it resolves the catalog, the providers and the tiers. */
const MODEL_ENV = /^(LLM_CATALOG_FILE|LLM_STANDARD_MODELS|LLM_DEEP_MODELS|[A-Z][A-Z0-9_]*_(API_KEY|BASE_URL))$/;

function loadLlmConfig(e: EnvReader, env: NodeJS.ProcessEnv): LlmConfig {
  const modelEnv = Object.fromEntries(Object.entries(env).filter(([k]) => MODEL_ENV.test(k)));
  const totalTimeoutMs = e.int('LLM_TOTAL_TIMEOUT_MS', { min: 100, max: 600_000, default: 120_000 });
  return {
    modelEnv,
    connectTimeoutMs: e.int('LLM_CONNECT_TIMEOUT_MS', { min: 50, max: 60_000, default: 5_000 }),
    firstByteTimeoutMs: e.int('LLM_FIRST_BYTE_TIMEOUT_MS', { min: 50, max: 600_000, default: 90_000 }),
    totalTimeoutMs,
    maxRetries: e.int('LLM_MAX_RETRIES', { min: 0, max: 10, default: 2 }),
    retryBaseMs: e.int('LLM_RETRY_BASE_MS', { min: 0, max: 60_000, default: 300 }),
    maxRetryWaitMs: e.int('LLM_MAX_RETRY_WAIT_MS', { min: 0, max: 120_000, default: 10_000 }),
    breakerFailures: e.int('LLM_BREAKER_FAILURES', { min: 1, max: 1000, default: 5 }),
    breakerCooldownMs: e.int('LLM_BREAKER_COOLDOWN_MS', { min: 10, max: 3_600_000, default: 30_000 }),
    providerProbeMs: e.int('LLM_PROVIDER_PROBE_MS', { min: 10, max: 3_600_000, default: 60_000 }),
    cacheTtlSeconds: e.int('LLM_CACHE_TTL_SECONDS', { min: 1, max: 365 * 86_400, default: 30 * 86_400 }),
    cacheMemoryBytes: e.int('LLM_CACHE_MEMORY_MB', { min: 0, max: 16_384, default: 64 }) * 2 ** 20,
    cacheMemoryBytesPerTenant: e.int('LLM_CACHE_MEMORY_TENANT_MB', { min: 0, max: 16_384, default: 8 }) * 2 ** 20,
    cacheIndexPollMs: e.int('LLM_CACHE_INDEX_POLL_MS', { min: 0, max: 60_000, default: 250 }),
    cacheIndexMaxKeys: e.int('LLM_CACHE_INDEX_MAX_KEYS', { min: 1, max: 200_000_000, default: 20_000_000 }),
    reservationTtlMs: e.int('BUDGET_RESERVATION_TTL_MS', { min: 1_000, max: 86_400_000, default: totalTimeoutMs * 3 + 60_000 }),
    budgetLeases: e.bool('BUDGET_LEASES', true),
    leaseTtlMs: e.int('BUDGET_LEASE_TTL_MS', { min: 300, max: 3_600_000, default: Math.min(30_000, e.int('BUDGET_RESERVATION_TTL_MS', { min: 1_000, max: 86_400_000, default: totalTimeoutMs * 3 + 60_000 })) }),
    leaseIdleMs: e.int('BUDGET_LEASE_IDLE_MS', { min: 100, max: 3_600_000, default: 15_000 }),
    sweepIntervalMs: e.int('BUDGET_SWEEP_INTERVAL_MS', { min: 100, max: 3_600_000, default: 30_000 }),
    defaultMaxTokens: e.int('LLM_DEFAULT_MAX_TOKENS', { min: 1, max: 200_000, default: 2048 }),
    batchWindowMs: e.int('LLM_BATCH_WINDOW_MS', { min: 10, max: 3_600_000, default: 5_000 }),
    batchMaxRequests: e.int('LLM_BATCH_MAX_REQUESTS', { min: 1, max: 50_000, default: 500 }),
    batchPollMs: e.int('LLM_BATCH_POLL_MS', { min: 10, max: 3_600_000, default: 15_000 }),
    batchListSettleMs: e.int('LLM_BATCH_LIST_SETTLE_MS', { min: 0, max: 3_600_000, default: 30_000 }),
    batchMaxWaitMs: e.int('LLM_BATCH_MAX_WAIT_MS', { min: 100, max: 172_800_000, default: 86_400_000 }),
    batchCancelWaitMs: e.int('LLM_BATCH_CANCEL_WAIT_MS', { min: 0, max: 3_600_000, default: 60_000 }),
    scheduleMarginMs: e.int('SCHEDULE_MARGIN_MS', { min: 0, max: 86_400_000, default: 30 * 60_000 }),
  };
}

function readHttpTimeouts(e: EnvReader): AppConfig['http'] {
  const requestTimeoutMs = e.int('HTTP_REQUEST_TIMEOUT_MS', { min: 1_000, max: 600_000, default: 30_000 });
  const headersTimeoutMs = e.int('HTTP_HEADERS_TIMEOUT_MS', { min: 1_000, max: 600_000, default: 10_000 });
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError('HTTP_HEADERS_TIMEOUT_MS', `must not exceed HTTP_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`);
  return {
    requestTimeoutMs,
    headersTimeoutMs,
    keepAliveTimeoutMs: e.int('HTTP_KEEP_ALIVE_TIMEOUT_MS', { min: 1_000, max: 600_000, default: 65_000 }),
    streamStallMs: e.int('HTTP_STREAM_STALL_MS', { min: 100, max: 600_000, default: 30_000 }),
    eventsKeepAliveMs: e.int('HTTP_EVENTS_KEEP_ALIVE_MS', { min: 100, max: 60_000, default: 15_000 }),
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
