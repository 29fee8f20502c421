import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length } from 'class-validator';
import { HasText, IsCnyAmount, IsTimeZone } from '../../common/validation';

export class CreateTenantDto {
  @ApiProperty({ example: '晨光教育' })
  @IsString()
  @Length(1, 200)
  @HasText()
  name: string;

  @ApiPropertyOptional({ example: 'Asia/Shanghai', description: 'IANA time zone; budget months follow it' })
  @IsOptional()
  @IsTimeZone()
  timezone?: string;

  @ApiPropertyOptional({ example: '5000.00', description: 'Monthly model budget in CNY (decimal string)' })
  @IsOptional()
  @IsCnyAmount()
  monthlyBudget?: string;
}
