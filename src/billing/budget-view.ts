import { formatCny, Nanos } from '../common/money';
import { periodBounds } from './periods';

/** What GET /v1/budget shows, and the pure arithmetic behind it. */

export type WhenExhausted = 'offline' | 'reject';

export interface BudgetView {
  period: string;
  timezone: string;
  monthlyCap: string;
  spent: string;
  reserved: string;
  remaining: string;
  utilization: string;
  whenExhausted: WhenExhausted;
  alertThresholds: number[];
  alertWebhookUrl: string | null;
  forecast: { monthEnd: string; exhaustsOn: string | null };
  /** true while an unacknowledged incident pauses admission (no call is admitted) */
  admissionPaused: boolean;
  incidents: IncidentView[];
}

export interface IncidentView {
  id: string;
  /**
   * lost_in_flight: a call whose process died before recording it, or (no provider or model) the calls a dead
   * instance's budget lease had in flight as it last wrote them; the provider may have billed them, the tenant is not charged
   */
  kind: 'tokens_over_bound' | 'over_reservation' | 'lost_in_flight';
  createdAt: string;
  provider: string | null;
  model: string | null;
  tokens: { boundInput: number | null; reportedInput: number | null; maxOutput: number | null; reportedOutput: number | null };
  cost: string;
  charged: string;
  /** what the provider billed beyond what was charged to the tenant (absorbed by the platform) */
  excess: string;
  pausesAdmission: boolean;
  acknowledgedAt: string | null;
}

export function incidentView(r: Record<string, unknown>): IncidentView {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: String(r.id),
    kind: r.kind as IncidentView['kind'],
    createdAt: (r.created_at as Date).toISOString(),
    provider: (r.provider as string | null) ?? null,
    model: (r.model as string | null) ?? null,
    tokens: { boundInput: n(r.estimated_input_tokens), reportedInput: n(r.reported_input_tokens), maxOutput: n(r.max_output_tokens), reportedOutput: n(r.reported_output_tokens) },
    cost: formatCny(BigInt(r.cost_nanos as string)),
    charged: formatCny(BigInt(r.charged_nanos as string)),
    excess: formatCny(BigInt(r.excess_nanos as string)),
    pausesAdmission: r.pauses_admission as boolean,
    acknowledgedAt: r.acknowledged_at ? (r.acknowledged_at as Date).toISOString() : null,
  };
}

/** spent / cap as a decimal string with 4 places (exact integer arithmetic). */
export function ratio(part: Nanos, whole: Nanos): string {
  if (whole === 0n) return part > 0n ? '1.0000' : '0.0000';
  const scaled = (part * 10_000n + whole / 2n) / whole;
  return `${scaled / 10_000n}.${(scaled % 10_000n).toString().padStart(4, '0')}`;
}

/**
 * Month-end spend at the period's burn rate so far, and the local date the cap would be reached
 * at that rate (null if not this month).
 */
export function forecast(period: string, timeZone: string, spent: Nanos, cap: Nanos, now: Date): { monthEnd: string; exhaustsOn: string | null } {
  const { start, end } = periodBounds(period, timeZone);
  const elapsed = BigInt(Math.max(1, now.getTime() - start.getTime()));
  const length = BigInt(end.getTime() - start.getTime());
  const monthEnd = (spent * length) / elapsed;
  let exhaustsOn: string | null = null;
  // A cap of zero is reached before anything is spent: today (at any rate, null said "not this month").
  if (cap <= 0n) {
    exhaustsOn = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(now);
  } else if (spent > 0n && monthEnd >= cap) {
    const atMs = start.getTime() + Number((cap * elapsed) / spent);
    exhaustsOn = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(
      new Date(Math.max(atMs, now.getTime())),
    );
  }
  return { monthEnd: formatCny(monthEnd), exhaustsOn };
}
