import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A complete model entry for a catalog file (LLM_CATALOG_FILE), with fields to change or add. */
export function catalogEntry(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'qwen3.8-flash',
    provider: 'dashscope',
    tokenizer: 'qwen',
    pricing: { input: '0.2', cachedInput: '0.04', output: '2' },
    contextWindow: 1000000,
    maxOutputTokens: 65536,
    jsonMode: true,
    cacheRules: 'implicit cache, hits at 20% of input',
    source: 'https://help.aliyun.com/zh/model-studio/models',
    checkedOn: '2026-12-01',
    ...over,
  };
}

/**
 * A catalog file (LLM_CATALOG_FILE) that extends the built-in catalog with these entries, in a
 * directory of its own; `remove` deletes it (after the app that read it has closed).
 */
export function extendedCatalog(models: Array<Record<string, unknown>>): { file: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'catalog-'));
  const file = path.join(dir, 'catalog.json');
  fs.writeFileSync(file, JSON.stringify({ extends: 'builtin', models }));
  return { file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
