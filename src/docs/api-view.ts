import { ApiResponse } from '@nestjs/swagger';
import viewSchemas from './view-schemas.json';

/**
 * A route's answer in the OpenAPI document, by the name of its TypeScript type: the schemas are
 * generated from the types (`npm run docs:views` → view-schemas.json, merged into the document's
 * components by app.factory.ts), so they are never written twice.
 *
 *   @ApiView('EssayView')                    200 with an EssayView
 *   @ApiView('SubmittedEssay', { status: 202 })
 *   @ApiView('OrderView', { list: true })    200 with an array of them
 *
 * `status` must be the one the route answers with (its @HttpCode, else 201 for POST and 200 for
 * the rest): test/docs.e2e-spec.ts checks it.
 */
export type ViewName = keyof typeof viewSchemas.schemas;

export interface ApiViewOptions {
  /** default 200 */
  status?: number;
  /** the answer is an array of the view */
  list?: boolean;
  description?: string;
}

/**
 * The metadata key under which @nestjs/swagger keeps a handler's declared answers (its
 * DECORATORS.API_RESPONSE, which the package does not export); test/view-schemas.spec.ts checks it.
 */
export const API_RESPONSE_METADATA = 'swagger/apiResponse';

const REASON: Record<number, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted' };

/** The view schemas the document has (view-schemas.json): name → schema. */
export const VIEW_SCHEMAS: Readonly<Record<string, Record<string, unknown>>> = viewSchemas.schemas;

export function ApiView(name: ViewName, options: ApiViewOptions = {}): MethodDecorator {
  // Checked at run time too (the type check is not the only guard: ts-node --transpile-only and
  // jest do not type-check): a name the file does not have fails when the controller is loaded.
  if (!Object.prototype.hasOwnProperty.call(VIEW_SCHEMAS, name)) {
    throw new Error(`@ApiView('${String(name)}'): no such schema in src/docs/view-schemas.json (list the type in scripts/view-schemas.ts and run npm run docs:views)`);
  }
  const status = options.status ?? 200;
  const ref = { $ref: `#/components/schemas/${name}` };
  return ApiResponse({
    status,
    description: options.description ?? REASON[status] ?? String(status),
    schema: options.list ? { type: 'array', items: ref } : ref,
  });
}
