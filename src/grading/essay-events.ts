import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { ClusterBus } from '../db/cluster-bus';

export interface EssayEvent {
  tenantId: string;
  essayId: string;
  status: string;
}

/**
 * Status changes of essays, on every instance (through the cluster bus: LISTEN/NOTIFY), for
 * Server-Sent Events; and "work was queued", to wake idle workers anywhere.
 */
@Injectable()
export class EssayEvents implements OnApplicationShutdown {
  /** Subscribers by essay id: one bus subscription serves every stream of this instance. */
  private readonly byEssay = new Map<string, Set<(e: EssayEvent) => void>>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly bus: ClusterBus) {
    this.unsubscribe.push(
      bus.on<EssayEvent>('essay', (e) => {
        for (const fn of this.byEssay.get(e.essayId) ?? []) fn(e);
      }),
    );
  }

  /**
   * After the server has closed (its open event streams ended then): until then the streams still
   * open through the workers' shutdown grace hear the essays' events, theirs and other instances'
   * (unsubscribed when the module was destroyed, at the start of the stop, they heard nothing more,
   * and a grade came only with the next keep-alive).
   */
  onApplicationShutdown(): void {
    for (const u of this.unsubscribe) u();
  }

  emit(e: EssayEvent): void {
    this.bus.publish('essay', { tenantId: e.tenantId, essayId: e.essayId, status: e.status });
  }

  on(essayId: string, fn: (e: EssayEvent) => void): () => void {
    let set = this.byEssay.get(essayId);
    if (!set) this.byEssay.set(essayId, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
      if (!set!.size) this.byEssay.delete(essayId);
    };
  }

  /** The bus listener reconnected: events may have been missed meanwhile. */
  onResync(fn: () => void): () => void {
    return this.bus.on('resync', fn);
  }

  /** New work was queued (here or on another instance): a worker waiting for its next poll may start now. */
  queued(): void {
    this.bus.publish('queued', {});
  }

  onQueued(fn: () => void): () => void {
    return this.bus.on('queued', fn);
  }
}
