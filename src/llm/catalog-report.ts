import { Catalog, CatalogModel, isRetired, parseTierSpec, PriceText, Tier, TIERS } from './catalog';
import { DAY_NAMES } from './price-schedule';

/** One row of `npm run catalog:report`. */
export interface CatalogReportRow {
  provider: string;
  model: string;
  tiers: string;
  input: string;
  cachedInput: string;
  output: string;
  windows: string;
  batch: string;
  source: string;
  checkedOn: string;
  retiresOn: string;
}

const COLUMNS: Array<[keyof CatalogReportRow, string]> = [
  ['provider', 'provider'],
  ['model', 'model'],
  ['tiers', 'tiers'],
  ['input', 'input'],
  ['cachedInput', 'cached in'],
  ['output', 'output'],
  ['windows', 'windows (in/cached/out)'],
  ['batch', 'batch (in/cached/out)'],
  ['source', 'source'],
  ['checkedOn', 'checked on'],
  ['retiresOn', 'retires on'],
];

const triple = (p: PriceText) => `${p.input}/${p.cachedInput}/${p.output}`;

/** ["mon","tue","wed","thu","fri"] → "mon-fri" */
function dayRange(days: string[]): string {
  const order = DAY_NAMES as readonly string[];
  const idx = days.map((d) => order.indexOf(d));
  const consecutive = idx.length > 2 && idx.every((v, i) => i === 0 || v === idx[i - 1] + 1);
  return consecutive ? `${days[0]}-${days[days.length - 1]}` : days.join(',');
}

/** The tier plans the service would use: LLM_STANDARD_MODELS / LLM_DEEP_MODELS, else the catalog's. */
export function tierSpecs(catalog: Catalog, env: NodeJS.ProcessEnv): Record<Tier, string[]> {
  const out = {} as Record<Tier, string[]>;
  for (const tier of TIERS) {
    const spec = env[tier === 'standard' ? 'LLM_STANDARD_MODELS' : 'LLM_DEEP_MODELS']?.trim() || catalog.defaultTiers[tier].join(',');
    out[tier] = parseTierSpec(spec, catalog).flatMap((g) => g.map((e) => e.model.key));
  }
  return out;
}

export function catalogRows(catalog: Catalog, tiers: Record<Tier, string[]>, now: Date): CatalogReportRow[] {
  const place = (m: CatalogModel) =>
    TIERS.map((t) => (tiers[t].includes(m.key) ? `${t}#${tiers[t].indexOf(m.key) + 1}` : ''))
      .filter(Boolean)
      .join(' ') || '-';
  return [...catalog.models.values()].map((m) => ({
    provider: m.provider,
    model: m.id,
    tiers: place(m),
    input: m.pricing.text.input,
    cachedInput: m.pricing.text.cachedInput,
    output: m.pricing.text.output,
    windows:
      m.windows
        .map((w) => `${w.name} ${dayRange(w.schedule.text.days)} ${w.schedule.text.hours.join(',')} ${w.schedule.timezone}${w.schedule.except ? ` except ${w.schedule.except.name}` : ''}: ${triple(w.pricing.text)}`)
        .join('; ') || '-',
    batch: m.batchPricing ? triple(m.batchPricing.text) : '-',
    source: m.source,
    checkedOn: m.checkedOn,
    retiresOn: m.retiresOn ? `${m.retiresOnText}${isRetired(m, now) ? ' (retired' : ' ('}${m.replacement ? `${isRetired(m, now) ? '; ' : ''}use ${m.replacement})` : ')'}`.replace(' ()', '') : '-',
  }));
}

/** The catalog as an aligned text table, prices in CNY per million tokens. */
export function formatCatalogReport(rows: CatalogReportRow[], notes: string[] = []): string {
  const widths = COLUMNS.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [
    'Model catalog: prices in CNY per million tokens (input / cached input / output); windows are time-of-day prices.',
    '',
    line(COLUMNS.map(([, h]) => h)),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(COLUMNS.map(([k]) => r[k]))),
    ...(notes.length ? ['', ...notes] : []),
  ].join('\n');
}
