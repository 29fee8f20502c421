import { Module } from '@nestjs/common';
import { TenancyModule } from '../tenancy/tenancy.module';
import { ConsoleSessionController } from './console-session.controller';

/** The web console (SPEC §11). So far: its sign-in, a session cookie for an API key. */
@Module({
  imports: [TenancyModule],
  controllers: [ConsoleSessionController],
})
export class ConsoleModule {}
