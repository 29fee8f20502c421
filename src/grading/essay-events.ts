import { EventEmitter } from 'node:events';
import { Injectable } from '@nestjs/common';

export interface EssayEvent {
  tenantId: string;
  essayId: string;
  status: string;
}

/**
 * Status changes of essays in this process, for Server-Sent Events and to wake the local worker.
 * Changes made by other instances reach SSE clients through polling (see EssaysController).
 */
@Injectable()
export class EssayEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  emit(e: EssayEvent): void {
    this.emitter.emit(`essay:${e.essayId}`, e);
  }

  on(essayId: string, fn: (e: EssayEvent) => void): () => void {
    this.emitter.on(`essay:${essayId}`, fn);
    return () => this.emitter.off(`essay:${essayId}`, fn);
  }

  /** New work was queued here: a worker waiting for the next poll may start now. */
  queued(): void {
    this.emitter.emit('queued');
  }

  onQueued(fn: () => void): () => void {
    this.emitter.on('queued', fn);
    return () => this.emitter.off('queued', fn);
  }
}
