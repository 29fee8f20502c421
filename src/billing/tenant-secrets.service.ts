import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import { SecretBox, SecretBoxError, sealedKeyId } from '../common/secret-box';
import type { AppConfig } from '../config/app-config';
import { ConfigError } from '../config/env-reader';
import { keyFileCreated, resolveSecretKeys } from '../config/secret-key';
import { ClusterBus } from '../db/cluster-bus';
import { assertTenantId } from '../db/tenant-scope';
import { TenantsRepository } from '../tenancy/tenants.repository';

/** The tenant secrets Inkstone reads back: the payment provider's and the alert webhooks' signing secrets. */
export type TenantSecretKind = 'payment' | 'alert';

/** The column each kind is sealed in: part of the value's binding (a value copied to another column does not open). */
const SEALED_COLUMN: Record<TenantSecretKind, string> = { payment: 'payment_webhook_secret_enc', alert: 'alert_webhook_secret_enc' };

/** The SecretBox of this process, from INKSTONE_SECRET_KEY or the embedded default's key file. */
export function createSecretBox(config: AppConfig): SecretBox {
  const keys = resolveSecretKeys(config.secrets, keyFileCreated);
  return new SecretBox(keys.current, keys.previous, keys.keyFile ? `the key file ${keys.keyFile}` : 'INKSTONE_SECRET_KEY');
}

/**
 * Tenants' webhook secrets, sealed at rest (AES-256-GCM, see SecretBox) in `*_secret_enc` columns.
 * Each value is bound to its tenant and column, so a sealed value copied elsewhere does not open.
 *
 * At start, before the app takes requests, every stored value is brought to the current key: a
 * value sealed with a previous key is sealed again, and a legacy plaintext value (from before
 * secrets were sealed, in the old column) is sealed and the old column emptied, in one statement
 * guarded by the values read. A value sealed with a key this process does not have stops the start
 * with one line. A plaintext value that appears later (written by an older instance during a
 * rolling upgrade) is sealed the first time it is read.
 */
@Injectable()
export class TenantSecretsService implements OnModuleInit {
  private readonly logger = new Logger(TenantSecretsService.name);

  constructor(
    private readonly tenants: TenantsRepository,
    private readonly box: SecretBox,
    bus: ClusterBus,
  ) {
    // A school's first payment secret, set on any instance (OrdersService.updateSettings); after a
    // lost connection to the bus, the list is read again.
    bus.on<{ tenantId: string }>('payment-secret', ({ tenantId }) => this.withPaymentSecret.add(tenantId));
    bus.on('resync', () => void this.readKnownPaymentSchools().catch((err: Error) => this.logger.warn({ msg: 'could not read the schools with a payment secret', err: loggableError(err) })));
  }

  /**
   * Schools known to have a payment secret: read at start (and after the cluster bus reconnects),
   * then kept by each read and each new secret, on every instance (the bus's `payment-secret`; ids
   * only). Their payment events are limited by their own bucket of failed signatures only, not by
   * the bucket an address shares for ids of no such school (PaymentsWebhookController): events to
   * unknown ids (a school's provider naming no school, retried for days) must not refuse every
   * school's events from that provider's address.
   */
  private readonly withPaymentSecret = new Set<string>();

  async onModuleInit(): Promise<void> {
    await this.refuseUnknownKeys();
    await this.sealAll();
    await this.readKnownPaymentSchools();
  }

  private async readKnownPaymentSchools(): Promise<void> {
    for (const id of await this.tenants.withPaymentSecret()) this.withPaymentSecret.add(id);
  }

  /** Whether the tenant is known (on this instance) to have a payment secret: no read. */
  knownPaymentSchool(tenantId: string): boolean {
    return this.withPaymentSecret.has(tenantId);
  }

  /** The sealed form of a secret, for the tenant's column of that kind. */
  seal(kind: TenantSecretKind, tenantId: string, plaintext: string): string {
    assertTenantId(tenantId);
    return this.box.seal(plaintext, context(kind, tenantId));
  }

  /** A tenant's secret in plaintext, or null when none is set. */
  async read(kind: TenantSecretKind, tenantId: string): Promise<string | null> {
    const row = await this.tenants.secret(tenantId, kind);
    const value = row ? await this.open(kind, tenantId, row.sealed, row.legacy) : null;
    if (kind === 'payment') {
      if (value === null) this.withPaymentSecret.delete(tenantId);
      else this.withPaymentSecret.add(tenantId);
    }
    return value;
  }

  /** Opens values a caller selected itself; a legacy plaintext value (the newer one, if both are set) is sealed now. */
  async open(kind: TenantSecretKind, tenantId: string, sealed: string | null, legacy: string | null): Promise<string | null> {
    if (legacy !== null) {
      await this.reseal(kind, tenantId, sealed, legacy, legacy);
      return legacy;
    }
    return sealed === null ? null : this.box.open(sealed, context(kind, tenantId));
  }

  /** Replaces the stored value (sealed and legacy as read) with `plaintext` sealed under the current key; false if it changed meanwhile. */
  private reseal(kind: TenantSecretKind, tenantId: string, sealed: string | null, legacy: string | null, plaintext: string): Promise<boolean> {
    return this.tenants.reseal(tenantId, kind, this.seal(kind, tenantId, plaintext), { sealed, legacy });
  }

  private async refuseUnknownKeys(): Promise<void> {
    const unknown = (await this.tenants.sealedKeyIds()).filter((k) => !this.box.knows(k.keyId)).sort((a, b) => a.keyId.localeCompare(b.keyId));
    if (unknown.length === 0) return;
    const list = unknown.map((k) => `${k.n} with key ${k.keyId}`).join(', ');
    throw new ConfigError(
      'INKSTONE_SECRET_KEY',
      `does not open the stored webhook secrets: ${list}, which is neither ${this.box.source} (key ${this.box.currentKeyId}) nor in INKSTONE_SECRET_KEY_PREVIOUS; ` +
        'start with the key they were sealed with (a key being replaced goes in INKSTONE_SECRET_KEY_PREVIOUS)',
    );
  }

  private async sealAll(): Promise<void> {
    let plaintext = 0;
    let rotated = 0;
    for (const row of await this.tenants.secretsToReseal(this.box.currentKeyId)) {
      for (const kind of ['payment', 'alert'] as const) {
        const { sealed, legacy } = row[kind];
        if (legacy === null && (sealed === null || this.box.isCurrent(sealed))) continue;
        try {
          const value = legacy ?? this.box.open(sealed!, context(kind, row.tenantId));
          if (await this.reseal(kind, row.tenantId, sealed, legacy, value)) {
            if (legacy !== null) plaintext++;
            else rotated++;
          }
        } catch (err) {
          if (!(err instanceof SecretBoxError)) throw err;
          // One altered value must not keep every tenant from being served; its readers fail clearly.
          this.logger.error({ msg: 'a stored webhook secret does not open', tenantId: row.tenantId, secret: kind, keyId: sealedKeyId(sealed ?? ''), err: loggableError(err) });
        }
      }
    }
    if (plaintext || rotated) this.logger.log({ msg: 'webhook secrets sealed with the current key', keyId: this.box.currentKeyId, plaintext, rotated });
  }
}

function context(kind: TenantSecretKind, tenantId: string): string {
  return `inkstone:tenants.${SEALED_COLUMN[kind]}:${tenantId}`;
}
