import * as fs from 'node:fs';
import { API_RESPONSE_METADATA, ApiView, VIEW_SCHEMAS } from '../src/docs/api-view';
import { generateViewSchemas, renderViewSchemas, VIEW_SCHEMAS_FILE, VIEWS } from '../scripts/view-schemas';

/**
 * src/docs/view-schemas.json (the answers' schemas in the OpenAPI document) is generated from the
 * TypeScript types the controllers return: regenerated here, it must be the committed file.
 */
describe('the view schemas (src/docs/view-schemas.json)', () => {
  it('are what the types say (run npm run docs:views when this fails)', () => {
    const text = renderViewSchemas(generateViewSchemas());
    expect(fs.readFileSync(VIEW_SCHEMAS_FILE, 'utf8')).toBe(text);
  }, 60_000);

  it('have every listed view, under its name', () => {
    expect(VIEWS.map((v) => v.name).filter((name) => !VIEW_SCHEMAS[name])).toEqual([]);
  });

  it('refuse a view that is not in the file, when the controller is loaded', () => {
    expect(() => ApiView('NoSuchView' as never)).toThrow(/no such schema in src\/docs\/view-schemas.json/);
    expect(() => ApiView('EssayView')).not.toThrow();
  });

  it('declare the answer where @nestjs/swagger reads it', () => {
    class Probe {
      get(): void {}
      list(): void {}
    }
    const apply = (name: 'get' | 'list', decorator: MethodDecorator) => decorator(Probe.prototype, name, Object.getOwnPropertyDescriptor(Probe.prototype, name)!);
    apply('get', ApiView('OrderView', { status: 202 }));
    apply('list', ApiView('OrderView', { list: true }));
    expect(Reflect.getMetadata(API_RESPONSE_METADATA, Probe.prototype.get)).toEqual({
      202: expect.objectContaining({ description: 'Accepted', schema: { $ref: '#/components/schemas/OrderView' } }),
    });
    expect(Reflect.getMetadata(API_RESPONSE_METADATA, Probe.prototype.list)).toEqual({
      200: expect.objectContaining({ schema: { type: 'array', items: { $ref: '#/components/schemas/OrderView' } } }),
    });
  });
});
