import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsIn, IsInt, IsObject, IsOptional, IsString, Length, Matches, Max, Min, ValidateNested } from 'class-validator';
import { HasText } from '../../common/validation';
import { DIMENSION_KINDS, DimensionKind } from '../rubric';

export class RubricDimensionDto {
  @ApiProperty({ example: 'content' })
  @Matches(/^[a-z][a-z0-9_]{0,39}$/, { message: 'key must be lower-case letters, digits and _ (up to 40)' })
  key: string;

  @ApiProperty({ example: '内容' })
  @IsString()
  @Length(1, 100)
  @HasText()
  name: string;

  @ApiProperty({ example: 20 })
  @IsInt()
  @Min(1)
  @Max(1000)
  max: number;

  @ApiPropertyOptional({ enum: [1, 0.5], default: 1 })
  @IsOptional()
  @IsIn([1, 0.5])
  step?: 1 | 0.5;

  @ApiProperty({ enum: DIMENSION_KINDS, description: 'what the dimension judges (guides the offline grader)' })
  @IsIn(DIMENSION_KINDS)
  kind: DimensionKind;

  @ApiProperty({ example: '切合题意，中心突出' })
  @IsString()
  @Length(1, 2000)
  @HasText()
  description: string;
}

export class ExpectedLengthDto {
  @ApiProperty({ minimum: 1, maximum: 100_000 })
  @IsInt()
  @Min(1)
  @Max(100_000)
  min: number;

  @ApiProperty({ minimum: 1, maximum: 100_000 })
  @IsInt()
  @Min(1)
  @Max(100_000)
  max: number;
}

export class RubricBodyDto {
  @ApiProperty({ example: '初中记叙文（50分）' })
  @IsString()
  @Length(1, 200)
  @HasText()
  name: string;

  @ApiProperty({ enum: ['zh', 'en', 'any'] })
  @IsIn(['zh', 'en', 'any'])
  language: 'zh' | 'en' | 'any';

  @ApiProperty({ enum: ['sum', 'mean_half_band'] })
  @IsIn(['sum', 'mean_half_band'])
  totalRule: 'sum' | 'mean_half_band';

  @ApiProperty({ type: [RubricDimensionDto] })
  @IsArray()
  // (each an object: nested validation walks into an inner array, and [[dimension]] passed)
  @IsObject({ each: true })
  @ValidateNested({ each: true })
  @Type(() => RubricDimensionDto)
  @ArrayMinSize(1)
  @ArrayMaxSize(12)
  dimensions: RubricDimensionDto[];

  @ApiPropertyOptional({ type: ExpectedLengthDto, description: 'characters for Chinese, words for English' })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => ExpectedLengthDto)
  expectedLength?: ExpectedLengthDto;
}

export class CreateRubricDto extends RubricBodyDto {
  @ApiProperty({ example: 'zh-junior-50' })
  @Matches(/^[a-z0-9][a-z0-9-]{1,62}$/, { message: 'key must be 2-63 lower-case letters, digits and dashes' })
  key: string;
}
