import { DataSource } from 'typeorm';

/**
 * The books of a tenant balance: the period's spend is the sum of its ledger rows; nothing is left
 * reserved for a call (no reservation row), and what is reserved is exactly what the instances'
 * budget leases hold (idle slices of the budget, given back when unused); spend + reserved is
 * within the cap. Returns the spend, the cap and what leases hold for further checks.
 */
export async function expectBooksBalanced(ds: DataSource, tenantId: string): Promise<{ spent: bigint; cap: bigint; leased: bigint }> {
  const [p] = await ds.query(`SELECT cap_nanos::text AS cap, spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [tenantId]);
  const [l] = await ds.query(`SELECT coalesce(sum(cost_nanos), 0)::text AS total FROM llm_calls WHERE tenant_id = $1`, [tenantId]);
  const [r] = await ds.query(`SELECT count(*)::int AS n FROM budget_reservations WHERE tenant_id = $1`, [tenantId]);
  const [leases] = await ds.query(`SELECT coalesce(sum(amount_nanos), 0)::text AS held FROM budget_leases WHERE tenant_id = $1`, [tenantId]);
  expect(p).toBeDefined();
  expect({ reserved: p.reserved, reservations: r.n }).toEqual({ reserved: leases.held, reservations: 0 });
  expect(p.spent).toBe(l.total); // the ledger is the spend
  expect(BigInt(p.spent) + BigInt(p.reserved)).toBeLessThanOrEqual(BigInt(p.cap)); // and never above the cap
  return { spent: BigInt(p.spent), cap: BigInt(p.cap), leased: BigInt(leases.held) };
}
