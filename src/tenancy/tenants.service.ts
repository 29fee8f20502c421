import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppConfig, CONFIG } from '../config/app-config';
import { formatCny, parseCny } from '../common/money';
import { ApiError } from '../common/errors';
import { timeZoneNames } from '../common/time-zone';
import { ApiKeysService } from './api-keys.service';
import { CreateTenantDto } from './dto/create-tenant.dto';
import { TenantEntity } from './tenant.entity';
import { TenantsRepository } from './tenants.repository';

export interface TenantView {
  id: string;
  name: string;
  timezone: string;
  monthlyBudget: string;
  createdAt: string;
}

export interface CreatedTenant {
  tenant: TenantView;
  /** The first admin key, shown this once. */
  adminKey: string;
  adminKeyId: string;
}

@Injectable()
export class TenantsService {
  private readonly logger = new Logger(TenantsService.name);

  constructor(
    private readonly ds: DataSource,
    private readonly tenants: TenantsRepository,
    private readonly apiKeys: ApiKeysService,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * The zone under the first of its names the database knows as a zone (timeZoneNames): as given,
   * when it does. Intl takes names PostgreSQL's zone data can lack, both old aliases and, on newer
   * images, the names ICU resolves to; a tenant under such a name could not settle a call. A name
   * the database reads as an abbreviation ("CET", a fixed offset there, with summer time in Intl)
   * is kept only when no other name of the zone is known ("UTC": the same either way).
   */
  private async zoneKnownToDatabase(zone: string): Promise<string | null> {
    let abbreviation: string | null = null;
    for (const name of timeZoneNames(zone)) {
      const reading = await this.tenants.zoneReading(name);
      if (reading === 'zone') return name;
      if (reading === 'abbreviation') abbreviation ??= name;
    }
    return abbreviation;
  }

  /** Creates a tenant and its first admin key in one transaction. */
  async create(dto: CreateTenantDto): Promise<CreatedTenant> {
    const asked = dto.timezone ?? this.config.defaultTimezone;
    const timezone = await this.zoneKnownToDatabase(asked);
    if (!timezone) {
      throw ApiError.validation([{ field: 'timezone', message: `timezone "${asked}" is not known to the database (nor under another name of the same zone)` }]);
    }
    return this.ds.transaction(async (m) => {
      const tenant = await this.tenants.create(m, {
        name: dto.name,
        timezone,
        cap: dto.monthlyBudget !== undefined ? parseCny(dto.monthlyBudget) : this.config.defaultMonthlyBudget,
      });
      const key = await this.apiKeys.issue(m, tenant.id, 'Initial admin key', 'admin');
      this.logger.log({ msg: 'tenant created', tenantId: tenant.id });
      return { tenant: toTenantView(tenant), adminKey: key.key, adminKeyId: key.id };
    });
  }
}

export function toTenantView(t: TenantEntity): TenantView {
  return {
    id: t.id,
    name: t.name,
    timezone: t.timezone,
    monthlyBudget: formatCny(t.monthlyCapNanos),
    createdAt: t.createdAt.toISOString(),
  };
}
