import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, loadConfig } from '../config/app-config';
import { resolveLlmModels } from './llm-models';
import { Catalog, CatalogError, isRetired, parseTierSpec } from './catalog';
import { catalogRows, formatCatalogReport, tierSpecs } from './catalog-report';
import { worstCaseCost } from './pricing';
import { catalogEntry } from '../../test/support/catalog-entry';

const base = { INKSTONE_ADMIN_TOKEN: 'a-long-enough-operator-token' };
/** The models the service would start with for this environment (at `now`). */
const modelsFor = (env: NodeJS.ProcessEnv, now?: Date) => resolveLlmModels(loadConfig(env).llm, now);
const builtinRaw = () => JSON.parse(fs.readFileSync(path.join(__dirname, 'builtin-catalog.json'), 'utf8'));
const DAY = 86_400_000;

/** Writes a catalog file for one test; removed after the test. */
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'catalog-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
function file(content: unknown): string {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

const entry = catalogEntry;

describe('model catalog', () => {
  const catalog = Catalog.load();

  it('loads the built-in catalog with exact prices, time-of-day windows and batch prices', () => {
    const m = catalog.find('deepseek-flash')!;
    expect(m.key).toBe('deepseek:deepseek-flash');
    expect(m.pricing.input).toBe(1000n);
    expect(m.pricing.text.cachedInput).toBe('0.02');
    expect(m.windows.map((w) => [w.name, w.pricing.text])).toEqual([['peak', { input: '2', cachedInput: '0.04', output: '8' }]]);
    // DeepSeek's cache-hit input costs 2% of the miss price.
    expect(m.pricing.cachedInput * 50n).toBe(m.pricing.input);
    expect(catalog.find('dashscope:qwen3-max')!.pricing.output).toBe(10_000n);
    expect(catalog.find('dashscope:qwen-flash')!.batchPricing!.text).toEqual({ input: '0.075', cachedInput: '0.075', output: '0.75' });
  });

  it('says for every model where its facts come from and when they were checked', () => {
    for (const m of catalog.models.values()) {
      expect(m.source).toMatch(/^https:\/\//);
      expect(m.checkedOn).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(m.cacheRules.length).toBeGreaterThan(10);
      if (m.replacement) expect(catalog.models.has(m.replacement)).toBe(true);
    }
  });

  it('has default tiers of current models only, the domestic ones cheapest first for a grading', () => {
    const now = new Date('2026-11-30T12:00:00Z');
    for (const tier of ['standard', 'deep'] as const) {
      const models = catalog.defaultTiers[tier].map((k) => catalog.models.get(k)!);
      expect(models.every((m) => !isRetired(m, now))).toBe(true);
      // A grading: about 1,500 prompt tokens and 600 output (standard), 2,500 and 2,500 (deep).
      const [input, output] = tier === 'standard' ? [1500, 600] : [2500, 2500];
      const costs = models.filter((m) => m.provider !== 'openai').map((m) => worstCaseCost(input, output, m.ceiling));
      expect(costs).toEqual([...costs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    expect(catalog.defaultTiers.standard[0]).toBe('dashscope:qwen-flash');
  });

  it('keeps retired models so that a request for one can be told its replacement', () => {
    const turbo = catalog.find('qwen-turbo')!;
    expect(isRetired(turbo, new Date('2026-10-09T15:59:59Z'))).toBe(false); // 23:59:59 Beijing time, the day before
    expect(isRetired(turbo, new Date('2026-10-09T16:00:00Z'))).toBe(true); // 2026-10-10 00:00 Beijing time
    expect(turbo.replacement).toBe('dashscope:qwen-flash');
    expect(isRetired(catalog.find('deepseek-chat')!, new Date('2026-07-24T15:58:59Z'))).toBe(false);
    expect(isRetired(catalog.find('deepseek-chat')!, new Date('2026-07-24T15:59:00Z'))).toBe(true);
  });

  it('parses tier lists with priority groups and weights', () => {
    const plan = parseTierSpec('dashscope:qwen-flash*3|zhipu:glm-5.3-flash, deepseek:deepseek-flash', catalog);
    expect(plan.map((g) => g.map((e) => `${e.model.key}*${e.weight}`))).toEqual([
      ['dashscope:qwen-flash*3', 'zhipu:glm-5.3-flash*1'],
      ['deepseek:deepseek-flash*1'],
    ]);
    expect(() => parseTierSpec('nobody:model', catalog)).toThrow(CatalogError);
    expect(() => parseTierSpec('deepseek:deepseek-flash*0', catalog)).toThrow(/weight/);
  });

  it('limits tiers to providers with a key, and takes tier order from the environment', () => {
    const none = modelsFor(base);
    expect(none.providers.size).toBe(0);
    expect(none.tiers.standard).toEqual([]);
    const c = modelsFor({ ...base, DEEPSEEK_API_KEY: 'sk-x', ZHIPU_API_KEY: 'z', LLM_STANDARD_MODELS: 'zhipu:glm-5.3-flash,deepseek:deepseek-flash,dashscope:qwen-flash' });
    expect(c.tiers.standard.map((g) => g[0].model.key)).toEqual(['zhipu:glm-5.3-flash', 'deepseek:deepseek-flash']);
    expect(c.providers.get('deepseek')!.baseUrl).toBe('https://api.deepseek.com');
    const o = modelsFor({ ...base, OPENAI_API_KEY: 'ollama', OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1/' });
    expect(o.providers.get('openai')!.baseUrl).toBe('http://127.0.0.1:11434/v1');
  });

  it("stops at start on a tier named in the environment none of whose models' providers has a key, while another provider has one", () => {
    // Before, the service started and graded every essay offline (a forgotten DEEPSEEK_API_KEY).
    expect(() => modelsFor({ ...base, DASHSCOPE_API_KEY: 'sk-x', LLM_STANDARD_MODELS: 'deepseek:deepseek-flash,zhipu:glm-5.3-flash' })).toThrow(
      new ConfigError('LLM_STANDARD_MODELS', 'names no model whose provider has an API key: set DEEPSEEK_API_KEY or ZHIPU_API_KEY, or name models of dashscope'),
    );
    expect(() => modelsFor({ ...base, DASHSCOPE_API_KEY: 'sk-x', LLM_DEEP_MODELS: 'deepseek:deepseek-v4-pro' })).toThrow(/^LLM_DEEP_MODELS names no model whose provider has an API key: set DEEPSEEK_API_KEY,/);
    expect(() => modelsFor({ ...base, DASHSCOPE_API_KEY: 'sk-x', LLM_DEEP_MODELS: ',' })).toThrow(/^LLM_DEEP_MODELS names no model: list provider:model entries/);
    // No key at all is the offline mode; a catalog's default tier without a key starts (and is warned about).
    expect(modelsFor({ ...base, LLM_STANDARD_MODELS: 'deepseek:deepseek-flash' }).tiers.standard).toEqual([]);
    expect(modelsFor({ ...base, OPENAI_API_KEY: 'ollama' }).tiers.deep).toEqual([]);
  });

  it('stops at start on a bad tier list or catalog file, naming the variable', () => {
    expect(() => modelsFor({ ...base, LLM_DEEP_MODELS: 'deepseek:gpt-9' })).toThrow(
      new ConfigError('LLM_DEEP_MODELS', 'must list catalog models: "deepseek:gpt-9" is not in the catalog'),
    );
    const raw = builtinRaw();
    raw.models[0].pricing.input = 2.5; // a number, not a decimal string
    expect(() => modelsFor({ ...base, LLM_CATALOG_FILE: file(raw) })).toThrow(/LLM_CATALOG_FILE .*pricing\.input must be a decimal string/);
    expect(() => modelsFor({ ...base, LLM_CATALOG_FILE: file('{ not json') })).toThrow(/LLM_CATALOG_FILE cannot be read as JSON/);
  });

  describe('retirement at start', () => {
    it('refuses a configured tier that names a retired model, with its replacement, in one line', () => {
      let err: unknown;
      try {
        modelsFor({ ...base, DASHSCOPE_API_KEY: 'sk-x', LLM_STANDARD_MODELS: 'dashscope:qwen-flash,dashscope:qwen-turbo' });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(
        'LLM_STANDARD_MODELS names a retired model: dashscope:qwen-turbo was retired by its provider on 2026-10-10; use dashscope:qwen-flash instead',
      );
      expect((err as Error).message).not.toContain('\n');
      // Even with no key for the provider: the list is wrong whatever keys are set.
      expect(() => modelsFor({ ...base, LLM_DEEP_MODELS: 'deepseek:deepseek-reasoner' })).toThrow(/deepseek:deepseek-reasoner was retired .* 2026-07-24T15:59:00Z; use deepseek:deepseek-flash instead/);
    });

    it('refuses a catalog file whose default tiers name a retired model, naming LLM_CATALOG_FILE', () => {
      const f = file({ extends: 'builtin', tiers: { standard: ['dashscope:qwen-turbo'] } });
      expect(() => modelsFor({ ...base, LLM_CATALOG_FILE: f })).toThrow(/^LLM_CATALOG_FILE names a retired model: dashscope:qwen-turbo .*\(tiers.standard\)$/);
    });

    it('starts with a model that retires later, and reports it within 30 days', () => {
      const f = file({ extends: 'builtin', models: [entry({ retiresOn: '2026-12-20', replacement: 'dashscope:qwen-flash' })], tiers: { standard: ['dashscope:qwen3.8-flash', 'dashscope:qwen-flash'] } });
      const now = new Date('2026-12-01T00:00:00Z');
      const c = modelsFor({ ...base, DASHSCOPE_API_KEY: 'k', LLM_CATALOG_FILE: f }, now);
      const notices = c.catalog.retirements(now, 30, c.tiers).filter((r) => r.daysLeft > 0);
      expect(notices).toEqual([{ model: 'dashscope:qwen3.8-flash', retiresOn: '2026-12-20', daysLeft: 19, replacement: 'dashscope:qwen-flash', tiers: ['standard'] }]);
      expect(c.catalog.retirements(new Date(now.getTime() - 20 * DAY), 30, c.tiers).filter((r) => r.daysLeft > 0)).toEqual([]);
      // After the date the same configuration is refused.
      expect(() => modelsFor({ ...base, DASHSCOPE_API_KEY: 'k', LLM_CATALOG_FILE: f }, new Date('2026-12-20T00:00:00Z'))).toThrow(/dashscope:qwen3.8-flash was retired/);
    });
  });

  describe('LLM_CATALOG_FILE', () => {
    it('replaces the built-in catalog when it does not extend it', () => {
      const f = file({
        providers: { ollama: { dialect: 'openai', baseUrl: 'http://127.0.0.1:11434/v1' } },
        tokenizers: { llama: { kind: 'byte-bpe', perMessage: 6, perRequest: 8 } },
        models: [
          entry({ id: 'qwen2.5:7b', provider: 'ollama', tokenizer: 'llama', pricing: { input: '0', cachedInput: '0', output: '0' }, contextWindow: 32768, maxOutputTokens: 4096, source: 'https://ollama.com/library/qwen2.5' }),
        ],
        tiers: { standard: ['ollama:qwen2.5:7b'], deep: [] },
      });
      const c = modelsFor({ ...base, LLM_CATALOG_FILE: f, OLLAMA_API_KEY: 'none' });
      expect([...c.catalog.models.keys()]).toEqual(['ollama:qwen2.5:7b']);
      expect(c.tiers.standard[0][0].model.id).toBe('qwen2.5:7b');
    });

    it('extends the built-in catalog: adds a model, overrides one, reorders a tier', () => {
      const f = file({
        extends: 'builtin',
        models: [entry(), { ...builtinRaw().models.find((m: { id: string }) => m.id === 'qwen-flash'), pricing: { input: '0.12', cachedInput: '0.024', output: '1.2' }, checkedOn: '2026-12-01' }],
        tiers: { standard: ['dashscope:qwen3.8-flash', 'dashscope:qwen-flash'] },
      });
      const c = modelsFor({ ...base, LLM_CATALOG_FILE: f, DASHSCOPE_API_KEY: 'k' });
      const cat = c.catalog;
      expect(cat.models.get('dashscope:qwen3.8-flash')!.pricing.text.input).toBe('0.2');
      expect(cat.models.get('dashscope:qwen-flash')!.pricing.input).toBe(120n);
      expect(cat.models.get('dashscope:qwen-flash')!.checkedOn).toBe('2026-12-01');
      expect(cat.models.size).toBe(Catalog.load().models.size + 1); // the rest kept
      expect(cat.models.get('deepseek:deepseek-flash')!.windows).toHaveLength(1);
      expect(c.tiers.standard.map((g) => g[0].model.key)).toEqual(['dashscope:qwen3.8-flash', 'dashscope:qwen-flash']);
      expect(cat.defaultTiers.deep).toEqual(Catalog.load().defaultTiers.deep);
    });

    it('validates the merged catalog as strictly as the built-in one', () => {
      const load = (over: Record<string, unknown>) => () => Catalog.load(file({ extends: 'builtin', ...over }));
      const { source, ...noSource } = entry();
      void source;
      expect(load({ models: [noSource] })).toThrow(/model "dashscope:qwen3.8-flash" "source" must be an http\(s\) address/);
      expect(load({ models: [entry({ checkedOn: '2026-13-01' })] })).toThrow(/"checkedOn" must be a date as YYYY-MM-DD/);
      expect(load({ models: [entry({ retireOn: '2027-01-01' })] })).toThrow(/has an unknown field "retireOn"/);
      expect(load({ models: [entry({ replacement: 'dashscope:qwen9' })] })).toThrow(/names replacement "dashscope:qwen9", which is not in the catalog/);
      expect(load({ models: [entry({ retiresOn: 'next spring' })] })).toThrow(/"retiresOn" must be YYYY-MM-DD/);
      expect(load({ models: [entry({ retiresOn: '2026-02-30T00:00:00+08:00' })] })).toThrow(/"retiresOn" must be a date as YYYY-MM-DD/); // was 1 March
      // A key of the file's own mistyped, or a section set to null: refused (it was dropped, the built-in tiers kept).
      expect(load({ tier: { standard: ['dashscope:qwen-turbo'] } })).toThrow(/the catalog has an unknown field "tier"/);
      expect(load({ modles: [] })).toThrow(/the catalog has an unknown field "modles"/);
      expect(load({ calendars: null })).toThrow(/"calendars" must not be null/);
      expect(load({ models: [entry({ requestOptions: { max_tokens: 10 } })] })).toThrow(/"requestOptions" may not set "max_tokens"/);
      expect(load({ models: [entry({ windows: [{ name: 'peak', schedule: 'nope', pricing: entry().pricing }] })] })).toThrow(/names unknown schedule "nope"/);
      expect(load({ schedules: { bad: { timezone: 'Asia/Shanghai', days: ['mon'], hours: ['12:00-09:00'] } } })).toThrow(/schedule "bad" has hours "12:00-09:00"/);
      expect(load({ schedules: { bad: { timezone: 'Mars/Olympus', days: ['mon'], hours: ['09:00-12:00'] } } })).toThrow(/needs an IANA "timezone"/);
      expect(load({ calendars: { cn: { timezone: 'Asia/Shanghai', holidays: ['2027-02-30'], through: '2027-12-31', source: 'https://www.gov.cn/', checkedOn: '2026-12-01' } } })).toThrow(/holiday "2027-02-30"/);
      expect(load({ tiers: { standard: ['dashscope:nope'] } })).toThrow(/tiers.standard: "dashscope:nope" is not in the catalog/);
      expect(() => Catalog.load(file({ extends: 'https://example.com/catalog.json' }))).toThrow(/"extends" may only be "builtin"/);
    });

    it('checks a price converted from another currency against the rate it names', () => {
      const luna = builtinRaw().models.find((m: { id: string }) => m.id === 'gpt-6-luna');
      expect(() => Catalog.load(file({ extends: 'builtin', models: [{ ...luna, pricing: { ...luna.pricing, output: '3.5' } }] }))).toThrow(
        /pricing.output must be listPrice.output × rate, rounded up to 0.001 = 3.54 \(got 3.5\)/,
      );
      const newRate = { ...luna, listPrice: { ...luna.listPrice, rate: '7.2' }, pricing: { input: '0.72', cachedInput: '0.072', output: '3.6' }, batchPricing: { input: '0.36', cachedInput: '0.036', output: '1.8' } };
      expect(Catalog.load(file({ extends: 'builtin', models: [newRate] })).models.get('openai:gpt-6-luna')!.pricing.output).toBe(3600n);
    });

    it('takes its own holiday calendar: a new year of holidays priced off-peak', () => {
      const cal = builtinRaw().calendars['cn-public-holidays'];
      const f = file({ extends: 'builtin', calendars: { 'cn-public-holidays': { ...cal, holidays: [...cal.holidays, '2027-02-08..2027-02-12'], through: '2027-12-31' } } });
      const c = Catalog.load(f);
      const flash = c.models.get('deepseek:deepseek-flash')!;
      const schedule = flash.windows[0].schedule;
      expect(schedule.except!.days.has('2027-02-10')).toBe(true);
      expect(c.staleCalendars(new Date('2027-06-01T00:00:00Z'))).toEqual([]);
      expect(Catalog.load().staleCalendars(new Date('2027-01-01T00:00:00Z'))).toEqual(['cn-public-holidays']);
    });
  });

  it('reports the catalog as a table: prices, windows, batch, source, checked on, retires on', () => {
    const rows = catalogRows(catalog, tierSpecs(catalog, {}), new Date('2026-11-30T00:00:00Z'));
    expect(rows.find((r) => r.model === 'deepseek-flash')).toEqual({
      provider: 'deepseek',
      model: 'deepseek-flash',
      tiers: 'standard#3',
      input: '1',
      cachedInput: '0.02',
      output: '4',
      windows: 'peak mon-fri 09:00-12:00,14:00-18:00 Asia/Shanghai except cn-public-holidays: 2/0.04/8',
      batch: '-',
      source: 'https://api-docs.deepseek.com/zh-cn/quick_start/pricing',
      checkedOn: '2026-11-30',
      retiresOn: '-',
    });
    expect(rows.find((r) => r.model === 'qwen-turbo')!.retiresOn).toBe('2026-10-10 (retired; use dashscope:qwen-flash)');
    expect(rows.find((r) => r.model === 'gpt-4o-mini')!.retiresOn).toBe('2027-01-14 (use openai:gpt-6-luna)');
    expect(rows.find((r) => r.model === 'qwen-flash')).toMatchObject({ tiers: 'standard#1', batch: '0.075/0.075/0.75' });
    const text = formatCatalogReport(rows);
    expect(text.split('\n')[2]).toMatch(/^provider\s+model\s+tiers\s+input\s+cached in\s+output\s+windows/);
    expect(text.split('\n')).toHaveLength(4 + rows.length);
    expect(tierSpecs(catalog, { LLM_DEEP_MODELS: 'zhipu:glm-5.3' }).deep).toEqual(['zhipu:glm-5.3']);
  });
});
