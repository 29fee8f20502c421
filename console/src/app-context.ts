import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Locale, MessageKey } from './i18n';

export interface Session {
  tenantId: string;
  tenantName: string;
  keyId: string;
  role: 'admin' | 'teacher' | string;
  timezone: string;
  expiresAt: string;
}

export interface AppContextValue {
  locale: Locale;
  /** Intl tag for the locale */
  intl: string;
  t: (key: MessageKey, vars?: Record<string, string | number>) => string;
  /** an API code in words (translateCode) */
  code: (prefix: string, code: string, fallback?: string) => string;
  session: Session;
}

export const AppContext = createContext<AppContextValue | null>(null);

export function useApp(): AppContextValue {
  const value = useContext(AppContext);
  if (!value) throw new Error('useApp outside the signed-in console');
  return value;
}
