import { Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { keepSweeping } from './ttl-cache';

/** The app's hold on the sweep of expired cache entries (keepSweeping): from its start to its close. */
@Injectable()
export class CacheSweep implements OnModuleInit, OnModuleDestroy {
  private release?: () => void;

  onModuleInit(): void {
    this.release = keepSweeping();
  }

  onModuleDestroy(): void {
    this.release?.();
  }
}
