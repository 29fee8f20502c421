import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsIn, IsNumber, IsOptional, Max, Min } from 'class-validator';
import { IsCnyAmount } from '../../common/validation';
import type { WhenExhausted } from '../budget.service';

export class UpdateBudgetDto {
  @ApiProperty({ example: '5000.00', description: 'Monthly model budget in CNY (decimal string)' })
  @IsCnyAmount()
  monthlyCap: string;

  @ApiPropertyOptional({ example: [0.8, 1.0], description: 'Fractions of the cap at which to alert (each in (0, 1])' })
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
}
