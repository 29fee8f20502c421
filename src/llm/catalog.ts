// Longer than 400 lines on purpose: the catalog's file format is parsed and checked here in one
// place (providers, tokenizers, price schedules, holiday calendars, models, tiers), so each error
// names the exact field an operator must fix. Price windows are in price-schedule.ts.
import * as fs from 'node:fs';
import { MoneyFormatError, Nanos, pricePerMillionToNanosPerToken } from '../common/money';
import { isValidTimeZone } from '../common/time-zone';
import builtIn from './builtin-catalog.json';
import { DAY_NAMES, expandDates, HolidayCalendar, parseHours, Schedule } from './price-schedule';

/**
 * The model catalog: which models exist, who serves them, what they cost and when, how long a
 * context they take, when they retire, and which tier tries them in what order. It is data
 * (builtin-catalog.json, extended or replaced by LLM_CATALOG_FILE), never code: providers retire
 * models and change prices every few months, so every entry says where its facts come from
 * (`source`) and when they were checked (`checkedOn`).
 */
export const DIALECTS = ['deepseek', 'zhipu', 'dashscope', 'openai'] as const;
export type Dialect = (typeof DIALECTS)[number];
export const TIERS = ['standard', 'deep'] as const;
export type Tier = (typeof TIERS)[number];

export interface Pricing {
  /** nano-yuan per token */
  input: Nanos;
  cachedInput: Nanos;
  output: Nanos;
  /** as written in the catalog: CNY per million tokens */
  text: PriceText;
}

export interface PriceText {
  input: string;
  cachedInput: string;
  output: string;
}

/** A price that applies while a schedule holds (DeepSeek's weekday peak hours). */
export interface PriceWindow {
  name: string;
  schedule: Schedule;
  pricing: Pricing;
}

/**
 * One tokenizer family. Every family in the catalog is byte-level BPE (`"kind": "byte-bpe"`): a text
 * of n UTF-8 bytes is at most n tokens (tokens.ts); the chat template adds `perMessage` tokens per
 * message and `perRequest` per request.
 */
export interface TokenizerProfile {
  name: string;
  kind: 'byte-bpe';
  perMessage: number;
  perRequest: number;
}

export interface CatalogProvider {
  name: string;
  dialect: Dialect;
  baseUrl: string;
  /** offers the OpenAI-compatible Batch API (files + batches) */
  batch: boolean;
}

export interface CatalogModel {
  /** "provider:model", unique across the catalog */
  key: string;
  id: string;
  provider: string;
  dialect: Dialect;
  tokenizer: TokenizerProfile;
  /** the price outside every window */
  pricing: Pricing;
  /** time-of-day prices; the first window whose schedule holds wins */
  windows: PriceWindow[];
  /** prices through the provider's Batch API; set only when the provider offers batches */
  batchPricing?: Pricing;
  /** each price the highest of the model's real-time prices at any time: what admission reserves */
  ceiling: Pricing;
  /** each price the lowest of the model's real-time prices at any time: what savings are claimed at */
  floor: Pricing;
  contextWindow: number;
  /** the most input tokens a call may send: the window, or the bound of the price tier recorded here */
  maxInputTokens: number;
  maxOutputTokens: number;
  jsonMode: boolean;
  /** provider-specific body fields sent with every call (thinking mode off, …) */
  requestOptions: Record<string, unknown>;
  /** how the provider caches input and prices a hit, in words */
  cacheRules: string;
  /** the page the facts were read from, and the date they were checked (YYYY-MM-DD) */
  source: string;
  checkedOn: string;
  /** the instant the provider stops serving the model, when announced */
  retiresOn?: Date;
  /** as written: a date (00:00 Beijing time) or an ISO timestamp */
  retiresOnText?: string;
  /** "provider:model" to use instead, when the provider names one */
  replacement?: string;
  notes?: string;
}

export interface TierEntry {
  model: CatalogModel;
  weight: number;
}

/** A tier is an ordered list of priority groups; within a group, candidates share load by weight. */
export type TierPlan = TierEntry[][];

export class CatalogError extends Error {}

/** A date without a time in `retiresOn` is the start of that day in Beijing time (the providers' own zone). */
const RETIREMENT_ZONE_OFFSET = '+08:00';
const DATE = /^\d{4}-\d{2}-\d{2}$/;

type Raw = Record<string, unknown>;

export interface RetirementNotice {
  model: string;
  retiresOn: string;
  daysLeft: number;
  replacement?: string;
  tiers: Tier[];
}

export class Catalog {
  constructor(
    readonly providers: Map<string, CatalogProvider>,
    readonly models: Map<string, CatalogModel>,
    readonly defaultTiers: Record<Tier, string[]>,
    readonly calendars: Map<string, HolidayCalendar> = new Map(),
  ) {}

  /** A model by "provider:id" or by bare id when only one provider serves it. */
  find(ref: string): CatalogModel | undefined {
    const exact = this.models.get(ref);
    if (exact) return exact;
    const byId = [...this.models.values()].filter((m) => m.id === ref);
    return byId.length === 1 ? byId[0] : undefined;
  }

  /**
   * Loads the built-in catalog, or a file. A file with `"extends": "builtin"` adds or overrides
   * single entries (providers, tokenizers, schedules and calendars by name, models by
   * provider + id, tiers by tier) on top of the built-in one; without it, it replaces it.
   */
  static load(file?: string): Catalog {
    if (!file) return Catalog.parse(builtIn as unknown, 'built-in catalog');
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new CatalogError(`cannot be read as JSON (${(err as Error).message.split('\n')[0]})`);
    }
    if (raw && typeof raw === 'object' && 'extends' in raw) {
      const ext = (raw as Raw).extends;
      if (ext !== 'builtin') throw new CatalogError(`${file}: "extends" may only be "builtin" (got ${JSON.stringify(ext)})`);
      raw = mergeCatalogs(builtIn as unknown as Raw, raw as Raw);
    }
    return Catalog.parse(raw, file);
  }

  static parse(input: unknown, source: string): Catalog {
    return new CatalogParser(source).parse(input);
  }

  /** Models that have retired or retire within `days`, with the tiers that name them. */
  retirements(now: Date, days: number, tiers: Record<Tier, TierPlan>): RetirementNotice[] {
    const out: RetirementNotice[] = [];
    for (const m of this.models.values()) {
      if (!m.retiresOn) continue;
      const daysLeft = Math.ceil((m.retiresOn.getTime() - now.getTime()) / 86_400_000);
      if (daysLeft > days) continue;
      out.push({
        model: m.key,
        retiresOn: m.retiresOnText!,
        daysLeft,
        replacement: m.replacement,
        tiers: TIERS.filter((t) => tiers[t].some((g) => g.some((e) => e.model.key === m.key))),
      });
    }
    return out.sort((a, b) => a.daysLeft - b.daysLeft);
  }

  /** Holiday calendars that no longer cover `now`: their schedules then treat every day as a working day. */
  staleCalendars(now: Date): string[] {
    const today = now.toISOString().slice(0, 10);
    return [...this.calendars.values()].filter((c) => c.through < today).map((c) => c.name);
  }
}

/**
 * Whether the model takes a call of `inputTokens` asking for up to `outputTokens` (cut to the model's
 * own output maximum): its input within the model's input limit (a price that holds only up to some
 * input size), input and output within its context. The router's rule for passing a model over, and
 * the advisor's for the models an estimate may price.
 */
export function takesCall(model: CatalogModel, inputTokens: number, outputTokens: number): boolean {
  return inputTokens <= model.maxInputTokens && inputTokens + Math.min(outputTokens, model.maxOutputTokens) <= model.contextWindow;
}

export function isRetired(model: CatalogModel, now: Date): boolean {
  return !!model.retiresOn && now.getTime() >= model.retiresOn.getTime();
}

/** "qwen-turbo was retired on 2026-10-10; use dashscope:qwen-flash instead" */
export function retiredMessage(model: CatalogModel): string {
  const instead = model.replacement ? `; use ${model.replacement} instead` : '; the catalog names no replacement';
  return `${model.key} was retired by its provider on ${model.retiresOnText}${instead}`;
}

/**
 * Parses a tier list: priority groups separated by ",", alternatives within a group by "|", each
 * "provider:model" with an optional "*weight". Example:
 * `dashscope:qwen-flash*3|zhipu:glm-4.5-air,deepseek:deepseek-flash` — qwen-flash and glm-4.5-air
 * share the first place 3:1; deepseek-flash is the fallback.
 */
export function parseTierSpec(spec: string, catalog: Catalog): TierPlan {
  const plan: TierPlan = [];
  for (const groupText of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const group: TierEntry[] = [];
    for (const entry of groupText.split('|').map((s) => s.trim()).filter(Boolean)) {
      const m = /^([a-z][a-z0-9_]*:[A-Za-z0-9._:\-/]+?)(?:\*(\d{1,3}))?$/.exec(entry);
      if (!m) throw new CatalogError(`"${entry}" is not provider:model or provider:model*weight`);
      const model = catalog.models.get(m[1]);
      if (!model) throw new CatalogError(`"${m[1]}" is not in the catalog`);
      const weight = m[2] === undefined ? 1 : Number(m[2]);
      if (weight <= 0) throw new CatalogError(`"${entry}" needs a weight of at least 1`);
      group.push({ model, weight });
    }
    if (group.length) plan.push(group);
  }
  return plan;
}

/** The built-in catalog with a file's entries laid over it (see Catalog.load). */
function mergeCatalogs(base: Raw, over: Raw): Raw {
  // The file's own keys are checked here: the merged catalog has only the known ones, so a
  // mistyped key ("modles", "tier") was dropped without a word, and the built-in entries it meant
  // to replace kept routing and pricing calls. A section set to null is no section either.
  for (const k of Object.keys(over)) {
    if (!TOP_KEYS.includes(k)) throw new CatalogError(`the catalog has an unknown field ${JSON.stringify(k)}`);
    if (over[k] === null) throw new CatalogError(`the catalog's ${JSON.stringify(k)} must not be null`);
  }
  const byName = (k: string) => ({ ...((base[k] as Raw) ?? {}), ...((over[k] as Raw) ?? {}) });
  const models = [...((base.models as Raw[]) ?? [])];
  if (over.models !== undefined && !Array.isArray(over.models)) throw new CatalogError('"models" must be a list');
  for (const m of (over.models as Raw[]) ?? []) {
    const at = models.findIndex((b) => b.provider === m?.provider && b.id === m?.id);
    if (at >= 0) models[at] = m;
    else models.push(m);
  }
  return {
    calendars: byName('calendars'),
    schedules: byName('schedules'),
    providers: byName('providers'),
    tokenizers: byName('tokenizers'),
    models,
    tiers: byName('tiers'),
  };
}

const TOP_KEYS = ['$comment', 'extends', 'calendars', 'schedules', 'providers', 'tokenizers', 'models', 'tiers'];
const MODEL_KEYS = [
  'id', 'provider', 'tokenizer', 'pricing', 'windows', 'batchPricing', 'contextWindow', 'maxOutputTokens', 'jsonMode',
  'cacheRules', 'source', 'checkedOn', 'retiresOn', 'replacement', 'notes', 'listPrice', 'maxInputTokens', 'requestOptions',
];
/** Body fields Inkstone writes itself: requestOptions may not set them. */
const RESERVED_BODY_FIELDS = ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'stream', 'stream_options', 'response_format', 'temperature', 'top_p', 'stop', 'seed', 'n'];

/** Strict validation: every field known, typed and in range; one message naming the first problem. */
class CatalogParser {
  constructor(private readonly source: string) {}

  private fail(msg: string): never {
    throw new CatalogError(`${this.source}: ${msg}`);
  }

  private object(v: unknown, what: string): Raw {
    if (!v || typeof v !== 'object' || Array.isArray(v)) this.fail(`${what} must be a JSON object`);
    return v as Raw;
  }

  private onlyKeys(o: Raw, allowed: string[], what: string): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.fail(`${what} has an unknown field "${k}"`);
  }

  private date(v: unknown, what: string): string {
    if (typeof v !== 'string' || !DATE.test(v) || Number.isNaN(Date.parse(`${v}T00:00:00Z`)) || new Date(`${v}T00:00:00Z`).toISOString().slice(0, 10) !== v) {
      this.fail(`${what} must be a date as YYYY-MM-DD`);
    }
    return v as string;
  }

  private url(v: unknown, what: string): string {
    if (typeof v !== 'string' || !/^https?:\/\/\S+$/.test(v)) this.fail(`${what} must be an http(s) address`);
    return v as string;
  }

  parse(input: unknown): Catalog {
    const raw = this.object(input, 'the catalog');
    this.onlyKeys(raw, TOP_KEYS, 'the catalog');
    if (!raw.providers || typeof raw.providers !== 'object') this.fail('needs "providers"');
    if (!raw.tokenizers || typeof raw.tokenizers !== 'object') this.fail('needs "tokenizers"');
    if (!Array.isArray(raw.models) || raw.models.length === 0) this.fail('needs a non-empty "models" list');

    const calendars = this.calendars(raw.calendars);
    const schedules = this.schedules(raw.schedules, calendars);
    const providers = this.providers(this.object(raw.providers, '"providers"'));
    const tokenizers = this.tokenizers(this.object(raw.tokenizers, '"tokenizers"'));

    const models = new Map<string, CatalogModel>();
    for (const m of raw.models as unknown[]) {
      const model = this.model(m, providers, tokenizers, schedules);
      if (models.has(model.key)) this.fail(`model "${model.key}" is listed twice`);
      models.set(model.key, model);
    }
    for (const m of models.values()) {
      if (m.replacement === undefined) continue;
      const r = models.get(m.replacement);
      if (!r) this.fail(`model "${m.key}" names replacement "${m.replacement}", which is not in the catalog`);
      if (r.key === m.key) this.fail(`model "${m.key}" names itself as its replacement`);
    }

    const defaultTiers = { standard: [], deep: [] } as Record<Tier, string[]>;
    const tiers = raw.tiers === undefined ? {} : this.object(raw.tiers, '"tiers"');
    this.onlyKeys(tiers, [...TIERS], '"tiers"');
    for (const tier of TIERS) {
      const list = tiers[tier] ?? [];
      if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) this.fail(`tiers.${tier} must be a list of "provider:model"`);
      defaultTiers[tier] = list as string[];
    }
    const catalog = new Catalog(providers, models, defaultTiers, calendars);
    for (const tier of TIERS) {
      try {
        parseTierSpec(catalog.defaultTiers[tier].join(','), catalog);
      } catch (err) {
        this.fail(`tiers.${tier}: ${(err as Error).message}`);
      }
    }
    return catalog;
  }

  private calendars(v: unknown): Map<string, HolidayCalendar> {
    const out = new Map<string, HolidayCalendar>();
    if (v === undefined) return out;
    for (const [name, c0] of Object.entries(this.object(v, '"calendars"'))) {
      const where = `calendar "${name}"`;
      const c = this.object(c0, where);
      this.onlyKeys(c, ['timezone', 'holidays', 'through', 'source', 'checkedOn', 'notes'], where);
      if (typeof c.timezone !== 'string' || !isValidTimeZone(c.timezone)) this.fail(`${where} needs an IANA "timezone"`);
      if (!Array.isArray(c.holidays)) this.fail(`${where} needs "holidays": a list of YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD`);
      const days = new Set<string>();
      for (const h of c.holidays as unknown[]) {
        const dates = typeof h === 'string' ? expandDates(h) : null;
        if (!dates) this.fail(`${where} has a holiday ${JSON.stringify(h)} that is not YYYY-MM-DD or a range of at most a month`);
        dates!.forEach((d) => days.add(d));
      }
      const through = this.date(c.through, `${where} "through"`);
      out.set(name, {
        name,
        timezone: c.timezone as string,
        days,
        through,
        source: this.url(c.source, `${where} "source"`),
        checkedOn: this.date(c.checkedOn, `${where} "checkedOn"`),
      });
    }
    return out;
  }

  private schedules(v: unknown, calendars: Map<string, HolidayCalendar>): Map<string, Schedule> {
    const out = new Map<string, Schedule>();
    if (v === undefined) return out;
    for (const [name, s0] of Object.entries(this.object(v, '"schedules"'))) {
      const where = `schedule "${name}"`;
      const s = this.object(s0, where);
      this.onlyKeys(s, ['timezone', 'days', 'hours', 'except', 'notes'], where);
      if (typeof s.timezone !== 'string' || !isValidTimeZone(s.timezone)) this.fail(`${where} needs an IANA "timezone"`);
      if (!Array.isArray(s.days) || s.days.length === 0 || !s.days.every((d) => (DAY_NAMES as readonly unknown[]).includes(d))) {
        this.fail(`${where} needs "days": a list of ${DAY_NAMES.join(', ')}`);
      }
      if (!Array.isArray(s.hours) || s.hours.length === 0) this.fail(`${where} needs "hours": a list such as "09:00-12:00"`);
      const hours = (s.hours as unknown[]).map((h) => {
        const r = typeof h === 'string' ? parseHours(h) : null;
        if (!r) this.fail(`${where} has hours ${JSON.stringify(h)} that are not HH:MM-HH:MM with the end after the start`);
        return r!;
      });
      let except: HolidayCalendar | undefined;
      if (s.except !== undefined) {
        except = calendars.get(s.except as string);
        if (!except) this.fail(`${where} names unknown calendar ${JSON.stringify(s.except)}`);
        if (except!.timezone !== s.timezone) this.fail(`${where} and its calendar "${except!.name}" must use the same time zone`);
      }
      out.set(name, {
        name,
        timezone: s.timezone as string,
        weekdays: new Set((s.days as string[]).map((d) => DAY_NAMES.indexOf(d as (typeof DAY_NAMES)[number]))),
        hours,
        except,
        text: { days: s.days as string[], hours: s.hours as string[], except: except?.name },
      });
    }
    return out;
  }

  private providers(raw: Raw): Map<string, CatalogProvider> {
    const out = new Map<string, CatalogProvider>();
    for (const [name, p0] of Object.entries(raw)) {
      if (!/^[a-z][a-z0-9_]*$/.test(name)) this.fail(`provider name "${name}" must be lower-case letters, digits, _`);
      const where = `provider "${name}"`;
      const p = this.object(p0, where);
      this.onlyKeys(p, ['dialect', 'baseUrl', 'batch', 'notes'], where);
      if (!(DIALECTS as readonly unknown[]).includes(p.dialect)) this.fail(`${where} has unknown dialect "${String(p.dialect)}"`);
      if (typeof p.baseUrl !== 'string' || !/^https?:\/\//.test(p.baseUrl)) this.fail(`${where} needs an http(s) baseUrl`);
      if (p.batch !== undefined && typeof p.batch !== 'boolean') this.fail(`${where} has "batch" that is not true or false`);
      out.set(name, { name, dialect: p.dialect as Dialect, baseUrl: (p.baseUrl as string).replace(/\/+$/, ''), batch: p.batch === true });
    }
    return out;
  }

  private tokenizers(raw: Raw): Map<string, TokenizerProfile> {
    const out = new Map<string, TokenizerProfile>();
    for (const [name, t0] of Object.entries(raw)) {
      const t = this.object(t0, `tokenizer "${name}"`);
      this.onlyKeys(t, ['kind', 'perMessage', 'perRequest', 'notes'], `tokenizer "${name}"`);
      // Only byte-level BPE has the proven bound admission relies on (a token is at least one byte).
      if (t.kind !== 'byte-bpe') this.fail(`tokenizer "${name}" needs "kind": "byte-bpe" (the only kind whose token count the byte length bounds)`);
      for (const k of ['perMessage', 'perRequest'] as const) {
        if (!Number.isSafeInteger(t[k]) || (t[k] as number) < 0 || (t[k] as number) > 1000) this.fail(`tokenizer "${name}" needs a whole number "${k}" from 0 to 1000`);
      }
      out.set(name, { name, kind: 'byte-bpe', perMessage: t.perMessage as number, perRequest: t.perRequest as number });
    }
    return out;
  }

  private pricing(v: unknown, where: string): Pricing {
    const p = this.object(v, where);
    this.onlyKeys(p, ['input', 'cachedInput', 'output'], where);
    const price = (field: keyof PriceText): Nanos => {
      const text = p[field];
      if (typeof text !== 'string') this.fail(`${where}.${field} must be a decimal string (CNY per million tokens)`);
      try {
        return pricePerMillionToNanosPerToken(text as string);
      } catch (err) {
        if (err instanceof MoneyFormatError) this.fail(`${where}: ${err.message}`);
        throw err;
      }
    };
    const pricing: Pricing = {
      input: price('input'),
      cachedInput: price('cachedInput'),
      output: price('output'),
      text: { input: p.input as string, cachedInput: p.cachedInput as string, output: p.output as string },
    };
    if (pricing.cachedInput > pricing.input) this.fail(`${where}: cached input cannot cost more than input`);
    return pricing;
  }

  private model(m0: unknown, providers: Map<string, CatalogProvider>, tokenizers: Map<string, TokenizerProfile>, schedules: Map<string, Schedule>): CatalogModel {
    const m = this.object(m0, 'every model');
    const where = `model "${String(m.provider)}:${String(m.id)}"`;
    this.onlyKeys(m, MODEL_KEYS, where);
    if (typeof m.id !== 'string' || !m.id) this.fail('every model needs an "id"');
    const provider = providers.get(m.provider as string);
    if (!provider) this.fail(`${where} names unknown provider "${String(m.provider)}"`);
    const tokenizer = tokenizers.get(m.tokenizer as string);
    if (!tokenizer) this.fail(`${where} names unknown tokenizer "${String(m.tokenizer)}"`);

    const pricing = this.pricing(m.pricing, `${where} pricing`);
    const windows: PriceWindow[] = [];
    if (m.windows !== undefined) {
      if (!Array.isArray(m.windows)) this.fail(`${where} "windows" must be a list`);
      for (const [i, w0] of (m.windows as unknown[]).entries()) {
        const w = this.object(w0, `${where} windows[${i}]`);
        this.onlyKeys(w, ['name', 'schedule', 'pricing'], `${where} windows[${i}]`);
        if (typeof w.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(w.name)) this.fail(`${where} windows[${i}] needs a "name" of lower-case letters, digits and -`);
        const schedule = schedules.get(w.schedule as string);
        if (!schedule) this.fail(`${where} windows[${i}] names unknown schedule ${JSON.stringify(w.schedule)}`);
        windows.push({ name: w.name as string, schedule: schedule!, pricing: this.pricing(w.pricing, `${where} windows[${i}].pricing`) });
      }
    }
    let batchPricing: Pricing | undefined;
    if (m.batchPricing !== undefined) {
      if (!provider!.batch) this.fail(`${where} has batchPricing, but provider "${provider!.name}" is not marked "batch": true`);
      batchPricing = this.pricing(m.batchPricing, `${where} batchPricing`);
      // (Its cached input may cost more than real-time cached input: DashScope gives no cache discount in batch.)
      if (batchPricing.input > pricing.input || batchPricing.output > pricing.output) {
        this.fail(`${where}: batchPricing cannot be above pricing for input or output`);
      }
    }
    for (const k of ['contextWindow', 'maxOutputTokens'] as const) {
      if (!Number.isSafeInteger(m[k]) || (m[k] as number) <= 0) this.fail(`${where} needs a positive integer "${k}"`);
    }
    if ((m.maxOutputTokens as number) > (m.contextWindow as number)) this.fail(`${where}: maxOutputTokens cannot exceed contextWindow`);
    if (m.maxInputTokens !== undefined && (!Number.isSafeInteger(m.maxInputTokens) || (m.maxInputTokens as number) <= 0 || (m.maxInputTokens as number) > (m.contextWindow as number))) {
      this.fail(`${where} "maxInputTokens" must be a positive integer no larger than contextWindow`);
    }
    const requestOptions = m.requestOptions === undefined ? {} : this.object(m.requestOptions, `${where} "requestOptions"`);
    for (const k of Object.keys(requestOptions)) {
      if (RESERVED_BODY_FIELDS.includes(k)) this.fail(`${where} "requestOptions" may not set "${k}": Inkstone writes it`);
    }
    if (JSON.stringify(requestOptions).length > 2000) this.fail(`${where} "requestOptions" is too large`);
    if (typeof m.jsonMode !== 'boolean') this.fail(`${where} needs "jsonMode": true or false`);
    if (typeof m.cacheRules !== 'string' || m.cacheRules.length < 3) this.fail(`${where} needs "cacheRules": how the provider caches input and prices a hit`);
    const source = this.url(m.source, `${where} "source"`);
    const checkedOn = this.date(m.checkedOn, `${where} "checkedOn"`);
    let retiresOn: Date | undefined;
    if (m.retiresOn !== undefined) {
      const t = m.retiresOn;
      // (A timestamp's date is checked as a date-only one is: Date.parse rolls 02-30 into March.)
      const at = typeof t !== 'string' ? NaN : DATE.test(t) ? Date.parse(`${this.date(t, `${where} "retiresOn"`)}T00:00:00${RETIREMENT_ZONE_OFFSET}`) : /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/.test(t) && this.date(t.slice(0, 10), `${where} "retiresOn"`) ? Date.parse(t) : NaN;
      if (Number.isNaN(at)) this.fail(`${where} "retiresOn" must be YYYY-MM-DD (00:00 Beijing time) or an ISO timestamp with a zone`);
      retiresOn = new Date(at);
    }
    if (m.replacement !== undefined && (typeof m.replacement !== 'string' || !m.replacement.includes(':'))) {
      this.fail(`${where} "replacement" must be "provider:model"`);
    }
    if (m.notes !== undefined && typeof m.notes !== 'string') this.fail(`${where} "notes" must be text`);
    if (m.listPrice !== undefined) this.listPrice(m.listPrice, pricing, where);

    const realTime = [pricing, ...windows.map((w) => w.pricing)];
    return {
      key: `${m.provider as string}:${m.id}`,
      id: m.id as string,
      provider: provider!.name,
      dialect: provider!.dialect,
      tokenizer: tokenizer!,
      pricing,
      windows,
      batchPricing,
      ceiling: pick(realTime, (a, b) => (a > b ? a : b)),
      floor: pick(realTime, (a, b) => (a < b ? a : b)),
      contextWindow: m.contextWindow as number,
      maxInputTokens: (m.maxInputTokens as number | undefined) ?? (m.contextWindow as number),
      maxOutputTokens: m.maxOutputTokens as number,
      jsonMode: m.jsonMode as boolean,
      requestOptions,
      cacheRules: m.cacheRules as string,
      source,
      checkedOn,
      retiresOn,
      retiresOnText: m.retiresOn as string | undefined,
      replacement: m.replacement as string | undefined,
      notes: m.notes as string | undefined,
    };
  }

  /**
   * A price the provider lists in another currency (OpenAI's USD) is recorded beside the CNY price
   * with the rate used; the CNY price must be the listed one times the rate, to the catalog's
   * precision (0.001 CNY per million tokens), so a rate change cannot leave half the file behind.
   */
  private listPrice(v: unknown, pricing: Pricing, where: string): void {
    const l = this.object(v, `${where} listPrice`);
    this.onlyKeys(l, ['currency', 'input', 'cachedInput', 'output', 'rate', 'rateSource'], `${where} listPrice`);
    if (typeof l.currency !== 'string' || !/^[A-Z]{3}$/.test(l.currency)) this.fail(`${where} listPrice needs a "currency" such as "USD"`);
    const dec = /^\d{1,7}(?:\.\d{1,6})?$/;
    if (typeof l.rate !== 'string' || !dec.test(l.rate)) this.fail(`${where} listPrice needs "rate": CNY per unit of ${String(l.currency)}, as a decimal string`);
    if (typeof l.rateSource !== 'string') this.fail(`${where} listPrice needs "rateSource": where the rate comes from and its date`);
    for (const k of ['input', 'cachedInput', 'output'] as const) {
      if (typeof l[k] !== 'string' || !dec.test(l[k] as string)) this.fail(`${where} listPrice.${k} must be a decimal string`);
      const expected = roundedProduct(l[k] as string, l.rate as string);
      if (expected !== pricing[k]) {
        this.fail(`${where}: pricing.${k} must be listPrice.${k} × rate, rounded up to 0.001 = ${nanosText(expected)} (got ${pricing.text[k]})`);
      }
    }
  }
}

/** a × b (decimal strings), in nano-yuan per token (0.001 CNY per million), rounded up: never below the bill. */
function roundedProduct(a: string, b: string): bigint {
  const scaled = (s: string) => {
    const [w, f = ''] = s.split('.');
    return BigInt(w + f.padEnd(6, '0'));
  };
  const product = scaled(a) * scaled(b); // scale 1e12 CNY per million
  return (product + 999_999_999n) / 1_000_000_000n; // to scale 1e3 (nano-yuan per token)
}

/** nano-yuan per token as CNY per million tokens: 1500n → "1.5" */
function nanosText(n: bigint): string {
  const frac = (n % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
  return frac ? `${n / 1000n}.${frac}` : `${n / 1000n}`;
}

function pick(list: Pricing[], f: (a: bigint, b: bigint) => bigint): Pricing {
  const input = list.map((p) => p.input).reduce(f);
  const cachedInput = list.map((p) => p.cachedInput).reduce(f);
  const output = list.map((p) => p.output).reduce(f);
  return { input, cachedInput, output, text: { input: nanosText(input), cachedInput: nanosText(cachedInput), output: nanosText(output) } };
}
