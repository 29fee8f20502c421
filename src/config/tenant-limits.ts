/** What one tenant may use of the shared service (SPEC §10). */
export interface TenantLimits {
  /** requests a second per API key (refill rate of its token bucket), and the bucket's size */
  requestsPerSecondPerKey: number;
  requestBurstPerKey: number;
  /** requests a second of all the tenant's keys together, per instance, and that bucket's size */
  requestsPerSecondPerTenant: number;
  requestBurstPerTenant: number;
  /** active (not revoked) API keys */
  apiKeys: number;
  /** rubric versions kept (each rubric and each edit of one is a version) */
  rubricVersions: number;
  /** assignments kept */
  assignments: number;
  /** essays waiting in the queue */
  essaysQueued: number;
  /** essays being graded at once, across instances */
  essaysGrading: number;
  /** chat completions in flight, per instance */
  chatInFlight: number;
  /** open Server-Sent Event streams, per instance */
  eventStreams: number;
  /** model calls at a provider at once, per instance (all purposes) */
  providerCalls: number;
  /** ledger reports (usage, stats, the monthly report) being read at once, per instance; more wait their turn */
  reportsInFlight: number;
  readsInFlight: number;
}

/** Every limit's name. */
export const LIMIT_NAMES = ['requestsPerSecondPerKey', 'requestBurstPerKey', 'requestsPerSecondPerTenant', 'requestBurstPerTenant', 'apiKeys', 'rubricVersions', 'assignments', 'essaysQueued', 'essaysGrading', 'chatInFlight', 'eventStreams', 'providerCalls', 'reportsInFlight', 'readsInFlight'] as const;
