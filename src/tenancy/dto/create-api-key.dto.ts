import { ApiProperty } from '@nestjs/swagger';
import { IsIn, IsString, Length } from 'class-validator';
import { HasText } from '../../common/validation';
import { API_KEY_ROLES, ApiKeyRole } from '../api-key.entity';

export class CreateApiKeyDto {
  @ApiProperty({ example: 'Ms. Wang, grade 9' })
  @IsString()
  @Length(1, 200)
  @HasText()
  name: string;

  @ApiProperty({ enum: API_KEY_ROLES })
  @IsIn(API_KEY_ROLES)
  role: ApiKeyRole;
}
