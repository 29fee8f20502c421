import { Module } from '@nestjs/common';
import { TenancyModule } from '../tenancy/tenancy.module';
import { ConsoleAssets, ConsoleAssetsController } from './console-assets.controller';
import { ConsoleSessionController } from './console-session.controller';

/** The web console (SPEC §11): its page and assets at /console/, and its sign-in (a session cookie for an API key). */
@Module({
  imports: [TenancyModule],
  controllers: [ConsoleSessionController, ConsoleAssetsController],
  providers: [ConsoleAssets],
  exports: [ConsoleAssets],
})
export class ConsoleModule {}
