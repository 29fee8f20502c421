import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';
import { NO_CONTROL_CHARS, Verbatim } from '../../common/control-chars';
import { IsCnyAmount } from '../../common/validation';

export class BillingSettingsDto {
  @ApiProperty({ example: '9.90', description: 'price of one deep review in CNY (decimal string)' })
  @IsCnyAmount()
  deepReviewPrice: string;

  @ApiProperty({ enum: ['webhook', 'invoice'], description: 'webhook: wait for payment.succeeded; invoice: deliver at once and book the revenue' })
  @IsIn(['webhook', 'invoice'])
  paymentMode: 'webhook' | 'invoice';

  @ApiPropertyOptional({ description: "secret the payment provider signs webhooks with (write-only; kept if omitted)" })
  @IsOptional()
  @IsString()
  @Length(16, 200)
  @Verbatim()
  @Matches(NO_CONTROL_CHARS, { message: 'webhookSecret must not contain control characters' })
  webhookSecret?: string;
}
