import { RouteMethods } from './route-methods';

describe('RouteMethods', () => {
  const routes = new RouteMethods();
  routes.add('GET', '/v1/essays');
  routes.add('POST', '/v1/essays');
  routes.add(['GET', 'HEAD'], '/v1/essays/:id');
  routes.add('DELETE', '/v1/essays/:id');
  routes.add('PATCH', '/v1/essays/:id/grade');
  routes.add('GET', '/console/*');

  it('lists the methods of the routes that have the path, whatever its parameters', () => {
    expect(routes.allowed('/v1/essays')).toEqual(['GET', 'POST']);
    expect(routes.allowed('/v1/essays/0b5a2f8e-0000-4000-8000-000000000000')).toEqual(['DELETE', 'GET', 'HEAD']);
    expect(routes.allowed('/v1/essays/abc/grade?x=1')).toEqual(['PATCH']);
    expect(routes.allowed('/console/assets/app.js')).toEqual(['GET']);
  });

  it('knows no path that no route has: a parameter is one segment, and dots are literal', () => {
    expect(routes.allowed('/v1/essays/a/b')).toEqual([]);
    expect(routes.allowed('/v1/nothing-here')).toEqual([]);
    expect(routes.allowed('/v1Xessays')).toEqual([]);
  });
});
