/**
 * npm run catalog:report [-- --json]
 * Prints the model catalog the service would load (the built-in one, or LLM_CATALOG_FILE over it)
 * as a table, for an operator to review prices, windows, sources and retirement dates at a glance.
 */
import { Catalog } from '../src/llm/catalog';
import { catalogRows, formatCatalogReport, tierSpecs } from '../src/llm/catalog-report';

function main(): void {
  const catalog = Catalog.load(process.env.LLM_CATALOG_FILE?.trim() || undefined);
  const now = new Date();
  const rows = catalogRows(catalog, tierSpecs(catalog, process.env), now);
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const stale = catalog.staleCalendars(now).map((c) => `warning: holiday calendar "${c}" ends before today`);
  process.stdout.write(`${formatCatalogReport(rows, stale)}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`catalog:report: ${(err as Error).message}\n`);
  process.exit(1);
}
