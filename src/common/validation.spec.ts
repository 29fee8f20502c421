import 'reflect-metadata';
import { ArgumentMetadata } from '@nestjs/common';
import { BillingSettingsDto } from '../billing/dto/billing-settings.dto';
import { UpdateBudgetDto } from '../billing/dto/update-budget.dto';
import { OverrideGradeDto, SubmitBatchDto, SubmitEssayDto } from '../grading/dto/essay.dto';
import { CreateRubricDto } from '../grading/dto/rubric.dto';
import { CreateTenantDto } from '../tenancy/dto/create-tenant.dto';
import { ApiError } from './errors';
import { createValidationPipe } from './validation';

const pipe = createValidationPipe();
const body = (metatype: ArgumentMetadata['metatype']): ArgumentMetadata => ({ type: 'body', metatype });

async function refusal(value: unknown, metatype: ArgumentMetadata['metatype']): Promise<ApiError> {
  try {
    await pipe.transform(value, body(metatype));
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('the pipe accepted it');
}

describe('the validation pipe', () => {
  describe('control characters (PostgreSQL cannot store NUL in text or jsonb)', () => {
    it('removes them from every string of a DTO, nested DTOs and arrays included, before checking it', async () => {
      const batch = (await pipe.transform(
        { rubric: 'zh-gaokao-60\u0000', essays: [{ text: '第一段\r\n\u0000第二段', title: 'A\u0000 title\u0007', studentRef: 's\u00001' }] },
        body(SubmitBatchDto),
      )) as SubmitBatchDto;
      expect(batch.rubric).toBe('zh-gaokao-60');
      expect(batch.essays[0]).toEqual({ text: '第一段\n第二段', title: 'A title', studentRef: 's1' });

      const rubric = (await pipe.transform(
        {
          key: 'zh-junior-50',
          name: '初中\u0000记叙文',
          language: 'zh',
          totalRule: 'sum',
          dimensions: [{ key: 'content', name: '内容\u0000', max: 20, kind: 'content', description: '切合题意\u001b[31m' }],
        },
        body(CreateRubricDto),
      )) as CreateRubricDto;
      expect(rubric.name).toBe('初中记叙文');
      expect(rubric.dimensions[0]).toMatchObject({ name: '内容', description: '切合题意[31m' });

      const override = (await pipe.transform({ comment: 'good\u0000', dimensions: [{ key: 'content', comment: 'x\u0000y' }] }, body(OverrideGradeDto))) as OverrideGradeDto;
      expect(override.comment).toBe('good');
      expect(override.dimensions![0].comment).toBe('xy');
    });

    it('checks lengths on what is left: a title of nothing but control characters is refused, naming it', async () => {
      const err = await refusal({ text: '文', title: '\u0000\u0001' }, SubmitEssayDto);
      expect(err.code).toBe('VALIDATION_FAILED');
      expect(err.details).toEqual([{ field: 'title', message: expect.stringMatching(/title must be longer than or equal to 1/) }]);
    });

    it('cleans query and path parameters too', async () => {
      expect(await pipe.transform('s\u00001', { type: 'query', metatype: String, data: 'studentRef' })).toBe('s1');
      expect(await pipe.transform('zh\u0000-gaokao-60', { type: 'param', metatype: String, data: 'key' })).toBe('zh-gaokao-60');
    });

    it('keeps a secret exactly as sent, and refuses one with a control character instead of changing it', async () => {
      const secret = 'whsec_0123456789abcdef';
      const ok = (await pipe.transform({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: secret }, body(BillingSettingsDto))) as BillingSettingsDto;
      expect(ok.webhookSecret).toBe(secret);
      const err = await refusal({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: `${secret}\u0000` }, BillingSettingsDto);
      expect(err.details).toEqual([{ field: 'webhookSecret', message: 'webhookSecret must not contain control characters' }]);
      const alert = await refusal({ monthlyCap: '10.00', alertWebhookSecret: `\u0001${secret}` }, UpdateBudgetDto);
      expect(alert.details).toEqual([{ field: 'alertWebhookSecret', message: 'alertWebhookSecret must not contain control characters' }]);
    });
  });

  describe('money', () => {
    it('takes the largest amount a BIGINT of nano-yuan holds, and refuses one nano-yuan more, naming the field', async () => {
      const max = (await pipe.transform({ name: 'x', monthlyBudget: '9223372036.854775807' }, body(CreateTenantDto))) as CreateTenantDto;
      expect(max.monthlyBudget).toBe('9223372036.854775807');
      for (const over of ['9223372036.854775808', '9223372037', '999999999999.999999999', '99999999999999999999999.99']) {
        const err = await refusal({ name: 'x', monthlyBudget: over }, CreateTenantDto);
        expect(err.details).toEqual([{ field: 'monthlyBudget', message: 'monthlyBudget must be at most 9223372036.854775807 CNY' }]);
      }
      const format = await refusal({ monthlyCap: '1e30' }, UpdateBudgetDto);
      expect(format.details).toEqual([{ field: 'monthlyCap', message: 'monthlyCap must be a decimal string in CNY such as "5000.00"' }]);
      const precision = await refusal({ monthlyCap: '10.0000000001' }, UpdateBudgetDto);
      expect(precision.details).toEqual([{ field: 'monthlyCap', message: 'monthlyCap must have at most 9 decimals (a nano-yuan)' }]);
    });
  });
});
