import { formatCny } from '../common/money';
import { FloorPrices, LedgerGroup, monthReport, monthReportCsv, MonthReportInput } from './month-report';

const group = (over: Partial<LedgerGroup>): LedgerGroup => ({
  purpose: 'grading',
  batch: false,
  tier: 'standard',
  provider: 'dashscope',
  model: 'qwen-flash',
  gradings: 0,
  hits: 0,
  calls: 0,
  cost: 0n,
  saved: 0n,
  compressionTokens: 0,
  scheduleSaved: 0n,
  uncachedIn: 0n,
  cachedIn: 0n,
  out: 0n,
  paidCost: 0n,
  ...over,
});

const FLASH: FloorPrices = { input: 1n, cachedInput: 0n, output: 2n };
const MAX: FloorPrices = { input: 4n, cachedInput: 1n, output: 10n };
const prices: Record<string, FloorPrices> = { 'dashscope:qwen-flash': FLASH, 'dashscope:qwen3-max': MAX };

const input = (over: Partial<MonthReportInput> = {}): MonthReportInput => ({
  period: '2026-11',
  timezone: 'Asia/Shanghai',
  groups: [
    group({ gradings: 10, hits: 4, calls: 11, cost: 600n, saved: 400n, compressionTokens: 100, uncachedIn: 1000n, cachedIn: 200n, out: 300n, paidCost: 600n }),
    group({ purpose: 'deep_review', tier: 'deep', model: 'qwen3-max', batch: true, gradings: 2, calls: 2, cost: 500n, uncachedIn: 100n, out: 50n, paidCost: 500n }),
    group({ purpose: 'chat', gradings: 3, calls: 3, cost: 30n, uncachedIn: 30n, out: 10n, paidCost: 30n }),
  ],
  orders: { ordered: 3, sold: 2, delivered: 2, refunded: 1, sales: 2500n, refunds: 500n },
  offline: 3,
  floorOf: (key) => prices[key],
  premium: { key: 'dashscope:qwen3-max', floor: MAX },
  ...over,
});

describe('the month report (pure)', () => {
  it('exports as CSV for Excel: a BOM, one row per figure by its dotted name, money exactly as the API gives it', () => {
    const r = monthReport(input());
    const csv = monthReportCsv(r);
    expect(csv.startsWith('\uFEFFfigure,value\r\n')).toBe(true);
    const rows = new Map(csv.slice(1).trim().split('\r\n').slice(1).map((line) => line.split(',') as [string, string]));
    expect(rows.get('modelCost')).toBe(r.modelCost);
    expect(rows.get('gradings.total')).toBe(String(r.gradings.total));
    expect(rows.get('modelCostByPurpose.deep_review')).toBe(r.modelCostByPurpose.deep_review);
    expect(rows.get('routingBaseline')).toBe(r.routingBaseline ?? '');
    expect(rows.size).toBe(csv.trim().split('\r\n').length - 1);
  });

  it('adds the ledger groups and orders up to the nano-yuan', () => {
    const r = monthReport(input());
    expect(r.gradings).toEqual({ total: 15, standard: 10, deep: 2, offline: 3, fromCache: 4 }); // chat is not a grading
    expect(r.deepReviews).toEqual({ ordered: 3, sold: 2, delivered: 2, refunded: 1 });
    expect(r.modelCost).toBe(formatCny(1130n));
    expect(r.modelCostByPurpose).toEqual({ grading: formatCny(600n), deep_review: formatCny(500n), escalation: formatCny(0n), shadow: formatCny(0n), chat: formatCny(30n) });
    expect(r.revenue).toBe(formatCny(2000n)); // sales less refunds
    expect(r.refunds).toBe(formatCny(500n));
    expect(r.margin).toBe(formatCny(870n)); // revenue − all model cost
    expect(r.deepReviewMargin).toBe(formatCny(1500n)); // revenue − deep-review cost
    expect(r.costPerGrading).toBe(formatCny(73n)); // 1,100 of grading cost over 15 gradings, offline ones included, rounded down
    expect(r.cacheHitRate).toBe('0.3333'); // 4 hits of 12 model gradings
    expect(r.ledgerCalls).toBe(16);
  });

  it('counts escalations and shadow gradings in the cost of grading, never as gradings', () => {
    const more = input().groups.concat([
      group({ purpose: 'escalation', tier: 'deep', model: 'qwen3-max', gradings: 1, calls: 1, cost: 150n, uncachedIn: 10n, out: 5n, paidCost: 150n }),
      group({ purpose: 'shadow', tier: 'deep', model: 'qwen3-max', batch: true, gradings: 2, calls: 2, cost: 250n, uncachedIn: 20n, out: 10n, paidCost: 250n }),
    ]);
    const r = monthReport(input({ groups: more }));
    expect(r.gradings).toEqual({ total: 15, standard: 10, deep: 2, offline: 3, fromCache: 4 });
    expect(r.modelCostByPurpose).toMatchObject({ escalation: formatCny(150n), shadow: formatCny(250n) });
    expect(r.modelCost).toBe(formatCny(1530n));
    expect(r.costPerGrading).toBe(formatCny(100n)); // (1,100 + 150 + 250) over the same 15 gradings
  });

  it('claims savings at the floor prices: cache as recorded, compression at input price, routing against the premium model, batch against real time', () => {
    const r = monthReport(input());
    expect(r.savedByCache).toBe(formatCny(400n));
    expect(r.compressionTokensSaved).toBe(100);
    expect(r.savedByCompression).toBe(formatCny(100n)); // 100 tokens × 1
    // The standard gradings' paid tokens at qwen3-max: 1000×4 + 200×1 + 300×10 = 7,200, less the 600 paid.
    expect(r.savedByRouting).toBe(formatCny(6600n));
    expect(r.routingBaseline).toBe('dashscope:qwen3-max');
    // The batched deep reviews at real-time prices: 100×4 + 50×10 = 900, less the 500 paid.
    expect(r.savedByBatch).toBe(formatCny(400n));
  });

  it("claims what scheduling saved from the real-time calls that waited for an off-peak window, a batched call's only as batch", () => {
    const r = monthReport(
      input({
        groups: [
          group({ gradings: 5, calls: 5, cost: 300n, uncachedIn: 500n, out: 100n, paidCost: 300n, scheduleSaved: 120n }),
          group({ gradings: 2, calls: 2, cost: 100n, uncachedIn: 100n, out: 10n, paidCost: 100n, scheduleSaved: -20n, model: 'qwen3-max' }),
          // batched: 100×1 + 50×2 = 200 at real time, 80 paid; its schedule saving (150) is not claimed again
          group({ batch: true, gradings: 1, calls: 1, cost: 80n, uncachedIn: 100n, out: 50n, paidCost: 80n, scheduleSaved: 150n }),
        ],
      }),
    );
    expect(r.savedByScheduling).toBe(formatCny(100n));
    expect(r.savedByBatch).toBe(formatCny(120n));
    // Routing is claimed against the real-time price on the standard model, batching's 120 apart:
    // the batched grading's two savings add up to the premium price less what was paid (900 − 80).
    const batchedOnly = monthReport(input({ groups: [group({ batch: true, gradings: 1, calls: 1, cost: 80n, uncachedIn: 100n, out: 50n, paidCost: 80n })] }));
    expect({ routing: batchedOnly.savedByRouting, batch: batchedOnly.savedByBatch }).toEqual({ routing: formatCny(700n), batch: formatCny(120n) });
    expect(monthReport(input()).savedByScheduling).toBe(formatCny(0n));
  });

  it("claims an off-peak grading's window discount once, as scheduling: routing is measured against the price when it was submitted", () => {
    // Paid 300 off-peak; at submission (peak) it would have cost 420. At qwen3-max: 500×4 + 100×10 = 3,000.
    const r = monthReport(input({ groups: [group({ gradings: 5, calls: 5, cost: 300n, uncachedIn: 500n, out: 100n, paidCost: 300n, scheduleSaved: 120n })] }));
    // Together the premium price less what was paid (3,000 − 300), no more.
    expect({ routing: r.savedByRouting, scheduling: r.savedByScheduling }).toEqual({ routing: formatCny(2580n), scheduling: formatCny(120n) });
    // A grading that ran dearer than at submission claims no routing for it (its scheduling is negative).
    const dearer = monthReport(input({ groups: [group({ gradings: 5, calls: 5, cost: 300n, uncachedIn: 500n, out: 100n, paidCost: 300n, scheduleSaved: -20n })] }));
    expect({ routing: dearer.savedByRouting, scheduling: dearer.savedByScheduling }).toEqual({ routing: formatCny(2700n), scheduling: formatCny(0n) });
  });

  it('never reports a negative saving, and no routing saving without a premium model', () => {
    const dear = input({ groups: [group({ batch: true, gradings: 1, calls: 1, cost: 5000n, uncachedIn: 10n, out: 10n, paidCost: 5000n })], premium: null });
    const r = monthReport(dear);
    expect(r.savedByBatch).toBe(formatCny(0n));
    expect(r.savedByRouting).toBe(formatCny(0n));
    expect(r.routingBaseline).toBeNull();
    expect(monthReport(input({ groups: [group({ gradings: 1, calls: 1, scheduleSaved: -50n })] })).savedByScheduling).toBe(formatCny(0n));
  });

  it('answers an empty month with zeros, not a division by zero', () => {
    const r = monthReport(input({ groups: [], orders: { ordered: 0, sold: 0, delivered: 0, refunded: 0, sales: 0n, refunds: 0n }, offline: 0 }));
    expect(r.costPerGrading).toBe('0.00');
    expect(r.cacheHitRate).toBe('0.0000');
    expect(r.gradings.total).toBe(0);
  });
});
