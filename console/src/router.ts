import { useEffect, useState } from 'preact/hooks';

/** Hash routes (#/assignments/…): the service serves one page, and a reload keeps the place. */
export interface Route {
  name: 'assignments' | 'assignment' | 'essay' | 'print' | 'dashboard' | 'keys' | 'settings' | 'report' | 'orders' | 'quality' | 'notFound';
  id?: string;
}

const ROUTES: Array<[RegExp, Route['name']]> = [
  [/^\/?$/, 'assignments'],
  [/^\/assignments\/?$/, 'assignments'],
  [/^\/assignments\/([0-9a-f-]{36})$/, 'assignment'],
  [/^\/essays\/([0-9a-f-]{36})$/, 'essay'],
  [/^\/essays\/([0-9a-f-]{36})\/print$/, 'print'],
  [/^\/admin\/?$/, 'dashboard'],
  [/^\/admin\/keys$/, 'keys'],
  [/^\/admin\/settings$/, 'settings'],
  [/^\/admin\/report$/, 'report'],
  [/^\/admin\/orders$/, 'orders'],
  [/^\/quality$/, 'quality'],
];

export const ADMIN_ROUTES = new Set<Route['name']>(['dashboard', 'keys', 'settings', 'report', 'orders']);

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '');
  for (const [re, name] of ROUTES) {
    const m = re.exec(path);
    if (m) return { name, id: m[1] };
  }
  return { name: 'notFound' };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

export const href = {
  assignments: () => '#/assignments',
  assignment: (id: string) => `#/assignments/${id}`,
  essay: (id: string) => `#/essays/${id}`,
  print: (id: string) => `#/essays/${id}/print`,
  dashboard: () => '#/admin',
  keys: () => '#/admin/keys',
  settings: () => '#/admin/settings',
  report: () => '#/admin/report',
  orders: () => '#/admin/orders',
  quality: () => '#/quality',
};
