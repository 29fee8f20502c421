import { BudgetService } from '../src/billing/budget.service';
import { formatCny } from '../src/common/money';
import { GatewayService } from '../src/llm/gateway.service';
import { cutHeadTail } from '../src/llm/compression';
import { AppWithFake, startAppWithFake } from './support/app-with-fake';
import { catalogEntry, extendedCatalog } from './support/catalog-entry';
import { expectBooksBalanced } from './support/books';
import { generateEssay } from './support/essays';

/**
 * The gateway is the only code that knows routing, tokens and prices: quote() is what admission
 * would reserve, fit() the room a prompt leaves on the model that will take it.
 */
describe('gateway quote() and fit() (real PostgreSQL, two models of different windows)', () => {
  let s: AppWithFake;
  let gw: GatewayService;
  let catalog: ReturnType<typeof extendedCatalog>;
  const small = 'dashscope:qwen-small-test';
  const large = 'dashscope:qwen-large-test';

  beforeAll(async () => {
    catalog = extendedCatalog([
      catalogEntry({ id: 'qwen-small-test', contextWindow: 3000, maxOutputTokens: 1000, pricing: { input: '0.1', cachedInput: '0.02', output: '1' } }),
      catalogEntry({ id: 'qwen-large-test', contextWindow: 12000, maxOutputTokens: 2000, pricing: { input: '0.4', cachedInput: '0.08', output: '4' } }),
    ]);
    s = await startAppWithFake({ LLM_CATALOG_FILE: catalog.file, LLM_STANDARD_MODELS: `${small},${large}`, WORKERS_ENABLED: 'false' });
    gw = s.t.app.get(GatewayService);
  });
  afterAll(async () => {
    await s.close();
    catalog.remove();
  });

  const prompt = (text: string) => [
    { role: 'system' as const, content: '你是语文老师，请批改这篇作文。' },
    { role: 'user' as const, content: text },
  ];

  it('fits a long essay to the model with the most room, in its tokenizer', () => {
    const fit = gw.fit({ tier: 'standard' }, prompt(''), 800)!;
    expect(fit.model).toBe(large);
    const onSmall = gw.fit({ model: small }, prompt(''), 800)!;
    expect(onSmall.tokens).toBeLessThan(fit.tokens);
    // A text cut to the room fits the large model, and only it.
    const essay = Array.from({ length: 20 }, (_, i) => generateEssay(i + 1, 'zh').text).join('\n');
    const cut = cutHeadTail(essay, fit.tokens, fit.tokenizer);
    expect(cut.truncated).toBe(true);
    expect(gw.quote({ model: large }, prompt(cut.text), 800)).not.toBeNull();
    expect(gw.quote({ model: small }, prompt(cut.text), 800)).toBeNull();
    expect(gw.quote({ tier: 'standard' }, prompt(cut.text), 800)).toBe(gw.quote({ model: large }, prompt(cut.text), 800));
  });

  it('quotes the cheapest model that can take the prompt: the amount admission reserves, to the nano-yuan', async () => {
    const messages = prompt(generateEssay(3, 'zh').text.slice(0, 300));
    const quote = gw.quote({ tier: 'standard' }, messages, 500)!;
    expect(quote).toBe(gw.quote({ model: small }, messages, 500)); // the small model is the cheaper one
    expect(quote).toBeLessThan(gw.quote({ model: large }, messages, 500)!);
    // A budget of exactly the quote admits the call; one nano-yuan less does not.
    const ask = (tenantId: string) => gw.complete({ tenantId, purpose: 'chat', target: { model: small }, messages, maxTokens: 500 });
    const exact = await s.f.newTenant();
    await s.t.app.get(BudgetService).update(exact.tenantId, { monthlyCap: formatCny(quote) });
    await expect(ask(exact.tenantId)).resolves.toMatchObject({ model: 'qwen-small-test' });
    await expectBooksBalanced(s.t.dataSource, exact.tenantId);
    const short = await s.f.newTenant();
    await s.t.app.get(BudgetService).update(short.tenantId, { monthlyCap: formatCny(quote - 1n) });
    await expect(ask(short.tenantId)).rejects.toMatchObject({ code: 'BUDGET_EXHAUSTED' });
    await expectBooksBalanced(s.t.dataSource, short.tenantId);
  });

  it('quotes nothing when no model could take the prompt', () => {
    const huge = prompt('作文'.repeat(20_000));
    expect(gw.quote({ tier: 'standard' }, huge, 500)).toBeNull();
  });
});
