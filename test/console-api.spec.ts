import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

/**
 * The console's API client is typed by console/src/api/schema.d.ts, generated from the service's
 * OpenAPI document (docs/openapi.json, itself checked against the running app by docs.e2e-spec.ts).
 * This fails when the committed types are not what the document generates, so the console cannot
 * drift from the API: `npm run docs` writes both again.
 */
describe("the console's typed API client", () => {
  it('is generated from the OpenAPI document as it stands', () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'schema-')), 'schema.d.ts');
    const script = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts['console:api'] as string;
    const args = script.replace(/^openapi-typescript\s+/, '').replace(/-o \S+$/, '').trim().split(/\s+/);
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/openapi-typescript/bin/cli.js'), ...args, '-o', out], { cwd: ROOT, stdio: 'pipe' });
    const committed = path.join(ROOT, 'console/src/api/schema.d.ts');
    expect(fs.existsSync(committed) ? fs.readFileSync(committed, 'utf8') : '(missing: run npm run docs)').toBe(fs.readFileSync(out, 'utf8'));
  });
});
