import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The structure holds: every table is written by one file (its repository), docs/architecture.md
 * names that owner, and no module imports a module above it.
 */
const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(ROOT, 'src');

function sources(dir: string, out: string[] = []): string[] {
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isDirectory()) sources(p, out);
    else if (p.endsWith('.ts') && !p.endsWith('.spec.ts')) out.push(p);
  }
  return out;
}

/** table → the files that write it: SQL INSERT / UPDATE / DELETE, and TypeORM repository writes. */
export function tableWriters(files = sources(SRC)): Map<string, Set<string>> {
  const writers = new Map<string, Set<string>>();
  const add = (table: string, file: string) => {
    if (!writers.has(table)) writers.set(table, new Set());
    writers.get(table)!.add(path.relative(ROOT, file));
  };
  for (const f of files) {
    const s = fs.readFileSync(f, 'utf8');
    for (const m of s.matchAll(/\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_]+)\b/g)) {
      // `UPDATE SET`-free words that follow UPDATE in prose or in ON CONFLICT … DO UPDATE SET.
      if (['set', 'of', 'and', 'the'].includes(m[1])) continue;
      add(m[1], f);
    }
    for (const m of s.matchAll(/getRepository\((\w+)Entity\)/g)) {
      if (/\.(save|insert|update|delete|remove)\(/.test(s)) add(`${m[1].toLowerCase()}s`, f);
    }
    for (const m of s.matchAll(/tenantRepo\w*\(\s*\w+\s*,\s*(\w+)Entity/g)) add(`${m[1].toLowerCase()}s`, f);
  }
  return writers;
}

describe('the architecture', () => {
  const writers = tableWriters();

  it('has one owner per table: one file writes it', () => {
    const shared = [...writers].filter(([, files]) => files.size > 1).map(([t, files]) => `${t}: ${[...files].join(', ')}`);
    expect(shared).toEqual([]);
    expect(writers.size).toBeGreaterThan(15); // the scan sees the tables at all
  });

  it('names each owner in docs/architecture.md', () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs/architecture.md'), 'utf8');
    const missing = [...writers].filter(([t, files]) => !doc.includes(`| \`${t}\` | \`${[...files][0]}\``)).map(([t, files]) => `${t} → ${[...files][0]}`);
    expect(missing).toEqual([]);
  });

  it('keeps lower layers free of higher ones', () => {
    // module → modules it must not import (directly)
    const below: Record<string, string[]> = {
      common: ['config', 'db', 'tenancy', 'jobs', 'llm', 'billing', 'grading', 'reports', 'quality', 'advisor', 'console'],
      config: ['db', 'tenancy', 'jobs', 'llm', 'billing', 'grading', 'reports', 'quality', 'advisor', 'console'],
      db: ['tenancy', 'jobs', 'llm', 'billing', 'grading', 'reports', 'quality', 'advisor', 'console'],
      jobs: ['tenancy', 'llm', 'billing', 'grading', 'reports', 'quality', 'advisor', 'console'],
      tenancy: ['llm', 'billing', 'grading', 'reports', 'quality', 'advisor', 'console'],
      billing: ['grading', 'reports', 'quality', 'advisor', 'console'],
      llm: ['grading', 'reports', 'quality', 'advisor', 'console'],
      grading: ['reports', 'quality', 'advisor', 'console'],
    };
    const wrong: string[] = [];
    for (const f of sources(SRC)) {
      const mod = path.relative(SRC, f).split(path.sep)[0];
      const banned = below[mod];
      if (!banned) continue;
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/from '\.\.\/([a-z-]+)\//g)) {
        if (banned.includes(m[1])) wrong.push(`${path.relative(ROOT, f)} imports ${m[1]}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
