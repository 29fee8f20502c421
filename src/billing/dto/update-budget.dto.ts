import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsIn, IsNumber, IsOptional, IsString, Length, Matches, Max, MaxLength, Min, ValidateIf } from 'class-validator';
import { NO_CONTROL_CHARS, Verbatim } from '../../common/control-chars';
import { IsCnyAmount } from '../../common/validation';
import type { WhenExhausted } from '../budget.service';

export class UpdateBudgetDto {
  @ApiProperty({ example: '5000.00', description: 'Monthly model budget in CNY (decimal string)' })
  @IsCnyAmount()
  monthlyCap: string;

  @ApiPropertyOptional({ type: [Number], example: [0.8, 1.0], description: 'Fractions of the cap at which to alert (each in (0, 1])' })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(10)
  @IsNumber({ maxDecimalPlaces: 4 }, { each: true })
  @Min(0.0001, { each: true })
  @Max(1, { each: true })
  alertThresholds?: number[];

  @ApiPropertyOptional({ enum: ['offline', 'reject'], description: 'offline: grade with the offline grader; reject: 402' })
  @IsOptional()
  @IsIn(['offline', 'reject'])
  whenExhausted?: WhenExhausted;

  @ApiPropertyOptional({
    type: String,
    description:
      'where alerts are POSTed (signed like payment webhooks, with X-Inkstone-Event-Id); an https URL of a public host (checked by the service); null turns them off',
    nullable: true,
  })
  @IsOptional()
  @ValidateIf((_, v) => v !== null)
  @IsString()
  @MaxLength(2048)
  alertWebhookUrl?: string | null;

  @ApiPropertyOptional({ description: 'secret for the X-Inkstone-Signature of alert webhooks (write-only); needed with an alertWebhookUrl unless one is kept from before: nothing is sent unsigned' })
  @IsOptional()
  @IsString()
  @Length(16, 200)
  @Verbatim()
  @Matches(NO_CONTROL_CHARS, { message: 'alertWebhookSecret must not contain control characters' })
  alertWebhookSecret?: string;
}
