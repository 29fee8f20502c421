import { DataSource } from 'typeorm';

/**
 * The books of a tenant balance: the period's spend is the sum of its ledger rows; nothing is left
 * reserved for a call (no reservation row), and what is reserved is exactly what the instances'
 * budget leases hold (idle slices of the budget, given back when unused); spend + reserved is
 * within the cap. Returns the spend, the cap and what leases hold for further checks.
 */
export async function expectBooksBalanced(ds: DataSource, tenantId: string): Promise<{ spent: bigint; cap: bigint; leased: bigint }> {
  // One statement, so one snapshot: a lease given back in the background (one statement too) is
  // seen whole or not at all, never between reads.
  const [p] = await ds.query(
    `SELECT p.cap_nanos::text AS cap, p.spent_nanos::text AS spent, p.reserved_nanos::text AS reserved,
            (SELECT coalesce(sum(cost_nanos), 0)::text FROM llm_calls WHERE tenant_id = $1) AS total,
            (SELECT count(*)::int FROM budget_reservations WHERE tenant_id = $1) AS n,
            (SELECT coalesce(sum(amount_nanos), 0)::text FROM budget_leases WHERE tenant_id = $1) AS held
       FROM budget_periods p WHERE p.tenant_id = $1`,
    [tenantId],
  );
  expect(p).toBeDefined();
  expect({ reserved: p.reserved, reservations: p.n }).toEqual({ reserved: p.held, reservations: 0 });
  expect(p.spent).toBe(p.total); // the ledger is the spend
  expect(BigInt(p.spent) + BigInt(p.reserved)).toBeLessThanOrEqual(BigInt(p.cap)); // and never above the cap
  return { spent: BigInt(p.spent), cap: BigInt(p.cap), leased: BigInt(p.held) };
}
