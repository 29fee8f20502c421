import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, loadConfig } from '../config/app-config';
import { Catalog, CatalogError, parseTierSpec } from './catalog';

const base = { INKSTONE_ADMIN_TOKEN: 'a-long-enough-operator-token' };

describe('model catalog', () => {
  const catalog = Catalog.load();

  it('loads the built-in catalog with exact prices', () => {
    const m = catalog.find('deepseek-chat')!;
    expect(m.key).toBe('deepseek:deepseek-chat');
    expect(m.pricing.input).toBe(2000n);
    expect(m.pricing.text.cachedInput).toBe('0.2');
    expect(catalog.find('dashscope:qwen-max')!.pricing.output).toBe(9600n);
  });

  it('parses tier lists with priority groups and weights', () => {
    const plan = parseTierSpec('dashscope:qwen-turbo*3|zhipu:glm-4-air, deepseek:deepseek-chat', catalog);
    expect(plan.map((g) => g.map((e) => `${e.model.key}*${e.weight}`))).toEqual([
      ['dashscope:qwen-turbo*3', 'zhipu:glm-4-air*1'],
      ['deepseek:deepseek-chat*1'],
    ]);
    expect(() => parseTierSpec('nobody:model', catalog)).toThrow(CatalogError);
    expect(() => parseTierSpec('deepseek:deepseek-chat*0', catalog)).toThrow(/weight/);
  });

  it('limits tiers to providers with a key, and takes tier order from the environment', () => {
    const none = loadConfig(base);
    expect(none.llm.providers.size).toBe(0);
    expect(none.llm.tiers.standard).toEqual([]);
    const c = loadConfig({ ...base, DEEPSEEK_API_KEY: 'sk-x', ZHIPU_API_KEY: 'z', LLM_STANDARD_MODELS: 'zhipu:glm-4-air,deepseek:deepseek-chat,dashscope:qwen-turbo' });
    expect(c.llm.tiers.standard.map((g) => g[0].model.key)).toEqual(['zhipu:glm-4-air', 'deepseek:deepseek-chat']);
    expect(c.llm.providers.get('deepseek')!.baseUrl).toBe('https://api.deepseek.com');
    const o = loadConfig({ ...base, OPENAI_API_KEY: 'ollama', OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1/' });
    expect(o.llm.providers.get('openai')!.baseUrl).toBe('http://127.0.0.1:11434/v1');
  });

  it('stops at start on a bad tier list or catalog file, naming the variable', () => {
    expect(() => loadConfig({ ...base, LLM_DEEP_MODELS: 'deepseek:gpt-9' })).toThrow(
      new ConfigError('LLM_DEEP_MODELS', 'must list catalog models: "deepseek:gpt-9" is not in the catalog'),
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'catalog-'));
    const file = path.join(dir, 'c.json');
    const raw = JSON.parse(fs.readFileSync(path.join(__dirname, 'builtin-catalog.json'), 'utf8'));
    raw.models[0].pricing.input = 2.5; // a number, not a decimal string
    fs.writeFileSync(file, JSON.stringify(raw));
    expect(() => loadConfig({ ...base, LLM_CATALOG_FILE: file })).toThrow(/LLM_CATALOG_FILE .*pricing\.input as a decimal string/);
    fs.writeFileSync(file, '{ not json');
    expect(() => loadConfig({ ...base, LLM_CATALOG_FILE: file })).toThrow(/LLM_CATALOG_FILE cannot be read as JSON/);
    fs.rmSync(dir, { recursive: true });
  });

  it('replaces the built-in catalog with LLM_CATALOG_FILE', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'catalog-'));
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        providers: { ollama: { dialect: 'openai', baseUrl: 'http://127.0.0.1:11434/v1' } },
        tokenizers: { llama: { cjkPerChar: 2, otherPerChar: 0.3, perMessage: 6, perRequest: 8 } },
        models: [{ id: 'qwen2.5:7b', provider: 'ollama', tokenizer: 'llama', pricing: { input: '0', cachedInput: '0', output: '0' }, contextWindow: 32768, maxOutputTokens: 4096, jsonMode: true }],
        tiers: { standard: ['ollama:qwen2.5:7b'], deep: [] },
      }),
    );
    const c = loadConfig({ ...base, LLM_CATALOG_FILE: file, OLLAMA_API_KEY: 'none' });
    expect([...c.llm.catalog.models.keys()]).toEqual(['ollama:qwen2.5:7b']);
    expect(c.llm.tiers.standard[0][0].model.id).toBe('qwen2.5:7b');
    fs.rmSync(dir, { recursive: true });
  });
});
