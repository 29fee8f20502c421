/**
 * The response bodies of the API as JSON Schemas, generated from the TypeScript types the
 * controllers return (ts-json-schema-generator), so that the OpenAPI document cannot drift from
 * the code: `npm run docs:views` writes src/docs/view-schemas.json; app.factory.ts merges it into
 * the document's components.schemas and @ApiView('Name') points a route's answer at one of them.
 * test/view-schemas.spec.ts regenerates it in memory and fails when the committed file differs.
 *
 * A type the API answers with is listed in VIEWS with the file that declares it; the types they
 * use are pulled in by the generator (an exported type becomes a schema of its own, referenced;
 * a non-exported one is inlined). The schemas are rewritten for OpenAPI 3.0: `#/components/schemas/`
 * references, `nullable: true` instead of a `null` type, `enum` instead of `const`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { CompletedConfig, createFormatter, createParser, DEFAULT_CONFIG, SchemaGenerator } from 'ts-json-schema-generator';

const ROOT = path.resolve(__dirname, '..');
export const VIEW_SCHEMAS_FILE = path.join(ROOT, 'src/docs/view-schemas.json');

/** The types the API answers with (by name), and the file each is declared in. */
export const VIEWS: ReadonlyArray<{ name: string; file: string }> = [
  { name: 'SessionView', file: 'src/console/console-session.controller.ts' },
  { name: 'Assignment', file: 'src/grading/assignments.service.ts' },
  { name: 'AssignmentDetail', file: 'src/grading/assignments.service.ts' },
  { name: 'AssignmentList', file: 'src/grading/assignments.controller.ts' },
  { name: 'EssayView', file: 'src/grading/essays.service.ts' },
  { name: 'EssayPage', file: 'src/grading/essays.service.ts' },
  { name: 'SubmittedEssay', file: 'src/grading/essays.service.ts' },
  { name: 'SubmittedBatch', file: 'src/grading/essays.service.ts' },
  { name: 'ErasedEssay', file: 'src/grading/essay-erasure.service.ts' },
  { name: 'ErasedStudent', file: 'src/grading/essay-erasure.service.ts' },
  { name: 'GradingSettingsView', file: 'src/grading/grading-settings.controller.ts' },
  { name: 'RubricView', file: 'src/grading/rubrics.service.ts' },
  { name: 'RubricList', file: 'src/grading/rubrics.controller.ts' },
  { name: 'OrderView', file: 'src/billing/orders.repository.ts' },
  { name: 'OrderList', file: 'src/billing/orders.controller.ts' },
  { name: 'BillingSettingsView', file: 'src/billing/orders.service.ts' },
  { name: 'DeepReviewOffer', file: 'src/billing/orders.service.ts' },
  { name: 'BudgetView', file: 'src/billing/budget-view.ts' },
  { name: 'IncidentView', file: 'src/billing/budget-view.ts' },
  { name: 'UsageView', file: 'src/billing/budget.controller.ts' },
  { name: 'LedgerStats', file: 'src/billing/ledger.service.ts' },
  { name: 'MonthReport', file: 'src/reports/month-report.ts' },
  { name: 'ApiKeyList', file: 'src/tenancy/api-keys.controller.ts' },
  { name: 'CreatedApiKey', file: 'src/tenancy/api-keys.service.ts' },
  { name: 'TakenBack', file: 'src/tenancy/api-keys.controller.ts' },
  { name: 'LimitsView', file: 'src/tenancy/limits.service.ts' },
  { name: 'AssignmentAgreement', file: 'src/quality/quality.service.ts' },
  { name: 'QualityView', file: 'src/quality/quality.service.ts' },
  { name: 'CalibrationView', file: 'src/quality/calibration.service.ts' },
  { name: 'RegradeResult', file: 'src/quality/calibration.service.ts' },
  { name: 'CreatedTenant', file: 'src/tenancy/tenants.service.ts' },
  { name: 'PaymentEvent', file: 'src/billing/orders.service.ts' },
  { name: 'PaymentWebhookAnswer', file: 'src/billing/orders.service.ts' },
  { name: 'BusinessValue', file: 'src/advisor/business-value.ts' },
  { name: 'ModelsView', file: 'src/llm/models.service.ts' },
  { name: 'ModelEntry', file: 'src/llm/models.service.ts' },
  { name: 'CostEstimateView', file: 'src/advisor/advisor.service.ts' },
  { name: 'ChatCompletionBody', file: 'src/llm/chat-request.ts' },
  { name: 'ChatCompletion', file: 'src/llm/chat.service.ts' },
];

/**
 * Schemas renamed on the way out: a generated schema whose name is already a DTO schema of the
 * document (app.factory.ts refuses to replace one) gets a `View` suffix here.
 */
export const RENAMED: Readonly<Record<string, string>> = {};

/**
 * The places a view may say nothing about (an empty schema: `unknown` in the type). Anywhere else
 * an empty schema means a type the generator could not see (a library's type, read as empty):
 * generation fails rather than publish it.
 */
export const ANY_ALLOWED: readonly string[] = ['EssayView.overrides[].changes'];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface ViewSchemasFile {
  $comment: string;
  schemas: Record<string, JsonObject>;
}

/** A name OpenAPI accepts for a component (`Pick<…>` and `Record<…>` are inlined instead). */
const COMPONENT_NAME = /^[A-Za-z0-9._-]+$/;
const DEFINITIONS = '#/definitions/';

function program(): ts.Program {
  const configPath = path.join(ROOT, 'tsconfig.json');
  const read = ts.readConfigFile(configPath, (f) => ts.sys.readFile(f));
  if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  // The project's compiler options (strict: `string | null` keeps its null), over the listed files only.
  const { options } = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, { noEmit: true }, configPath);
  const files = [...new Set(VIEWS.map((v) => path.join(ROOT, v.file)))];
  const compilerOptions: ts.CompilerOptions = { ...options, noEmit: true, incremental: false, sourceMap: false, types: [] };
  // The views are the project's own types: the libraries' declarations (Nest, TypeORM, Fastify,
  // @types/node: over a thousand files) are read as empty modules, which makes the program six
  // times faster. A view that used a library's type would get an empty schema: see ANY_ALLOWED.
  const host = ts.createCompilerHost(compilerOptions);
  const readSource = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, ...rest) =>
    fileName.includes('/node_modules/') && !fileName.includes('/node_modules/typescript/lib/') ? ts.createSourceFile(fileName, '', languageVersion) : readSource(fileName, languageVersion, ...rest);
  return ts.createProgram(files, compilerOptions, host);
}

/** The declaration of `name` at the top level of `file`. */
function declaration(p: ts.Program, file: string, name: string): ts.Node {
  const source = p.getSourceFile(path.join(ROOT, file));
  if (!source) throw new Error(`view schemas: ${file} is not in the program`);
  for (const s of source.statements) {
    if ((ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s) || ts.isClassDeclaration(s)) && s.name?.text === name) {
      if (!s.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) throw new Error(`view schemas: ${name} in ${file} is not exported`);
      return s;
    }
  }
  throw new Error(`view schemas: ${file} declares no type ${name}`);
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON Schema (draft 7, as generated) → OpenAPI 3.0 schema: nullable, enum, component references. */
function toOpenApi(schema: Json, definitions: Record<string, JsonObject>, inlining: string[] = []): Json {
  if (Array.isArray(schema)) return schema.map((s) => toOpenApi(s, definitions, inlining));
  if (!isObject(schema)) return schema;
  let s: JsonObject = { ...schema };
  if (typeof s.$ref === 'string' && s.$ref.startsWith(DEFINITIONS)) {
    const name = decodeURIComponent(s.$ref.slice(DEFINITIONS.length));
    if (!COMPONENT_NAME.test(name)) {
      // A generic instance (`Pick<Agreement,…>`): no name a component may have, so inlined.
      if (inlining.includes(name)) throw new Error(`view schemas: ${name} refers to itself and cannot be inlined`);
      const { $ref: _ref, ...rest } = s;
      return toOpenApi({ ...definitions[name], ...rest }, definitions, [...inlining, name]);
    }
    s.$ref = `#/components/schemas/${RENAMED[name] ?? name}`;
  }
  if ('const' in s) {
    const { const: value, ...rest } = s;
    s = { ...rest, enum: [value] };
  }
  if (Array.isArray(s.type)) {
    const types = s.type.filter((t) => t !== 'null');
    if (types.length !== s.type.length) s.nullable = true;
    if (types.length === 1) s.type = types[0];
    else {
      const { type: _type, ...rest } = s;
      s = { ...rest, anyOf: types.map((t) => ({ type: t })) };
    }
  }
  for (const key of ['anyOf', 'oneOf'] as const) {
    const members = s[key];
    if (!Array.isArray(members) || !members.some((m) => isObject(m) && m.type === 'null')) continue;
    const rest = members.filter((m) => !(isObject(m) && m.type === 'null'));
    const { [key]: _members, ...others } = s;
    if (rest.length === 1 && isObject(rest[0]) && rest[0].$ref === undefined) s = { ...others, ...rest[0], nullable: true };
    else if (rest.length === 1) s = { ...others, allOf: rest, nullable: true };
    else s = { ...others, [key]: rest, nullable: true };
  }
  if (Array.isArray(s.enum) && s.enum.includes(null)) s.nullable = true;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(s)) out[k] = k === 'enum' || k === 'required' ? v : toOpenApi(v, definitions, inlining);
  return out;
}

/** Where a schema says nothing (`{}` or only a description), as `View.field[].field`. */
function emptySchemas(schema: Json, at: string, out: string[] = []): string[] {
  if (!isObject(schema)) return out;
  if (Object.keys(schema).every((k) => k === 'description')) out.push(at);
  for (const [k, v] of Object.entries(isObject(schema.properties) ? schema.properties : {})) emptySchemas(v, `${at}.${k}`, out);
  if (isObject(schema.items)) emptySchemas(schema.items, `${at}[]`, out);
  if (isObject(schema.additionalProperties)) emptySchemas(schema.additionalProperties, `${at}{}`, out);
  for (const key of ['allOf', 'anyOf', 'oneOf']) {
    const members = schema[key];
    if (Array.isArray(members)) members.forEach((m, i) => emptySchemas(m, `${at}<${key}${i}>`, out));
  }
  return out;
}

/** Object keys sorted, at every level: the file is the same whatever order the generator walks in. */
function sorted(v: Json): Json {
  if (Array.isArray(v)) return v.map(sorted);
  if (!isObject(v)) return v;
  return Object.fromEntries(
    Object.keys(v)
      .sort()
      .map((k) => [k, sorted(v[k])]),
  );
}

/** The view schemas, as src/docs/view-schemas.json holds them. */
export function generateViewSchemas(): ViewSchemasFile {
  const config: CompletedConfig = { ...DEFAULT_CONFIG, expose: 'export', topRef: false, skipTypeCheck: true };
  const p = program();
  const generator = new SchemaGenerator(p, createParser(p, config), createFormatter(config), config);
  // One root at a time (topRef: false): the root's schema itself, and the named types it uses.
  const definitions: Record<string, JsonObject> = {};
  const add = (name: string, schema: JsonObject, from: string) => {
    if (definitions[name] && JSON.stringify(definitions[name]) !== JSON.stringify(schema)) throw new Error(`view schemas: two different types named ${name} (seen from ${from})`);
    definitions[name] = schema;
  };
  for (const v of VIEWS) {
    const { $schema: _schema, definitions: used, ...root } = generator.createSchemaFromNodes([declaration(p, v.file, v.name)]) as JsonObject;
    add(v.name, root, v.name);
    for (const [name, schema] of Object.entries((used ?? {}) as Record<string, JsonObject>)) add(name, schema, v.name);
  }
  const schemas: Record<string, JsonObject> = {};
  for (const name of Object.keys(definitions).sort()) {
    if (!COMPONENT_NAME.test(name)) continue; // inlined where it is used
    const out = RENAMED[name] ?? name;
    if (schemas[out]) throw new Error(`view schemas: two schemas named ${out}`);
    schemas[out] = sorted(toOpenApi(definitions[name], definitions)) as JsonObject;
  }
  const empty = Object.entries(schemas).flatMap(([name, s]) => emptySchemas(s, name)).filter((at) => !ANY_ALLOWED.includes(at));
  if (empty.length) throw new Error(`view schemas: no schema for ${empty.join(', ')} (a type the generator cannot see, such as a library's? add it to ANY_ALLOWED only if it really is unknown)`);
  for (const m of JSON.stringify(schemas).matchAll(/"\$ref":"([^"]*)"/g)) {
    const target = m[1].startsWith('#/components/schemas/') ? m[1].slice('#/components/schemas/'.length) : null;
    if (target === null || !schemas[target]) throw new Error(`view schemas: a reference to nothing: ${m[1]}`);
  }
  return {
    $comment: 'Generated by `npm run docs:views` (scripts/view-schemas.ts) from the TypeScript types the controllers return. Do not edit by hand.',
    schemas: Object.fromEntries(Object.keys(schemas).sort().map((k) => [k, schemas[k]])),
  };
}

/** The file's text: two-space JSON and a final newline. */
export function renderViewSchemas(file: ViewSchemasFile): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

if (require.main === module) {
  const started = Date.now();
  const file = generateViewSchemas();
  fs.writeFileSync(VIEW_SCHEMAS_FILE, renderViewSchemas(file));
  process.stdout.write(`${path.relative(ROOT, VIEW_SCHEMAS_FILE)}: ${Object.keys(file.schemas).length} schemas in ${Date.now() - started} ms\n`);
}
